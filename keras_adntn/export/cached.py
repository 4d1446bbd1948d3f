"""One layer's kernel stored on the device: `CachedSchedule`.

Where a layer's best deployment is its kernel as an ordinary weight (a
small layer, whose cores and generation cost more flash and time than the
kernel itself, or a network that fits no arena otherwise), the export
generates the kernel once, in NumPy, and writes one FULLY_CONNECTED (a
`TNDense`) or CONV_2D (a `TNConv2D`) with it as constant weights: what
`mode="cached"` does for the whole model, for this layer only. With
`quantize="int8"` the converter stores it as int8 weights, exactly the
int8 Dense twin's layer.
"""

import math

import numpy as np
from keras import ops

from keras_adntn.export.schedule import ContractionSchedule

# TFLM's bookkeeping of the layer's few ops and tensors (bytes of arena)
_OVERHEAD_BYTES = 512


class CachedSchedule(ContractionSchedule):
    """A `TNDense` or `TNConv2D` that runs on the device with its stored
    kernel.

    Args:
        layer: a built `TNDense`, or a `TNConv2D` for which
            `applies(layer)` holds.
        batch_size: the exported batch size.
    """

    def __init__(self, layer, batch_size: int = 1):
        super().__init__(layer, batch_size)
        # generated now, outside the trace, as an export traces it (a QAT
        # layer's int8 rounding included)
        (kernel,) = layer.generated_kernel.generate(export=True).values()
        kernel = np.asarray(ops.convert_to_numpy(kernel), np.float32)
        self.kernel = kernel.reshape(layer.generated_kernel.dims)

    @staticmethod
    def applies(layer) -> bool:
        """Whether the stored kernel runs as one builtin: a `TNDense`, or
        a channels-last `TNConv2D` without groups."""
        if len(layer.generated_kernel.dims) == 2:
            return True
        return (
            getattr(layer, "conv_groups", 1) == 1
            and getattr(layer, "data_format", "") == "channels_last"
        )

    @property
    def block_entries(self) -> int:
        """Numbers stored: the kernel."""
        return int(self.kernel.size)

    def estimated_arena(self, batch: int = 1) -> int:
        """`arena_of(layer, batch)` (float32)."""
        return arena_of(self.layer, batch)

    def matmul(self, tf, inputs, make_ops=None, scales=None):
        """The layer's product with the kernel a constant (`make_ops`,
        `scales`: unused; a QAT layer's rounding is in the kernel)."""
        layer, kernel = self.layer, tf.constant(self.kernel)
        x = tf.cast(inputs, tf.float32)
        if len(self.kernel.shape) == 4:
            return tf.nn.conv2d(
                x,
                kernel,
                strides=layer.strides,
                padding=layer.padding.upper(),
                dilations=layer.dilation_rate,
            )
        y = tf.matmul(tf.reshape(x, (-1, layer.input_dim)), kernel)
        static = inputs.shape[:-1]
        if all(d is not None for d in static):
            return tf.reshape(y, (*static, layer.units))
        return tf.reshape(
            y, tf.concat([tf.shape(inputs)[:-1], [layer.units]], axis=0)
        )


def activation_entries(layer, batch: int = 1) -> tuple:
    """`(input, output)` entries of one call of `layer` (its shapes known:
    a layer of a model)."""
    shape = (batch, *tuple(layer.input.shape)[1:])
    out = layer.compute_output_shape(shape)
    return math.prod(shape), math.prod(out)


def arena_of(layer, batch: int = 1, quantize=None) -> int:
    """The arena a stored kernel's product needs (bytes): the layer's
    input and output (float32; int8 under `quantize="int8"`) and TFLM's
    bookkeeping; no state of the kernel's size is ever live."""
    inputs, outputs = activation_entries(layer, batch)
    per = 1 if quantize == "int8" else 4
    return per * (inputs + outputs) + _OVERHEAD_BYTES
