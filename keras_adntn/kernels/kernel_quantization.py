"""Quantisation-aware training of generated kernels (fake quantisation).

With `kernel_quantization="int8"` a TN layer rounds its generated kernel to
the grid an int8 LiteRT export stores: symmetric, narrow range (-127..127),
one scale per output channel (the last axis), the range taken from the
kernel itself -- what `keras.quantizers.fake_quant_with_min_max_vars` does
for such a range. The gradient is the straight-through estimator (identity),
so the cores adapt to the rounding and a full-integer export loses less.
It is written with plain `keras.ops` (ROUND, MUL, REDUCE_MAX...) so that an
on-the-fly export of the layer stays LiteRT builtins.
"""

from keras import ops

KERNEL_QUANTIZATIONS = (None, "int8")


def check_kernel_quantization(value):
    """Raises ValueError unless `value` is None or `"int8"`."""
    if value not in KERNEL_QUANTIZATIONS:
        raise ValueError(
            f"`kernel_quantization` must be one of {KERNEL_QUANTIZATIONS}, "
            f"got {value!r}."
        )
    return value


def int8_scale(kernel, axis: int = -1, keepdims: bool = False):
    """The int8 grid step of each channel of `kernel` along `axis`:
    `max |kernel|` over the other axes / 127 (at least 1e-12 / 127).

    The one definition of the scale: `fake_quantize` rounds with it and an
    int8 export of a QAT layer stores it.
    """
    axis = axis % len(kernel.shape)
    others = [a for a in range(len(kernel.shape)) if a != axis]
    bound = ops.max(ops.abs(kernel), axis=others, keepdims=keepdims)
    return ops.divide(ops.maximum(bound, 1e-12), 127.0)


def fake_quantize(kernel, mode, axis=-1):
    """`kernel` fake-quantised per channel along `axis` (`mode` None: as is).

    Args:
        kernel: float32 kernel.
        mode: None or `"int8"`.
        axis: the output-channel axis.

    Returns:
        A float32 tensor of the same shape whose values are on the int8 grid
        of their channel.
    """
    if mode is None:
        return kernel
    scale = int8_scale(kernel, axis, keepdims=True)
    grid = ops.multiply(ops.round(ops.divide(kernel, scale)), scale)
    # straight-through estimator: forward on the grid, identity gradient
    return ops.add(kernel, ops.stop_gradient(ops.subtract(grid, kernel)))
