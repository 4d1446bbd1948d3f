"""Scoring a compressed model against the original: the output errors of
the replaced layers inside the models, the task scores, and the report."""

import keras
import numpy as np

from keras_adntn.compress import finetune
from keras_adntn.compress.convert import relative_error
from keras_adntn.compress.convert import relative_spread_error
from keras_adntn.compress.report import CompressionReport
from keras_adntn.compress.report import _fmt


def layer_output_error(
    teacher: keras.Model,
    student: keras.Model,
    name: str,
    x,
    batch_size: int = 256,
    limit: int = 4096,
) -> float | None:
    """Output error of layer `name` inside the models on real inputs.

    `||f'(x) - f(x)|| / ||f(x) - mean f||`, with `f(x)` the output of the
    teacher's layer `name` on model inputs `x` and `f'(x)` that of the
    student's (which sees the student's own earlier layers, so after
    fine-tuning this is the error of everything up to that layer).

    Args:
        teacher: the original model.
        student: the compressed model.
        name: the layer's name in both.
        x: model inputs.
        batch_size: batch size of the predictions.
        limit: at most this many samples are used.

    Returns:
        The relative error (1: no better than the mean output), or None
        when the layer's output is not reachable from the model inputs.

    Example:

    >>> layer_output_error(teacher, student, "h2", x_test)  # doctest: +SKIP
    0.42
    """
    xs = x if isinstance(x, list) else [x]
    xs = [a[:limit] for a in xs]
    x = xs if len(xs) > 1 else xs[0]
    try:
        outs = [
            np.asarray(
                keras.Model(m.inputs, m.get_layer(name).output).predict(
                    x, batch_size=batch_size, verbose=0
                ),
                np.float64,
            )
            for m in (teacher, student)
        ]
    except (ValueError, AttributeError):
        return None
    want, got = outs
    return relative_spread_error(got, want)


def evaluate(
    model, chosen, skipped, data, built, log, search=None
) -> CompressionReport:
    """The report of `compress` on the student `built` (steps 2-4 made
    it; a note when it is worse than its initialisation, or at chance
    after it), the final errors of the replaced layers, and the scores;
    `search` the size search's record (None: a fixed size)."""
    student, rows, scores = built.student, built.rows, built.scores
    tuning = dict(built.tuning)
    if finetune.better(
        data.task, scores["student_init"], scores["student_final"]
    ):
        extra = (
            f"the student is worse than its initialisation on "
            f"{data.evaluated_on}"
        )
        tuning["note"] = "; ".join(filter(None, [tuning.get("note"), extra]))
    notes = [_at_chance(data, scores, search), _teacher_saw_it(data, scores)]
    for row, old in zip(rows, chosen):
        new = student.get_layer(old.name)
        row["error_final"] = layer_output_error(
            model, student, old.name, data.vx, data.batch_size
        )
        row["weight_error_final"] = relative_error(new, old)
    metric = "accuracy" if data.task == "classification" else "loss"
    log(
        f"compress [4/4] evaluate: {metric} teacher "
        f"{_fmt(scores['teacher'])}, student after init "
        f"{_fmt(scores['student_init'])}, final "
        f"{_fmt(scores['student_final'])}"
    )
    return CompressionReport(
        rows,
        skipped=skipped,
        metric=metric,
        scores=scores,
        evaluated_on=data.evaluated_on,
        params_before=model.count_params(),
        params_after=student.count_params(),
        fine_tuning=tuning,
        search=search,
        notes=[note for note in notes if note],
    )


def chance_level(labels) -> float:
    """The accuracy of always answering the most frequent class."""
    labels = np.asarray(labels)
    if labels.ndim > 1:
        labels = np.argmax(labels, -1)
    counts = np.unique(labels, return_counts=True)[1]
    return float(counts.max() / counts.sum())


def _teacher_saw_it(data, scores) -> str:
    """A note when the teacher is perfect on validation data held out of
    `data`: it most likely trained on them, and so did the layers the
    student keeps."""
    held_out = "held out" in data.evaluated_on
    perfect = (
        scores["teacher"] >= 1.0
        if data.task == "classification"
        else scores["teacher"] <= 0.0
    )
    if not (held_out and perfect):
        return ""
    return (
        f"the teacher is perfect on the {data.evaluated_on.split(' (')[0]}:"
        f" it most likely trained on them, as did the layers the student "
        f"keeps, so the loss measured there understates the loss on new "
        f"data; give validation_data the teacher has not seen"
    )


def _at_chance(data, scores, search) -> str:
    """A note when the initialised student scores at chance while the
    teacher does not, naming the largest ratio whose initialisation
    stayed above it when the search tried several."""
    if data.task != "classification":
        return ""
    chance = chance_level(data.vy)
    if not (
        scores["student_init"] <= chance + 0.05
        and scores["teacher"] >= chance + 0.2
    ):
        return ""
    note = (
        f"after initialisation the student scores at chance "
        f"({scores['student_init']:.4f}; the teacher "
        f"{scores['teacher']:.4f}): the layers are compressed past what "
        f"their initialisation represents, and fine-tuning had to rebuild "
        f"them"
    )
    alive = [
        t
        for t in (search or {}).get("trials", [])
        if t["score_init"] > chance + 0.05
    ]
    if alive:
        best = min(alive, key=lambda t: t["params_after"])
        note += (
            f" (the smallest size tried whose initialisation kept more: "
            f"bond {best['bond_dim']}, {best['params_after']} parameters)"
        )
    return note
