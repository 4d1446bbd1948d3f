"""Every way to deploy one `TNConv2D`, with its estimated costs.

The convolution's counterpart of `candidates` (whose `Candidate`, twin
and stored kernel it shares):

- `"factorized"`: the input contracted with the cores
  (`conv_contraction.FactorizedConvSchedule`; an mpo whose spatial
  digits fill sites of their own);
- `"on_the_fly"`: the kernel generated in blocks of input channels
  (`conv_tiling.ConvTiling`; one candidate per block count), or whole,
  in the trace, where channel blocks do not pay;
- `"cached"`: the kernel stored as CONV_2D weights (`cached`).
"""

from keras_adntn.export import candidates as base
from keras_adntn.export import device_cost
from keras_adntn.export.cached import activation_entries
from keras_adntn.export.conv_contraction import FactorizedConvSchedule
from keras_adntn.export.conv_tiling import ConvTiling

# ops of a contraction apart from its blocks (depthwise conv, reshapes,
# the sum over the bond)
_CONV_OPS = 6


def candidates(layer, mode: str, quantize=None, batch: int = 1) -> list:
    """Every `Candidate` of a `TNConv2D` of the kinds `mode` allows."""
    kinds = base.MODE_KINDS[mode]
    found = []
    contracts = FactorizedConvSchedule.applies(layer)
    if "factorized" in kinds and contracts:
        found.append(_factorized(layer, quantize, batch))
    if "on_the_fly" in kinds or (mode == "factorized" and not found):
        found += _on_the_fly(layer, batch, whole=not contracts)
    if "cached" in kinds and base.CachedSchedule.applies(layer):
        found.append(base.cached(layer, quantize, batch))
    return found


def _factorized(layer, quantize, batch):
    schedule = FactorizedConvSchedule(layer, batch)
    macs, moved, ops = device_cost.plan_work(schedule.plan, schedule.pixels)
    kh, kw = layer.kernel_size
    work = (
        macs + kh * kw * schedule.depthwise_entries(),
        moved,
        ops + _CONV_OPS,
    )
    plan = schedule.plan
    detail = f"{len(plan.blocks)} blocks, {plan.direction}"
    return base.contraction(layer, detail, schedule, work, quantize, batch)


def _on_the_fly(layer, batch, whole):
    network = layer.generated_kernel.network
    params = network.num_params
    inputs, outputs = activation_entries(layer, batch)
    _, macs = base.kernel_macs(layer, batch)
    activations = 4 * (inputs + outputs)
    written, peak, steps = device_cost.generation_work(network)
    found = []
    if not ConvTiling.applies(layer):
        if whole:  # generated whole in the trace (no schedule)
            ops = device_cost.OPS_PER_STEP * steps + _CONV_OPS
            found.append(
                base.Candidate(
                    layer.name,
                    "on_the_fly",
                    "whole kernel",
                    4 * params
                    + base.bias_bytes(layer)
                    + ops * device_cost.GENERATION_OP_FLASH_BYTES,
                    4 * 4 * peak + activations,
                    device_cost.seconds(macs, ops=ops, written=written),
                    lambda: None,
                )
            )
        return found
    for fixed in range(1, ConvTiling(layer, 1).max_fixed + 1):
        schedule = ConvTiling(layer, fixed)
        written, _, steps = device_cost.generation_work(
            network, _fixed_leaves(layer, fixed)
        )
        blocks = schedule.blocks
        ops = blocks * (device_cost.OPS_PER_STEP * steps + _CONV_OPS)
        found.append(
            base.Candidate(
                layer.name,
                "on_the_fly",
                f"{blocks} blocks",
                4 * params
                + base.bias_bytes(layer)
                + ops * device_cost.GENERATION_OP_FLASH_BYTES,
                schedule.estimated_arena(batch) + activations,
                device_cost.seconds(macs, ops=ops, written=blocks * written),
                lambda schedule=schedule: schedule,
            )
        )
    return found


def _fixed_leaves(layer, fixed):
    """Leaf positions of the `fixed` most significant input-channel
    digits (a `ConvTiling` block's)."""
    t = layer.tensorization
    return [t.leaf_order.index((2, k)) for k in range(fixed)]
