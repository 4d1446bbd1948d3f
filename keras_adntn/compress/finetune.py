"""Fine-tuning a compressed model by distillation, never worse than its start.

After every epoch the student is scored on the validation data; the best
weights seen (the initialisation counts as epoch 0) are kept and restored
at the end. On a tie between trained epochs the one with the lower
training loss is kept (the later one, as a rule): validation data held
out of the teacher's own training data often saturate (the teacher and
the student both at 1.0 accuracy), and there the more distilled student
does better on new data (benchmarks/compress_to_target.py: 0.44 instead
of 1.6 points below the teacher on one seed). A tie never replaces the
initialisation, which has no training loss to compare.

A diverging run (a non-finite loss or weights, or a training loss that
blows up past `BLOW_UP` times its first epoch's) is stopped, reported and
rolled back to the best weights.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_adntn.distiller import Distiller

BLOW_UP = 10.0


def _jit():
    return "auto" if keras.backend.backend() == "jax" else False


class _Log(keras.layers.Layer):
    """Log of probabilities: turns a softmax output into logits."""

    def call(self, x):
        return ops.log(ops.maximum(x, 1e-7))


def outputs_probabilities(pred) -> bool:
    """Whether a model's predictions look like softmax probabilities."""
    pred = np.asarray(pred)
    if pred.ndim < 2 or pred.shape[-1] < 2:
        return False
    return bool(
        np.all(pred >= 0)
        and np.all(pred <= 1)
        and np.allclose(pred.sum(-1), 1.0, atol=1e-3)
    )


def score(model, x, y, task, batch_size, pred=None) -> float:
    """Accuracy (classification) or mean squared error (regression)."""
    if pred is None:
        pred = model.predict(x, batch_size=batch_size, verbose=0)
    pred = np.asarray(pred)
    y = np.asarray(y)
    if task == "classification":
        labels = y if y.shape == pred.shape[:-1] else np.argmax(y, -1)
        return float(np.mean(np.argmax(pred, -1) == labels))
    err = float(np.mean((pred.reshape(y.shape) - y) ** 2))
    return err if math.isfinite(err) else math.inf


def better(task, new, old) -> bool:
    """Whether score `new` beats `old` (higher accuracy, lower MSE)."""
    if new is None or not math.isfinite(new):
        return False
    if old is None or not math.isfinite(old):
        return True
    return new > old if task == "classification" else new < old


def _logits_model(model, probabilities):
    if not probabilities:
        return model
    return keras.Model(model.inputs, _Log(name="log_probs")(model.outputs[0]))


class _Guard(keras.callbacks.Callback):
    """Keeps the student's best weights on validation data; stops a
    diverging run."""

    def __init__(self, student, val, task, batch_size, start_score, log):
        super().__init__()
        self.student = student
        self.val = val
        self.task = task
        self.batch_size = batch_size
        self.best = start_score
        self.best_epoch = 0
        self.best_loss = None  # the training loss of the epoch kept
        self.best_weights = [np.array(w) for w in student.get_weights()]
        self.first_loss = None
        self.diverged = None
        self.epochs_run = 0
        self.log = log

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_run = epoch + 1
        loss = float((logs or {}).get("loss", 0.0))
        weights = self.student.get_weights()
        finite = all(np.all(np.isfinite(w)) for w in weights)
        if not math.isfinite(loss) or not finite:
            self.diverged = f"non-finite loss or weights at epoch {epoch + 1}"
        elif self.first_loss is None:
            self.first_loss = loss
        elif loss > BLOW_UP * max(self.first_loss, 1e-12):
            self.diverged = (
                f"training loss blew up at epoch {epoch + 1} "
                f"({loss:.3g} vs {self.first_loss:.3g} after epoch 1)"
            )
        if self.diverged:
            self.model.stop_training = True
            return
        value = score(
            self.student, self.val[0], self.val[1], self.task, self.batch_size
        )
        tie = (
            value == self.best
            and self.best_loss is not None
            and loss <= self.best_loss
        )
        if better(self.task, value, self.best) or tie:
            self.best, self.best_epoch = value, epoch + 1
            self.best_loss = loss
            self.best_weights = [np.array(w) for w in weights]
        if self.log:
            self.log(
                f"  epoch {epoch + 1}: loss {loss:.4g}, validation "
                f"{'accuracy' if self.task == 'classification' else 'MSE'} "
                f"{value:.4f}"
            )


def fine_tune(
    student,
    teacher,
    x,
    y,
    val,
    task,
    probabilities,
    epochs,
    batch_size,
    learning_rate,
    temperature,
    alpha,
    start_score,
    log=None,
    fit_verbose=0,
) -> dict:
    """Distils `teacher` into `student`, keeping the best epoch.

    Args:
        student: the compressed model (modified in place).
        teacher: a copy of the original model.
        x: training inputs.
        y: training targets (integer labels, one-hot, or regression).
        val: `(x, y)` the best epoch is chosen on.
        task: `"classification"` or `"regression"`.
        probabilities: whether the models output probabilities.
        epochs: number of epochs.
        batch_size: batch size.
        learning_rate: Adam learning rate.
        temperature: distillation temperature.
        alpha: weight of the task loss against the teacher.
        start_score: the student's score on `val` before fine-tuning.
        log: None or a function that prints one line per epoch.
        fit_verbose: `verbose` of Keras `fit`.

    Returns:
        `{"epochs_run", "best_epoch", "best_score", "diverged", "note"}`.
    """
    guard = _Guard(student, val, task, batch_size, start_score, log)
    optimizer = keras.optimizers.Adam(learning_rate)
    if task == "regression":
        target = alpha * np.asarray(y, "float32").reshape(
            -1, *student.outputs[0].shape[1:]
        ) + (1.0 - alpha) * teacher.predict(x, batch_size=256, verbose=0)
        student.compile(optimizer=optimizer, loss="mse", jit_compile=_jit())
        student.fit(
            x,
            target,
            epochs=epochs,
            batch_size=batch_size,
            verbose=fit_verbose,
            callbacks=[guard],
        )
    else:
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[-1] > 1:
            loss = keras.losses.CategoricalCrossentropy(from_logits=True)
        else:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        distiller = Distiller(
            _logits_model(student, probabilities),
            _logits_model(teacher, probabilities),
            alpha=alpha,
            temperature=temperature,
        )
        distiller.compile(optimizer=optimizer, loss=loss, jit_compile=_jit())
        distiller.fit(
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            verbose=fit_verbose,
            callbacks=[guard],
        )
    student.set_weights(guard.best_weights)
    if guard.diverged:
        note = (
            f"diverged ({guard.diverged}); rolled back to epoch "
            f"{guard.best_epoch}"
        )
    elif guard.best_epoch == 0:
        note = (
            "no epoch beat the initialisation on the validation data; "
            "kept the initialisation"
        )
    else:
        note = (
            f"kept epoch {guard.best_epoch} of {guard.epochs_run} (best on "
            f"the validation data)"
        )
    if guard.best_epoch == 0 and guard.diverged:
        note += " (the initialisation)"
    return {
        "epochs_run": guard.epochs_run,
        "best_epoch": guard.best_epoch,
        "best_score": guard.best,
        "diverged": guard.diverged,
        "note": note,
    }
