"""`factorized.FactorizedPlan` in NumPy: both directions of the
product and the block choice an export makes (least memory live at once).

Each test names the regression it catches: a block matrix laid out for the
other direction, a digit, padding or group order that differs from the
generated kernel, a lead bond contracted on the wrong axis, or a memory
objective that does not lower the peak it reports.
"""

import numpy as np
import pytest
from keras import ops

from keras_adntn import TNDense
from keras_adntn import factorized
from keras_adntn.networks import executors


def _mpo(rows, columns, **kwargs):
    layer = TNDense(columns, network="mpo", seed=2, **kwargs)
    layer.build((None, rows))
    kernel = ops.convert_to_numpy(layer.kernel).astype(np.float64)
    network = layer.generated_kernel.network
    return network, network.active_cores(executors.NumpyOps()), kernel


@pytest.mark.parametrize(
    "rows, columns, kwargs",
    [(64, 192, {}), (50, 36, {}), (48, 64, {"generator_groups": 2})],
    ids=["output-heavy", "padded", "groups"],
)
def test_both_directions_give_x_at_kernel(rows, columns, kwargs):
    # catches: a left-to-right block matrix or transpose that differs from
    # the kernel's digit order, padding or groups, for any block choice
    network, cores, kernel = _mpo(rows, columns, **kwargs)
    g = kwargs.get("generator_groups", 1)
    x = np.random.default_rng(0).standard_normal((5, rows))
    for direction in ("right", "left"):
        for cap in (1, 64, 4096):
            for objective in ("time", "memory"):
                plan = factorized.plan(
                    network,
                    rows,
                    columns // g,
                    rows=16,
                    max_block_entries=cap,
                    direction=direction,
                    objective=objective,
                )
                got = factorized.numpy_apply(plan, x, cores)
                # float64 cores against the float32 kernel
                err = np.abs(got - x @ kernel).max()
                assert err <= 1e-5 * np.abs(x @ kernel).max(), (plan, err)


def test_left_direction_contracts_the_lead_bond_as_an_input():
    # catches: a conv's spatial-first order contracting its (c_in, a)
    # pixels in another layout than the channel-first plan makes them
    # (grouped inputs too)
    from keras_adntn import TNConv2D

    layer = TNConv2D(8, 3, network="mpo", generator_groups=2, seed=0)
    layer.build((None, 6, 6, 6))
    network = layer.generated_kernel.network
    # the padded 3x3 taps: 4 digits
    first = len(factorized.lead_sites(network, 4))
    cores = network.active_cores(executors.NumpyOps())
    plans = {
        d: factorized.plan(network, 6, 4, first_site=first, direction=d)
        for d in ("right", "left")
    }
    a = plans["right"].lead_bond
    assert a > 1
    x = np.random.default_rng(1).standard_normal((2, 3, 6, a))
    # right: every (c_in) pixel to (G, out, a); take each group's a-th slice
    right = np.stack(
        [
            factorized.numpy_apply(plans["right"], x[g, :, :, k], cores)
            .reshape(3, 2, 4, a)[:, g, :, k]
            for g in range(2)
            for k in range(a)
        ]
    ).reshape(2, a, 3, 4)
    left = factorized.numpy_apply(plans["left"], x.reshape(2, 3, -1), cores)
    np.testing.assert_allclose(
        left.reshape(3, 2, 4), right.sum(1).transpose(1, 0, 2), atol=1e-9
    )


def test_memory_objective_lowers_the_peak():
    # catches: an export plan that keeps the fastest blocks although they
    # hold twice the live numbers (an attention projection whose output
    # sites come last: right to left carries their digits across the
    # whole input), or a peak the blocks do not reach
    network, cores, _ = _mpo(64, 192)
    plans = {
        (d, o): factorized.plan(
            network,
            64,
            192,
            rows=16,
            max_block_entries=1024,
            direction=d,
            objective=o,
        )
        for d in ("right", "left")
        for o in ("time", "memory")
    }
    for d in ("right", "left"):
        assert (
            plans[d, "memory"].peak_entries()
            <= plans[d, "time"].peak_entries()
        )
    assert (
        plans["left", "memory"].peak_entries()
        < plans["right", "memory"].peak_entries()
    )
    chosen = factorized.least_memory(list(plans.values()))
    assert chosen.direction == "left"
    # the peak is that of the states apply makes: rows x 64 input numbers
    # in, the 256 padded outputs at the end
    assert chosen.peak_entries() >= 16 * (64 + 256)


def test_plan_arguments_are_checked():
    network, _, _ = _mpo(16, 16)
    with pytest.raises(ValueError, match="`direction`"):
        factorized.plan(network, 16, 16, direction="up")
    with pytest.raises(ValueError, match="`objective`"):
        factorized.plan(network, 16, 16, objective="flash")
    tree = TNDense(16, network="ttn", seed=0)
    tree.build((None, 16))
    with pytest.raises(ValueError, match="`direction` must be 'right'"):
        factorized.plan(
            tree.generated_kernel.network, 16, 16, direction="left"
        )


def test_conv_order_is_the_smaller_state_on_the_device_only():
    # catches: an export that keeps the channel sites first where they
    # make the larger per-pixel state (the arena of a 32 -> 64 channel
    # conv: 260 KB against 132 KB), or Keras taking the spatial factor
    # first (a depthwise conv with a channel multiplier: a 6x slower train
    # step on XLA CPU)
    from keras_adntn import TNConv2D

    for c_in, filters, device_order in ((8, 16, "left"), (16, 8, "right")):
        layer = TNConv2D(filters, 3, network="mpo", seed=0)
        layer.build((None, 8, 8, c_in))
        kernel = layer.generated_kernel
        assert kernel.factorized_execution.plan(64).direction == "right"
        read = ops.convert_to_numpy  # an export contracting on the device
        plan = kernel.factorized_execution.plan(64, read=read)
        assert plan.direction == device_order
