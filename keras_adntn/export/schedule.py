"""How a TN layer's product runs on the device: the schedules' contract.

`DeviceSchedule` is the one contract every schedule keeps, the one the
trace (`tracing`) and the budget search (`budget`) read: the layer, whether
its generation is anchored to the model input, the numbers a block holds,
an arena estimate, the next schedule of the same layer with a smaller
arena (`smaller`) or a faster one (`faster`), and the product itself
(`matmul`). Two families keep it:

- `TiledSchedule` (`tiling.DenseTiling`, `conv_tiling.ConvTiling`): the
  kernel generated block by block, `radix**fixed` blocks; the budget rule
  is the fewest blocks whose estimate fits the budget (`for_budget`);
- `ContractionSchedule` (`contraction.FactorizedSchedule`,
  `headed_contraction.HeadedSchedule`): the input contracted with
  constant blocks of the cores (and a tree's head); no kernel is made.

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
    """How one TN layer's product runs on the device (the contract).

    Args:
        layer: the built layer.

    Attributes:
        layer: the layer.
        anchored: whether the generation in the trace reads the cores
            anchored to the model input, as do the layer's own variables
            (see `tracing`); False where the cores are constants of a
            loop body, or where no kernel is generated.
        tiled: whether the kernel is generated block by block.
        integer: whether its ops are matmuls, reshapes and transposes with
            constant weights only (a stored kernel, or a contraction with
            constant blocks; no generation), which an int8 export
            quantizes in full: int8 weights and int8 activations, each
            step calibrated.
    """

    anchored = True
    tiled = False
    integer = False

    def __init__(self, layer):
        self.layer = layer

    @property
    def block_entries(self) -> int:
        """Numbers one block holds: generated entries per block, or the
        numbers a contraction stores."""
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

    def estimated_seconds(self, batch: int = 1) -> float | None:
        """Modeled seconds of one call on TFLM (`device_cost`), where a
        schedule models them (tiled `TNDense` generations), else None
        (then fewer blocks count as faster)."""
        return None

    def smaller(self) -> "DeviceSchedule | None":
        """The same layer's schedule of the next smaller arena (the budget
        search's step where the measured arena is over the budget), or
        None where there is none."""
        return None

    def faster(self) -> "DeviceSchedule | None":
        """The same layer's schedule of the next faster kind (fewer
        blocks), or None."""
        return None

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


class TiledSchedule(DeviceSchedule):
    """A kernel generated on the device block by block.

    Args:
        layer: the built layer.
        fixed: number of kernel digits fixed per block (`radix**fixed`
            blocks; 0: none, the whole kernel at once), from `lowest` to
            `max_fixed` (which a subclass sets first).
        lowest: the fewest digits that may be fixed.
        digits: what the digits are, for the error message.

    A subclass is built as `cls(layer, fixed)`.

    Raises:
        ValueError: for a `fixed` out of range.

    Attributes:
        fixed: the digits fixed per block.
        max_fixed: the most digits that can be fixed.
    """

    max_fixed = 0

    def __init__(
        self, layer, fixed: int = 0, lowest: int = 0, digits: str = "digits"
    ):
        if not lowest <= int(fixed) <= self.max_fixed:
            raise ValueError(
                f"Layer {layer.name!r}: `fixed` must be between {lowest} "
                f"and {self.max_fixed} {digits}, got {fixed!r}."
            )
        super().__init__(layer)
        self.fixed = int(fixed)

    @property
    def tiled(self) -> bool:
        """Whether the kernel is generated block by block."""
        return self.fixed > 0

    @property
    def blocks(self) -> int:
        """Number of blocks (1: the whole kernel at once)."""
        return self.layer.tensorization.radix**self.fixed

    def with_fixed(self, fixed: int) -> "TiledSchedule":
        """The same layer's schedule with `fixed` digits per block."""
        return type(self)(self.layer, fixed)

    def smaller(self) -> "TiledSchedule | None":
        """One more digit fixed (twice the blocks), where tiled."""
        if not self.tiled or self.fixed >= self.max_fixed:
            return None
        return self.with_fixed(self.fixed + 1)

    def faster(self) -> "TiledSchedule | None":
        """One digit fixed less (never down to untiled, which needs the
        anchor)."""
        return self.with_fixed(self.fixed - 1) if self.fixed > 1 else None

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


class ContractionSchedule(DeviceSchedule):
    """An input contracted on the device with constant blocks of the
    cores; no kernel is generated, so nothing is anchored.

    Args:
        layer: the built layer.
        batch_size: the exported batch size (the rows the blocks are
            chosen for).
    """

    anchored = False
    integer = True

    def __init__(self, layer, batch_size: int = 1):
        super().__init__(layer)
        self.batch_size = int(batch_size or 1)


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
