"""Losses of the training pipeline (SPEC §6, §8).

- `reconstruction_loss`: a generated kernel against a target weight
  (Frobenius, sampled-entry Frobenius, L1 or Huber), a scalar tensor that
  can be minimised directly or added to a model's loss;
- `DistillationLoss`: the task loss mixed with the KL divergence between
  teacher and student distributions at a temperature (used by
  `keras_adntn.distiller.Distiller` through `model.fit`).
"""

import keras
import numpy as np
from keras import ops

RECONSTRUCTION_KINDS = ("frobenius", "sampled", "l1", "huber")


def _generated_kernel(layer):
    kernel = getattr(layer, "kernel", None)
    if kernel is None:
        raise ValueError(
            f"`layer` must be a built layer with a `kernel` (TNDense, "
            f"TNConv2D, a Dense...) or a tensor; got {type(layer).__name__}."
        )
    return kernel


def sample_indices(size: int, num_samples: int, seed: int = 0) -> np.ndarray:
    """The fixed entries the sampled loss looks at.

    Args:
        size: number of entries of the kernel.
        num_samples: how many distinct entries to draw (at most `size`).
        seed: seed of the draw; the same seed gives the same entries.

    Returns:
        A sorted int32 array of `min(num_samples, size)` flat indices.

    Example:

    >>> sample_indices(100, 5, seed=0).shape
    (5,)
    """
    rng = np.random.default_rng(seed)
    count = min(int(num_samples), int(size))
    return np.sort(rng.choice(int(size), size=count, replace=False)).astype(
        "int32"
    )


def reconstruction_loss(
    layer,
    target,
    kind: str = "frobenius",
    num_samples: int = 4096,
    seed: int = 0,
    delta: float = 1.0,
):
    """Reconstruction error of a generated kernel against a target weight.

    All kinds are means over entries, so they share one scale:
    `"frobenius"` is `||W - T||_F^2 / size`; `"sampled"` the same mean over
    `num_samples` fixed random entries (an unbiased estimate of it, for
    huge kernels: the indices come from `seed` and do not change between
    calls); `"l1"` the mean absolute error; `"huber"` the mean Huber loss
    with threshold `delta`.

    Args:
        layer: a built layer with a `kernel` (TNDense, TNConv2D or any
            Keras layer with one), or a kernel tensor.
        target: the target weight, same shape as the kernel.
        kind: `"frobenius"`, `"sampled"`, `"l1"` or `"huber"`.
        num_samples: entries used by `"sampled"`, int >= 1.
        seed: seed of the sampled entries.
        delta: threshold of the Huber loss, > 0.

    Returns:
        A float32 scalar tensor (differentiable in the layer's cores).

    Example:

    >>> from keras_adntn import TNDense
    >>> layer = TNDense(32)
    >>> layer.build((None, 16))
    >>> loss = reconstruction_loss(layer, np.zeros((16, 32)), kind="l1")
    """
    if kind not in RECONSTRUCTION_KINDS:
        raise ValueError(
            f"`kind` must be one of {RECONSTRUCTION_KINDS}, got {kind!r}."
        )
    if isinstance(num_samples, bool) or int(num_samples) < 1:
        raise ValueError(f"`num_samples` must be >= 1, got {num_samples!r}.")
    if delta <= 0:
        raise ValueError(f"`delta` must be > 0, got {delta!r}.")
    if isinstance(layer, keras.layers.Layer):
        kernel = _generated_kernel(layer)
    else:
        kernel = layer
    kernel = ops.cast(kernel, "float32")
    target = ops.cast(ops.convert_to_tensor(target), "float32")
    if tuple(kernel.shape) != tuple(target.shape):
        raise ValueError(
            f"`target` must have the kernel's shape {tuple(kernel.shape)}, "
            f"got {tuple(target.shape)}."
        )
    diff = ops.reshape(kernel - target, (-1,))
    if kind == "sampled":
        idx = sample_indices(int(diff.shape[0]), num_samples, seed)
        diff = ops.take(diff, ops.convert_to_tensor(idx), axis=0)
    if kind in ("frobenius", "sampled"):
        return ops.mean(ops.square(diff))
    if kind == "l1":
        return ops.mean(ops.abs(diff))
    small = ops.abs(diff) <= delta
    quad = 0.5 * ops.square(diff)
    lin = delta * (ops.abs(diff) - 0.5 * delta)
    return ops.mean(ops.where(small, quad, lin))


@keras.saving.register_keras_serializable(package="keras_adntn")
class DistillationLoss:
    """`alpha * task + (1 - alpha) * T^2 * KL(teacher_T || student_T)`.

    `teacher_T` and `student_T` are the softmax of the logits divided by
    the temperature `T`; the `T^2` factor keeps the gradient scale of the
    soft term independent of `T` (Hinton et al.).

    Args:
        temperature: softening temperature `T` > 0 (default 2).
        alpha: weight of the task loss in [0, 1] (default 0.1).
        teacher_temperature: temperature of the teacher's softmax (default:
            `temperature`).

    Returns (when called with `task_loss, student_logits,
    teacher_logits`): a float32 scalar.

    Example:

    >>> loss = DistillationLoss(temperature=2.0, alpha=0.5)
    >>> value = loss(0.3, np.zeros((4, 10)), np.ones((4, 10)))
    """

    def __init__(
        self,
        temperature: float = 2.0,
        alpha: float = 0.1,
        teacher_temperature: float | None = None,
    ):
        if temperature <= 0:
            raise ValueError(f"`temperature` must be > 0, got {temperature}.")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"`alpha` must be in [0, 1], got {alpha}.")
        if teacher_temperature is not None and teacher_temperature <= 0:
            raise ValueError(
                f"`teacher_temperature` must be > 0, got {teacher_temperature}."
            )
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.teacher_temperature = (
            None if teacher_temperature is None else float(teacher_temperature)
        )

    def kl(self, student_logits, teacher_logits):
        """Mean over the batch of `T^2 * KL(teacher_T || student_T)`."""
        t_student = self.temperature
        t_teacher = self.teacher_temperature or self.temperature
        s = ops.cast(student_logits, "float32") / t_student
        t = ops.cast(teacher_logits, "float32") / t_teacher
        log_p = ops.log_softmax(t, axis=-1)
        log_q = ops.log_softmax(s, axis=-1)
        kl = ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)
        return ops.mean(kl) * (t_student**2)

    def __call__(self, task_loss, student_logits, teacher_logits):
        task = ops.cast(task_loss, "float32")
        soft = self.kl(student_logits, teacher_logits)
        return self.alpha * task + (1.0 - self.alpha) * soft

    def get_config(self) -> dict:
        return {
            "temperature": self.temperature,
            "alpha": self.alpha,
            "teacher_temperature": self.teacher_temperature,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


__all__ = ["DistillationLoss", "reconstruction_loss"]
