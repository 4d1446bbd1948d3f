"""`DeviceSchedule`: how a generating layer multiplies on the device.

The common interface of `tiling.DenseTiling`, `conv_tiling.ConvTiling`
and `contraction.FactorizedSchedule`, the one the trace (`tracing`) and
the budget search (`budget`) read, and the one budget rule: the fewest
blocks whose estimated arena fits the budget.

The estimate, in bytes of float32, is `_BLOCK_COPIES` copies of the
largest state a block holds (the block, its permuted copy and the
contraction before it) plus `_CARRY_COPIES` copies of the tensors a loop
carries (TFLM copies them between the WHILE op and its subgraphs). The
export measures the real arena on TFLM where it can.
"""

import numpy as np

from keras_adntn.kernels.kernel_quantization import int8_scale

# Estimated arena per entry of a block's largest state, in float32 entries.
_BLOCK_COPIES = 4
# Loop-carried tensors are copied between the WHILE op and its subgraphs.
_CARRY_COPIES = 5


class DeviceSchedule:
    """How one generating layer's product runs on the device.

    Args:
        layer: the built layer.
        fixed: number of kernel digits fixed per block (`radix**fixed`
            blocks; 0: none, the whole kernel at once), from `lowest` to
            `max_fixed` (which a subclass sets first).
        lowest: the fewest digits that may be fixed.
        digits: what the digits are, for the error message.

    Raises:
        ValueError: for a `fixed` out of range.

    Attributes:
        layer: the layer.
        fixed: the digits fixed per block.
        max_fixed: the most digits that can be fixed.
        anchored: whether the generation in the trace reads the cores
            anchored to the model input, as do the layer's own variables
            (see `tracing`); False where the cores are constants of a
            loop body, or where no kernel is generated.
    """

    max_fixed = 0
    anchored = True

    def __init__(
        self, layer, fixed: int = 0, lowest: int = 0, digits: str = "digits"
    ):
        if not lowest <= int(fixed) <= self.max_fixed:
            raise ValueError(
                f"Layer {layer.name!r}: `fixed` must be between {lowest} "
                f"and {self.max_fixed} {digits}, got {fixed!r}."
            )
        self.layer = layer
        self.fixed = int(fixed)

    @property
    def tiled(self) -> bool:
        """Whether the kernel is generated block by block."""
        return self.fixed > 0

    @property
    def blocks(self) -> int:
        """Number of blocks (1: the whole kernel at once)."""
        return self.layer.tensorization.radix**self.fixed

    @property
    def block_entries(self) -> int:
        """Generated entries per block (what the budget search grows)."""
        raise NotImplementedError

    @property
    def peak_entries(self) -> int:
        """Largest state a block's generation holds (entries)."""
        return self.block_entries

    def carried_entries(self, batch: int = 1) -> int:
        """Entries of the tensors a loop carries (0: no loop)."""
        return 0

    def estimated_arena(self, batch: int = 1) -> int:
        """A rough arena estimate (bytes; see the module doc)."""
        return 4 * (
            _BLOCK_COPIES * self.peak_entries
            + _CARRY_COPIES * self.carried_entries(batch)
        )

    def with_fixed(self, fixed: int) -> "DeviceSchedule":
        """The same layer's schedule with `fixed` digits per block."""
        return type(self)(self.layer, fixed)

    @staticmethod
    def pays(layer) -> bool:
        """Whether blocks bring the layer's arena down (else untiled)."""
        return True

    @classmethod
    def for_budget(cls, layer, budget: int | None, batch: int = 1):
        """The schedule with the fewest blocks whose estimate fits
        `budget` (bytes; None: two blocks, the fastest tiled schedule);
        untiled where tiling does not pay (`pays`)."""
        if not cls.pays(layer):
            return cls(layer, 0)
        tiling = cls(layer, 1)
        if budget is None:
            return tiling
        while (
            tiling.estimated_arena(batch) > budget
            and tiling.fixed < tiling.max_fixed
        ):
            tiling = tiling.with_fixed(tiling.fixed + 1)
        return tiling

    def matmul(self, tf, inputs, make_ops, scales=None):
        """The layer's product of `inputs` with its kernel, as builtins.

        Args:
            tf: the TensorFlow module.
            inputs: the layer's input tensor.
            make_ops: returns a fresh generation executor
                (`tracing.DeviceOps`, anchored as `anchored` says).
            scales: None, or the per-output-channel int8 scales of the
                layer's kernel quantisation (`int8_scales`), fixed at
                export.
        """
        raise NotImplementedError


def slicing_pays(layer, axis: int) -> bool:
    """Whether fixing all digits of the kernel's `axis` (the input axis)
    brings the generator's largest state to at most a quarter of the
    kernel (`GeneratorNetwork.sliced_peak`)."""
    t = layer.tensorization
    if t.mode_order != "paired":
        return False
    leaves = [t.leaf_order.index((axis, k)) for k in range(t.digits[axis])]
    network = layer.generator
    return 4 * network.sliced_peak(leaves) <= network.groups * t.size


def int8_scales(layer) -> np.ndarray | None:
    """The per-output-channel scales of a layer's kernel quantisation
    (`kernel_quantization="int8"`), from its current kernel; else None."""
    if getattr(layer, "kernel_quantization", None) != "int8":
        return None
    from keras import ops

    return np.asarray(ops.convert_to_numpy(int8_scale(layer.kernel)))

