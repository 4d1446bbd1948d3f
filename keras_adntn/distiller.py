"""Knowledge distillation from a dense teacher through `model.fit`."""

import keras
from keras import ops

from keras_adntn.losses import DistillationLoss


class Distiller(keras.Model):
    """Trains `student` on the task loss mixed with a teacher's soft labels.

    Only `compute_loss` is overridden (no custom `train_step`), so the
    ordinary `fit` / `evaluate` loops of every backend are used. The total
    loss is `alpha * task + (1 - alpha) * T^2 * KL(teacher_T ||
    student_T)` (`DistillationLoss`), where `task` is the loss given to
    `compile`; regularisation losses of the student (e.g. a TN layer's
    `core_regularizer`) are added with weight 1. The teacher is frozen.
    Predictions, metrics and `predict` are the student's logits.

    Args:
        student: the model being trained (outputs logits).
        teacher: a trained model with the same inputs (outputs logits).
        alpha: weight of the task loss in [0, 1] (default 0.1).
        temperature: distillation temperature > 0 (default 2).
        teacher_temperature: temperature of the teacher's softmax
            (default: `temperature`).
        **kwargs: `keras.Model` arguments (`name`...).

    Returns (when called): the student's output.

    Example:

    >>> distiller = Distiller(student, teacher, alpha=0.1, temperature=3)
    >>> distiller.compile(
    ...     optimizer="adam",
    ...     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    ...     metrics=["accuracy"],
    ... )
    >>> distiller.fit(x, y, epochs=5)  # doctest: +SKIP
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model,
        alpha: float = 0.1,
        temperature: float = 2.0,
        teacher_temperature: float | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.distillation_loss = DistillationLoss(
            temperature=temperature,
            alpha=alpha,
            teacher_temperature=teacher_temperature,
        )

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        total = super().compute_loss(
            x=x,
            y=y,
            y_pred=y_pred,
            sample_weight=sample_weight,
            training=training,
        )
        extra = [ops.cast(loss, "float32") for loss in self.losses]
        reg = ops.sum(ops.stack(extra)) if extra else 0.0
        task = ops.cast(total, "float32") - reg
        teacher_logits = ops.stop_gradient(self.teacher(x, training=False))
        loss = self.distillation_loss(task, y_pred, teacher_logits)
        return loss + reg


__all__ = ["Distiller"]
