"""Gates applied as soon as their two modes exist (`Plan.interleave_gates`).

An aTTN's (and a MERA's) boundary gates act on neighbours of different
parents, so each commutes with the other parents' expansions: applied
right after the expansion that makes its later mode, it reads a partly
expanded state. Each test names the regression it catches: a tensor that
differs from the plan with a gate pass after the expansions, or gates that
read whole-size states again (the backward pass then keeps a kernel-sized
residual per gate: 13x the kernel at 4096x4096, against 2.1x interleaved
and fused with the expansion before each gate, `benchmarks/bench_memory.py`).
"""

import math

import numpy as np
import pytest

from keras_adntn import networks
from keras_adntn.networks import plan as plan_module
from keras_adntn.networks.executors import NumpyOps
from keras_adntn.networks.run_plan import run_plan

CASES = [(20, 2, None), (9, 3, None), (12, 4, 3), (7, 2, 7)]


def _net(name, n, chi, latent_order):
    net = networks.get(name)(
        num_modes=n, bond_dim=chi, groups=2, seed=1, latent_order=latent_order
    )
    net.build()
    return net


def _read_entries(plan):
    """Entries of the states the cores' contractions read, summed (what
    the backward pass keeps), and the tensor's size."""
    trace = plan.mode_trace()
    total, modes = 0, []
    for stage, steps in zip(plan.stages, trace.stages):
        if stage[0] == "latent":
            modes = list(trace.latent)
        if stage[0] != "cycle":
            continue
        for (_, _, name), (consumed, produced) in zip(stage[1], steps):
            if name is not None:
                total += math.prod(trace.sizes[m] for m in modes)
            modes = modes[len(consumed) :] + list(produced)
    return total, plan.radix**plan.num_modes


@pytest.mark.parametrize("name", ["attn", "mera"])
@pytest.mark.parametrize("n, chi, latent_order", CASES)
def test_interleaved_gates_make_the_same_tensor(
    name, n, chi, latent_order, monkeypatch
):
    net = _net(name, n, chi, latent_order)
    xp = NumpyOps()
    cores = {k: xp.convert(v) for k, v in net.active_cores(xp).items()}
    new = run_plan(net.plan, cores, xp)
    with monkeypatch.context() as m:
        m.setattr(plan_module.Plan, "interleave_gates", lambda *a: None)
        old_plan = _net(name, n, chi, latent_order).plan
    old = run_plan(old_plan, cores, xp)
    np.testing.assert_allclose(new, old, rtol=1e-10, atol=1e-12)
    # one cycle per gated level instead of one per expansion and gate pass
    cycles = [
        sum(s[0] == "cycle" for s in p.stages) for p in (net.plan, old_plan)
    ]
    assert cycles[0] < cycles[1]


@pytest.mark.parametrize("name", ["attn", "mera"])
def test_gates_read_partly_expanded_states(name, monkeypatch):
    # at 4096x4096 (24 modes): each gate read the whole tensor, now the
    # states grow geometrically and all the reads sum to a few kernels
    net = _net(name, 24, 2, None)
    read, size = _read_entries(net.plan)
    with monkeypatch.context() as m:
        m.setattr(plan_module.Plan, "interleave_gates", lambda *a: None)
        old_read, _ = _read_entries(_net(name, 24, 2, None).plan)
    assert old_read > 8 * size
    # each gate also contracted with the expansion before it: the
    # expanded state is never read on its own
    assert read < 1.5 * size
    blocks = [b for st in net.plan.stages if st[0] == "cycle" for b in st[1]]
    assert any(isinstance(b[2], tuple) for b in blocks)
