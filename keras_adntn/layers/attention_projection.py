"""AttentionProjection: one generated projection of TNMultiHeadAttention.

What `TNMultiHeadAttention` hands `keras.layers.MultiHeadAttention` in
place of its `EinsumDense` projections (Keras computes everything between
them); the checks of the attention's arguments and shapes are in
`attention_arguments`.
"""

import weakref

from keras import ops

PROJECTIONS = ("query", "key", "value", "output")


class AttentionProjection:
    """`einsum(x, W) + b`: what `MultiHeadAttention` calls its
    `EinsumDense` projections for, `W` made by a `GeneratedKernel`.

    Not a Keras layer: it holds no weight and opens no name scope (the
    bias and kernel are the attention layer's own, see
    `tn_multi_head_attention`).

    Args:
        layer: the `TNMultiHeadAttention` (held weakly); its `_biases`
            hold the bias, its `_call_training` the call's `training`.
        kernel: the `GeneratedKernel` of `W`.
        name: the projection (`"query"`, `"key"`, `"value"`, `"output"`).
        equation: the einsum equation (as Keras's projection).
        part: the part of a joint kernel that is `W`, or None.

    Call arguments:
        x: the projection's input.

    Returns:
        The projected tensor in the layer's compute dtype.

    Example:

    >>> from keras_adntn import TNMultiHeadAttention
    >>> layer = TNMultiHeadAttention(2, 4, seed=0)
    >>> import numpy as np
    >>> x = np.ones((1, 3, 8), "float32")
    >>> tuple(layer(x, x).shape)
    (1, 3, 8)
    >>> tuple(layer.query_dense(x).shape)
    (1, 3, 2, 4)
    """

    def __init__(self, layer, kernel, name: str, equation: str, part=None):
        self._layer = weakref.ref(layer)
        self.kernel = kernel
        self.name = name
        self.equation = equation
        self.part = part

    def __call__(self, x):
        layer = self._layer()
        y = self.kernel.project(
            x, self.equation, part=self.part, training=layer._call_training
        )
        bias = layer._biases[self.name]
        if bias is None:
            return y
        return ops.add(y, ops.cast(bias, layer.compute_dtype))


def projection_equation(free: int, bound: int, new: int) -> str:
    """The einsum equation of a projection (as Keras builds it): `free`
    kept axes, `bound` contracted ones, `new` output ones."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    kept = letters[:free]
    summed = letters[free : free + bound]
    made = letters[free + bound : free + bound + new]
    return f"{kept}{summed},{summed}{made}->{kept}{made}"
