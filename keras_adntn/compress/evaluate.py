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
    model, student, chosen, rows, skipped, data, scores, tuning, tuned, log
) -> CompressionReport:
    """The report of `compress`: the student's final score (`tuned`: it
    was fine-tuned; a note when it is worse than its initialisation), the
    final errors of the replaced layers, and the scores."""
    batch_size = data.batch_size
    scores["student_final"] = (
        finetune.score(student, data.vx, data.vy, data.task, batch_size)
        if tuned
        else scores["student_init"]
    )
    if finetune.better(
        data.task, scores["student_init"], scores["student_final"]
    ):
        extra = (
            f"the student is worse than its initialisation on "
            f"{data.evaluated_on}"
        )
        tuning["note"] = "; ".join(filter(None, [tuning.get("note"), extra]))
    for row, old in zip(rows, chosen):
        new = student.get_layer(old.name)
        row["error_final"] = layer_output_error(
            model, student, old.name, data.vx, batch_size
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
    )
