"""The size search of `compress(..., max_loss=...)`.

The replaced layers share one bond dimension. The sizes tried (the
ladder) run from bond 1 up to the largest bond at which every replaced
layer is still `MIN_RATIO` times smaller than its dense original. The
score falls as the bond shrinks, so the smallest size within the loss is
found by bisection: `ceil(log2(n + 1))` fine-tunes for `n` sizes. A budget
of `b` fine-tunes thins the ladder to at most `2**b - 1` sizes (spread
geometrically, both ends kept) so that the bisection ends within it.
"""

import math

import numpy as np

from keras_adntn.compress.report import _fmt
from keras_adntn.compress.select import growing_bonds

# the search never tries a size that shrinks a layer less than this
MIN_RATIO = 2.0


def size_ladder(layers: list, network: str, budget: int) -> list:
    """The bond dimensions the search may try for `layers`, ascending."""
    bonds = []
    for chi, params in growing_bonds(layers, network):
        if any(
            layer.count_params() < MIN_RATIO * p
            for layer, p in zip(layers, params)
        ):
            break  # too big for one of the layers
        bonds.append(chi)
    bonds = bonds or [1]
    limit = 2**budget - 1
    if len(bonds) > limit:
        picks = np.geomspace(1, len(bonds), limit)
        index = sorted({int(round(p)) - 1 for p in picks})
        bonds = [bonds[i] for i in index]
    return bonds


def loss(task: str, teacher: float, student: float) -> float:
    """What the student lost against the teacher on the validation data:
    accuracy points (classification) or the relative increase of the
    mean squared error (regression)."""
    if task == "classification":
        return teacher - student
    if teacher <= 0:
        return 0.0 if student <= 0 else math.inf
    return (student - teacher) / teacher


def bisect(ladder: list, trial, within) -> tuple:
    """`({index: result}, first)`: `trial(bond)` on the sizes bisection
    visits, and the index of the smallest size `within(result)` accepts
    (`len(ladder)` when none is)."""
    results = {}
    low, high = 0, len(ladder)
    while low < high:
        mid = (low + high) // 2
        results[mid] = trial(ladder[mid])
        if within(results[mid]):
            high = mid
        else:
            low = mid + 1
    return results, high


def run(ladder: list, make, task: str, max_loss: float, epochs: int, log):
    """`(the smallest student within `max_loss`, or the best one tried;
    the search's record, `CompressionReport.search`)`; `make(bond)` makes
    one student (a record with `student`, `rows`, `scores`)."""

    def trial(bond):
        built = make(bond)
        scores = built.scores
        lost = loss(task, scores["teacher"], scores["student_final"])
        verdict = "within" if lost <= max_loss else "over"
        log(f"compress [search] bond {bond}: loss {_fmt(lost)} ({verdict})")
        return built, lost

    results, first = bisect(ladder, trial, lambda r: r[1] <= max_loss)
    met = first < len(ladder)
    if not met:  # none within the loss: the best one tried
        first = min(results, key=lambda i: results[i][1])
    trials = [
        {
            "bond_dim": ladder[i],
            "params_after": sum(r["params_after"] for r in built.rows),
            "score_init": built.scores["student_init"],
            "score": built.scores["student_final"],
            "loss": lost,
            "within": lost <= max_loss,
        }
        for i, (built, lost) in sorted(results.items())
    ]
    record = {
        "max_loss": max_loss,
        "loss_of": (
            "accuracy points"
            if task == "classification"
            else "relative increase of the mean squared error"
        ),
        "fine_tunes": len(results) if epochs else 0,
        "sizes": list(ladder),
        "trials": trials,
        "bond_dim": ladder[first],
        "met": met,
    }
    return results[first][0], record
