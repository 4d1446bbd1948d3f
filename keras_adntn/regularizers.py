"""Regularisers of generator cores (SPEC §6)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_adntn")
class SoftIsometry(keras.regularizers.Regularizer):
    """Soft isometry penalty `weight * sum ||C^T C - I||_F^2` of a core.

    The core is reshaped to its `(fan_in, fan_out)` matrix `C` (first leg
    against the others) and the smaller Gram matrix is used: `C^T C` when
    `fan_out <= fan_in`, else `C C^T`, so the penalty pushes the core
    towards an isometry in whichever direction one is possible.

    With `grouped=True` (the default, what TN layers' `core_regularizer`
    sees) axis 0 is the group axis of a generator's cores: each group's
    core is penalised and the penalties are summed. Variables with fewer
    than two legs besides it (e.g. learnable activation coefficients) get
    no penalty.

    Args:
        weight: float >= 0, factor of the penalty (default 1e-3).
        grouped: whether axis 0 of the variable is a group axis.

    Returns (when called on a variable): a float32 scalar.

    Example:

    >>> from keras_adntn import TNDense
    >>> layer = TNDense(64, core_regularizer=SoftIsometry(1e-3))
    """

    def __init__(self, weight: float = 1e-3, grouped: bool = True):
        weight = float(weight)
        if weight < 0:
            raise ValueError(f"`weight` must be >= 0, got {weight}.")
        self.weight = weight
        self.grouped = bool(grouped)

    def __call__(self, x):
        x = ops.cast(x, "float32")
        shape = tuple(x.shape)
        if not self.grouped:
            x = ops.expand_dims(x, 0)
            shape = (1, *shape)
        if len(shape) < 3:
            return ops.zeros((), "float32")
        fan_in = int(shape[1])
        fan_out = 1
        for d in shape[2:]:
            fan_out *= int(d)
        c = ops.reshape(x, (shape[0], fan_in, fan_out))
        if fan_out <= fan_in:
            gram = ops.matmul(ops.transpose(c, (0, 2, 1)), c)
            size = fan_out
        else:
            gram = ops.matmul(c, ops.transpose(c, (0, 2, 1)))
            size = fan_in
        eye = ops.eye(size, dtype="float32")
        return self.weight * ops.sum(ops.square(gram - eye))

    def get_config(self) -> dict:
        return {"weight": self.weight, "grouped": self.grouped}


__all__ = ["SoftIsometry"]
