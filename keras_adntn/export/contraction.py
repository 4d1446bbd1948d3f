"""Factorized on-device execution: the input contracted with the cores.

A `TNDense` whose generator is linear (`network="mpo"`, `mode_order=
"paired"`) never needs its kernel on the device either. The export writes
the layer's `factorized.FactorizedPlan`: per block of sites one
FULLY_CONNECTED whose constant weights are the block's contracted cores
(a few hundred numbers), a RESHAPE and a TRANSPOSE of rank <= 4 (5 with
generator groups), so the file stores core-sized constants and the arena
holds input-sized states, never a kernel or a block of one.

The blocks are chosen for the exported batch size, capped at
`MAX_DEVICE_BLOCK_ENTRIES` numbers per block (the flash a merged block
costs), for the least memory live at once (the arena) and then the least
modeled time, in the better of the plan's two directions. A layer trained with
`kernel_quantization="int8"` keeps the tiled generation instead (its
rounding acts on the formed kernel).
"""

import numpy as np
from keras import ops

from keras_adntn import factorized
from keras_adntn.export import device_cost
from keras_adntn.export.schedule import ContractionSchedule
from keras_adntn.networks import executors


class FactorizedSchedule(ContractionSchedule):
    """How one `TNDense` multiplies on the device without its kernel.

    Args:
        layer: a built `TNDense` for which `applies(layer)` holds.
        batch_size: the exported batch size (the rows the blocks are
            chosen for).
    """

    def __init__(self, layer, batch_size: int = 1):
        super().__init__(layer, batch_size)
        # the device contraction is made where the in-trace one is: the
        # kernel's FactorizedExecution (plan and constant blocks)
        execution = layer.generated_kernel.factorized_execution
        self.plan = execution.plan(self.batch_size, read=_value)
        _, self.matrices = execution.constant_blocks(self.plan, _value)

    @staticmethod
    def applies(layer) -> bool:
        """Whether `layer`'s product can be taken from its cores on the
        device: a `TNDense` kernel that is factorizable, without int8 QAT
        rounding."""
        kernel = getattr(layer, "generated_kernel", None)
        return (
            kernel is not None
            and len(kernel.dims) == 2  # a TNDense (convs: not yet)
            and kernel.formed_reason() is None
            and factorized.on_device(kernel.network)
        )

    @staticmethod
    def contracts_in_trace(layer) -> bool:
        """Whether `layer` (a `TNConv2D` or `TNMultiHeadAttention`) takes
        its own factorized path in a `mode="factorized"` trace (the
        `DeviceContext`'s `read`): every kernel contractible and nothing
        that needs them formed."""
        kernels = getattr(layer, "generated_kernels", [])
        return bool(kernels) and all(
            k.formed_reason() is None and factorized.on_device(k.network)
            for k in kernels
        )

    @property
    def block_entries(self) -> int:
        """Numbers stored for the layer's product (all blocks)."""
        return int(sum(m.size for m in self.matrices))

    def estimated_arena(self, batch: int = 1) -> int:
        """The plan's largest step (the states it reads and writes and a
        transposed copy), the layer's input and output, and TFLM's
        bookkeeping of every op (bytes)."""
        plan = self.plan
        live = plan.peak_entries(batch) + batch * (
            plan.in_size + plan.groups * plan.out_dim
        )
        op_count = 4 * len(plan.blocks)
        return 4 * live + op_count * device_cost.OP_ARENA_BYTES

    def matmul(self, tf, inputs, make_ops=None, scales=None):
        """`inputs @ kernel` as builtins (`make_ops`, `scales`: unused,
        see `applies`)."""
        x = tf.cast(inputs, tf.float32)
        rank = len(x.shape)
        flat = x if rank == 2 else tf.reshape(x, (-1, x.shape[-1]))
        matrices = [tf.constant(m) for m in self.matrices]
        y = self.plan.apply(flat, matrices, TfOps(tf))
        if rank == 2:
            return y
        lead = tf.shape(x)[:-1]
        return tf.reshape(y, tf.concat([lead, [y.shape[-1]]], 0))


def _value(variable) -> np.ndarray:
    """A variable's current value (the schedule is made outside the
    trace)."""
    return np.asarray(ops.convert_to_numpy(variable))


class TfOps(executors.Executor):
    """`FactorizedPlan`'s primitives as TensorFlow ops the converter maps
    to builtins: a 2-D matmul with a constant right side becomes
    FULLY_CONNECTED; groups are one FULLY_CONNECTED each (`pad_last` and
    `crop_axis`: the shared `Executor` helpers)."""

    def __init__(self, tf):
        self.tf = tf

    def reshape(self, x, shape):
        return self.tf.reshape(x, shape)

    def transpose(self, x, axes):
        return self.tf.transpose(x, axes)

    def matmul(self, x, m):
        tf = self.tf
        if len(m.shape) == 2:
            return tf.matmul(x, m)
        if x.shape[0] == 1:  # shared input, one matrix per group
            groups, k, n = m.shape
            joint = tf.reshape(tf.transpose(m, (1, 0, 2)), (k, groups * n))
            y = tf.matmul(tf.reshape(x, (-1, k)), joint)
            y = tf.reshape(y, (-1, groups, n))
            return tf.transpose(y, (1, 0, 2))
        return tf.stack(
            [tf.matmul(a, b) for a, b in zip(tf.unstack(x), tf.unstack(m))]
        )

    def pad(self, x, widths):
        return self.tf.pad(x, widths)
