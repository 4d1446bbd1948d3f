"""Every way to deploy one TN layer, with its estimated costs: `Candidate`.

This module makes a `TNDense`'s candidates (`conv_candidates` a
`TNConv2D`'s, with the shared pieces here: the twin, the stored kernel,
a contraction's candidate).

A layer's candidates are its device schedules (`schedule.DeviceSchedule`)
of every kind that applies, each sized every way it can be:

- `"factorized"`: the input contracted with block matrices of the cores
  (`contraction.FactorizedSchedule`; linear generators: mpo);
- `"headed"`: a tree's input contracted with its last level and a
  constant head, in input tiles (`headed_contraction.HeadedSchedule`;
  one candidate per head size and tile count);
- `"on_the_fly"`: the kernel generated block by block on the device
  (`tiling.DenseTiling`; one candidate per block count);
- `"cached"`: the kernel stored as FULLY_CONNECTED weights
  (`cached.CachedSchedule`).

Each carries its estimated flash, arena and latency (`device_cost`) and
makes its schedule only when chosen (`make`). The *int8 Dense twin* (the
layer as an int8 Dense layer) is the reference every plan is held to.
"""

import dataclasses
import functools
import math
from typing import Callable

import numpy as np

from keras_adntn.export import device_cost
from keras_adntn.export.cached import CachedSchedule
from keras_adntn.export.cached import activation_entries
from keras_adntn.export.cached import arena_of
from keras_adntn.export.contraction import FactorizedSchedule
from keras_adntn.export.headed_contraction import HeadedSchedule
from keras_adntn.export.tiling import DenseTiling

KINDS = ("factorized", "headed", "on_the_fly", "cached")
# the candidate kinds each `mode` allows a layer
MODE_KINDS = {
    "auto": KINDS,
    "factorized": ("factorized", "headed"),
    "on_the_fly": ("on_the_fly",),
    "cached": ("cached",),
}
# a stored int8 kernel rounding this many times worse than a Gaussian
# kernel's is left out of the plan where another deployment fits
INT8_ERROR_FACTOR = 3.0
# ops of a tiled generation's loop apart from its steps (counter, digits,
# slices, the block's matmul and the running sum)
_LOOP_OPS = 12


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One deployment of one layer, with its estimated costs.

    Attributes:
        layer: the layer's name.
        kind: one of `KINDS`, or `"int8 Dense twin"` (the reference).
        detail: its size, e.g. `"64 blocks"` or `"head of 5 cores, 8
            tiles"`.
        flash_bytes: estimated bytes in the file (stored numbers, the
            bias, and the ops' bookkeeping).
        arena_bytes: estimated tensor arena while it runs (bytes).
        seconds: estimated seconds per call on TFLM's reference kernels
            (`device_cost`; meaningful as a ratio).
        make: returns its `DeviceSchedule` (None: the twin).
        int8_error: for a kernel stored in int8, its relative rounding
            error on the per-tensor int8 grid (`int8_rounding_error`),
            else None; `int8_reference`: a Gaussian kernel's of its size
            (`gaussian_int8_error`).
    """

    layer: str
    kind: str
    detail: str
    flash_bytes: int
    arena_bytes: int
    seconds: float
    make: Callable = dataclasses.field(default=None, compare=False)
    int8_error: float | None = None
    int8_reference: float | None = None

    @property
    def int8_outliers(self) -> bool:
        """Whether its int8 kernel rounds far worse than a Gaussian kernel
        of its size (`INT8_ERROR_FACTOR` times): a generated kernel's
        outliers set the int8 scale and most entries round to few
        levels."""
        if self.int8_error is None:
            return False
        return self.int8_error > INT8_ERROR_FACTOR * self.int8_reference

    def describe(self) -> str:
        """`"on_the_fly (64 blocks)"`."""
        return f"{self.kind} ({self.detail})" if self.detail else self.kind

    def costs(self) -> str:
        """`"42.1 KB flash, 130.0 KB arena, 2.10 ms"`."""
        return (
            f"{self.flash_bytes / 1024:,.1f} KB flash, "
            f"{self.arena_bytes / 1024:,.1f} KB arena, "
            f"{1e3 * self.seconds:.2f} ms"
        )


def bytes_per_number(kind: str, quantize: str | None) -> int:
    """Bytes the file stores per number of a candidate's constants: int8
    for a stored kernel and a contraction's blocks (quantized in full; a
    generation stays float32), float16 for every constant."""
    if quantize == "float16":
        return 2
    return 1 if quantize == "int8" and kind != "on_the_fly" else 4


def arena_bytes(estimate: int, kind: str, quantize, batch, layer) -> int:
    """A schedule's float32 arena `estimate` for the export: under int8 a
    contraction's states hold one byte a number (its int8 input and
    output counted once more, for their conversions)."""
    if quantize != "int8" or kind == "on_the_fly":
        return int(estimate)
    inputs, outputs = activation_entries(layer, batch)
    return int(estimate) // 4 + inputs + outputs


def kernel_macs(layer, batch: int = 1) -> tuple:
    """`(kernel numbers, multiply-accumulates of one call)` of `layer`'s
    product with its kernel (a matmul or a convolution)."""
    dims = layer.generated_kernel.dims
    _, outputs = activation_entries(layer, batch)
    size = math.prod(dims)
    return size, outputs * (size // dims[-1])


def bias_bytes(layer) -> int:
    """Bytes of the layer's bias (float32 or int32)."""
    return 4 * layer.generated_kernel.dims[-1] if layer.use_bias else 0


