"""One layer's kernel stored on the device: `CachedSchedule`.

Where a layer's best deployment is its kernel as an ordinary weight (a
small layer, whose cores and generation cost more flash and time than the
kernel itself, or a network that fits no arena otherwise), the export
generates the kernel once, in NumPy, and writes one FULLY_CONNECTED with it
as constant weights: what `mode="cached"` does for the whole model, for
this layer only. With `quantize="int8"` the converter stores it as int8
weights, exactly the int8 Dense twin's layer.
"""

import numpy as np
from keras import ops

from keras_adntn.export.schedule import ContractionSchedule

# TFLM's bookkeeping of the layer's few ops and tensors (bytes of arena)
_OVERHEAD_BYTES = 512


class CachedSchedule(ContractionSchedule):
    """A `TNDense` that multiplies on the device by its stored kernel.

    Args:
        layer: a built `TNDense`.
        batch_size: the exported batch size.
    """

    def __init__(self, layer, batch_size: int = 1):
        super().__init__(layer, batch_size)
        # generated now, outside the trace, as an export traces it (a QAT
        # layer's int8 rounding included)
        (kernel,) = layer.generated_kernel.generate(export=True).values()
        kernel = np.asarray(ops.convert_to_numpy(kernel), np.float32)
        self.kernel = kernel.reshape(layer.input_dim, layer.units)

    @property
    def block_entries(self) -> int:
        """Numbers stored: the kernel."""
        return int(self.kernel.size)

    def estimated_arena(self, batch: int = 1) -> int:
        """`arena_of(layer, batch)`."""
        return arena_of(self.layer, batch)

    def matmul(self, tf, inputs, make_ops=None, scales=None):
        """`inputs @ kernel` with the kernel a constant (`make_ops`,
        `scales`: unused; a QAT layer's rounding is in the kernel)."""
        layer, kernel = self.layer, self.kernel
        x = tf.reshape(tf.cast(inputs, tf.float32), (-1, layer.input_dim))
        y = tf.matmul(x, tf.constant(kernel))
        static = inputs.shape[:-1]
        if all(d is not None for d in static):
            return tf.reshape(y, (*static, layer.units))
        return tf.reshape(
            y, tf.concat([tf.shape(inputs)[:-1], [layer.units]], axis=0)
        )


def arena_of(layer, batch: int = 1) -> int:
    """The arena a stored kernel's product needs (bytes): the layer's
    input and output (float32) and TFLM's bookkeeping; no state of the
    kernel's size is ever live."""
    return 4 * batch * (layer.input_dim + layer.units) + _OVERHEAD_BYTES
