"""Every way to deploy one `TNDense`, with its estimated costs: `Candidate`.

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
from typing import Callable

from keras_adntn.export import device_cost
from keras_adntn.export.cached import CachedSchedule
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
    """

    layer: str
    kind: str
    detail: str
    flash_bytes: int
    arena_bytes: int
    seconds: float
    make: Callable = dataclasses.field(default=None, compare=False)

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
    contraction's states hold one byte a number (its float32 input and
    output kept for a model's first and last layer)."""
    if quantize != "int8" or kind == "on_the_fly":
        return int(estimate)
    return int(estimate) // 4 + 4 * batch * (layer.input_dim + layer.units)


def twin(layer, batch: int = 1) -> Candidate:
    """The layer as an int8 Dense layer: int8 weights, int32 bias."""
    d_in, units = layer.input_dim, layer.units
    return Candidate(
        layer.name,
        "int8 Dense twin",
        "",
        d_in * units + 4 * units + device_cost.OP_FLASH_BYTES,
        arena_of(layer, batch),
        device_cost.seconds(batch * d_in * units, ops=1),
    )


def candidates(layer, mode: str, quantize=None, batch: int = 1) -> list:
    """Every `Candidate` of a `TNDense` of the kinds `mode` allows
    (`MODE_KINDS`; `"factorized"` falls back to `"on_the_fly"` where
    neither contraction applies, as the export always has)."""
    kinds = MODE_KINDS[mode]
    found = []
    bias = 4 * layer.units if layer.use_bias else 0
    if "factorized" in kinds and FactorizedSchedule.applies(layer):
        found.append(_factorized(layer, quantize, batch, bias))
    if "headed" in kinds and HeadedSchedule.applies(layer):
        found += _headed(layer, quantize, batch, bias)
    if "on_the_fly" in kinds or (mode == "factorized" and not found):
        found += _on_the_fly(layer, quantize, batch, bias)
    if "cached" in kinds:
        stored = layer.input_dim * layer.units
        found.append(
            Candidate(
                layer.name,
                "cached",
                "int8 kernel" if quantize == "int8" else "kernel",
                stored * bytes_per_number("cached", quantize)
                + bias
                + device_cost.OP_FLASH_BYTES,
                arena_of(layer, batch),
                device_cost.seconds(batch * stored, ops=1),
                functools.partial(CachedSchedule, layer, batch),
            )
        )
    return found


def _factorized(layer, quantize, batch, bias):
    schedule = FactorizedSchedule(layer, batch)
    macs, moved, ops = device_cost.plan_work(schedule.plan, batch)
    return Candidate(
        layer.name,
        "factorized",
        f"{len(schedule.plan.blocks)} blocks",
        schedule.block_entries * bytes_per_number("factorized", quantize)
        + bias
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