def twin(layer, batch: int = 1) -> Candidate:
    """The layer as an int8 Dense (or Conv2D) layer: int8 weights, int32
    bias."""
    size, macs = kernel_macs(layer, batch)
    return Candidate(
        layer.name,
        "int8 Dense twin",
        "",
        size + bias_bytes(layer) + device_cost.OP_FLASH_BYTES,
        arena_of(layer, batch, "int8"),
        device_cost.seconds(macs, ops=1),
    )


def candidates(layer, mode: str, quantize=None, batch: int = 1) -> list:
    """Every `Candidate` of a `TNDense` (or, `conv_candidates`, a
    `TNConv2D`) of the kinds `mode` allows (`MODE_KINDS`; `"factorized"`
    falls back to `"on_the_fly"` where no contraction applies, as the
    export always has)."""
    if len(layer.generated_kernel.dims) == 4:
        from keras_adntn.export import conv_candidates

        return conv_candidates.candidates(layer, mode, quantize, batch)
    kinds = MODE_KINDS[mode]
    found = []
    bias = bias_bytes(layer)
    if "factorized" in kinds and FactorizedSchedule.applies(layer):
        found.append(_factorized(layer, quantize, batch))
    if "headed" in kinds and HeadedSchedule.applies(layer):
        found += _headed(layer, quantize, batch, bias)
    if "on_the_fly" in kinds or (mode == "factorized" and not found):
        found += _on_the_fly(layer, quantize, batch, bias)
    if "cached" in kinds:
        found.append(cached(layer, quantize, batch))
    return found


def cached(layer, quantize, batch: int = 1) -> Candidate:
    """The `"cached"` candidate: the kernel stored (under int8 it is made
    now, to weigh its rounding error)."""
    stored, macs = kernel_macs(layer, batch)
    make, error = functools.partial(CachedSchedule, layer, batch), None
    if quantize == "int8":
        schedule = CachedSchedule(layer, batch)
        make, error = (lambda: schedule), int8_rounding_error(schedule.kernel)
    return Candidate(
        layer.name,
        "cached",
        "int8 kernel" if quantize == "int8" else "kernel",
        stored * bytes_per_number("cached", quantize)
        + bias_bytes(layer)
        + device_cost.OP_FLASH_BYTES,
        arena_of(layer, batch, quantize),
        device_cost.seconds(macs, ops=1),
        make,
        error,
        None if error is None else gaussian_int8_error(stored),
    )


def int8_rounding_error(kernel) -> float:
    """`|W - Q(W)| / |W|` (Frobenius) of `kernel` on the per-tensor int8
    grid (`max |W| / 127`) the converter stores FULLY_CONNECTED weights
    on."""
    kernel = np.asarray(kernel, np.float64)
    step = max(float(np.abs(kernel).max()), 1e-30) / 127.0
    rounded = np.round(kernel / step) * step
    norm = max(float(np.linalg.norm(kernel)), 1e-30)
    return float(np.linalg.norm(kernel - rounded) / norm)


def gaussian_int8_error(size: int) -> float:
    """The expected `int8_rounding_error` of a Gaussian kernel of `size`
    entries: its largest entry is about `sqrt(2 ln size)` deviations, and
    rounding adds a uniform error of a twelfth of the step squared."""
    return math.sqrt(2.0 * math.log(max(size, 2))) / (127.0 * math.sqrt(12))


def _factorized(layer, quantize, batch):
    schedule = FactorizedSchedule(layer, batch)
    work = device_cost.plan_work(schedule.plan, batch)
    detail = f"{len(schedule.plan.blocks)} blocks"
    return contraction(layer, detail, schedule, work, quantize, batch)


def contraction(layer, detail, schedule, work, quantize, batch) -> Candidate:
    """The `"factorized"` candidate of a contraction `schedule` whose call
    does `work` (`(macs, numbers moved, ops)`)."""
    macs, moved, ops = work
    per = bytes_per_number("factorized", quantize)
    return Candidate(
        layer.name,
        "factorized",
        detail,
        schedule.block_entries * per
        + bias_bytes(layer)
        + ops * device_cost.OP_FLASH_BYTES,
        arena_bytes(
            schedule.estimated_arena(batch),
            "factorized",
            quantize,
            batch,
            layer,
        ),
        device_cost.seconds(macs, moved, ops),
        lambda: schedule,
    )


def _headed(layer, quantize, batch, bias):
    per = bytes_per_number("headed", quantize)
    found = []
    for option in HeadedSchedule.options(layer, batch):
        tiles, steps = option["tiles"], option["whole"].head_steps
        macs, moved, _ = device_cost.plan_work(option["plan"], batch)
        found.append(
            Candidate(
                layer.name,
                "headed",
                f"head of {steps} cores, {tiles} tiles",
                option["stored"] * per
                + bias
                + option["ops"] * device_cost.OP_FLASH_BYTES,
                arena_bytes(
                    4 * option["arena"], "headed", quantize, batch, layer
                ),
                device_cost.seconds(tiles * macs, tiles * moved, option["ops"]),
                functools.partial(
                    HeadedSchedule, layer, batch, None, (steps, tiles)
                ),
            )
        )
    return found


def _on_the_fly(layer, quantize, batch, bias):
    per = bytes_per_number("on_the_fly", quantize)
    params = layer.generated_kernel.network.num_params
    # a tiled network is always generated in a loop (the whole kernel at
    # once needs the anchor, and holds the kernel in the arena)
    pays = DenseTiling.pays(layer)
    top = DenseTiling(layer, 0).max_fixed if pays else 0
    found = []
    for fixed in range(1 if pays and top else 0, top + 1):
        schedule = DenseTiling(layer, fixed)
        _, _, steps = device_cost.generation_work(
            layer.generated_kernel.network, schedule.fixed_leaves
        )
        ops = device_cost.OPS_PER_STEP * steps + _LOOP_OPS
        blocks = schedule.blocks
        found.append(
            Candidate(
                layer.name,
                "on_the_fly",
                f"{blocks} blocks" if fixed else "whole kernel",
                params * per
                + bias
                + ops * device_cost.GENERATION_OP_FLASH_BYTES,
                schedule.estimated_arena(batch),
                schedule.estimated_seconds(batch),
                lambda schedule=schedule: schedule,
            )
        )
    return found
