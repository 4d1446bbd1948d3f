"""Factorized execution of a tree (`network="ttn"`): its last level is
linear, so the input is contracted with a formed *head* (the tree up to
part of that level) and the level's other cores; the kernel is never
formed.

Each test names the regression it catches: a digit order, padding, group
or growth layout that differs from the generated kernel (parity), a head
as large as the kernel, a nonlinear network (attn, mera) or a conv kernel
silently put on this path. Parity with the generated path (padding,
groups, growth), gradients and jit / torch.compile: the `network="ttn"`
cases of tests/layers/test_factorized.py (attention projections too).
"""

import numpy as np
import pytest
from keras import ops

from keras_adntn import TNConv2D
from keras_adntn import TNDense
from keras_adntn import factorized
from keras_adntn.networks import executors
from tests import layer_contract as contract


def _ttn(units, execution, **kwargs):
    return TNDense(units, network="ttn", seed=3, execution=execution, **kwargs)


def test_ttn_head_is_far_smaller_than_the_kernel():
    # catches: a "factorized" tree that forms (nearly) the whole kernel as
    # its head, or a product that differs from x @ kernel
    layer = _ttn(4096, "factorized")
    layer.build((None, 4096))
    plan = layer.generated_kernel.factorized_execution.plan(128)
    assert isinstance(plan, factorized.HeadedPlan)
    assert 1 <= plan.head_steps < 12
    # the README's "a head, 1/8 of the kernel's numbers at 4096x4096"
    assert max(b.entries for b in plan.blocks) <= 4096 * 4096 // 8
    x = contract.random_inputs((2, 4096))
    ref = x @ ops.convert_to_numpy(layer.kernel)
    got = ops.convert_to_numpy(layer(x)) - ops.convert_to_numpy(layer.bias)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_auto_takes_the_tree_contraction_where_it_wins():
    # catches: a cost model that keeps forming a 4096x4096 ttn kernel (the
    # generate-then-multiply step is ~3x Dense, the contraction ~1.5x),
    # or that puts a network with gates after its last level on this path
    layer = TNDense(4096, network="ttn", seed=0)
    layer.build((None, 4096))
    assert layer.execution_paths(128) == {"generated_kernel": "factorized"}
    plan = layer.generated_kernel.factorized_execution.plan(128)
    assert plan.factorized_seconds(128) < plan.generated_seconds(128)
    for network in ("attn", "mera", "brickwall"):
        other = TNDense(256, network=network, seed=0)
        other.build((None, 256))
        assert other.execution_paths(128) == {"generated_kernel": "generated"}
        with pytest.raises(ValueError, match=f"network='{network}'"):
            TNDense(8, network=network, execution="factorized")


def test_ttn_conv_forms_its_kernel():
    # catches: a ttn conv kernel put on the matrix-only tree contraction
    with pytest.raises(ValueError, match="convolution kernel is formed"):
        TNConv2D(4, 3, network="ttn", execution="factorized").build(
            (None, 8, 8, 4)
        )
    auto = TNConv2D(4, 3, network="ttn", seed=0)
    auto.build((None, 8, 8, 4))
    assert auto.execution_paths(64) == {"generated_kernel": "generated"}


@pytest.mark.parametrize(
    "d_in, units, kwargs",
    [
        (100, 24, {"generator_groups": 2}),
        (24, 100, {"bond_dim": 3}),
        (7, 5, {}),
        (256, 256, {"radix": 4}),
        (300, 40, {"latent_order": 3}),
    ],
)
def test_every_head_split_matches_the_kernel(d_in, units, kwargs):
    # catches: a head made with the wrong Kronecker halves, digit roles or
    # bond order at a split the cost model does not pick for this shape
    # (NumPy executor: cheap, the same code as in a model)
    layer = TNDense(units, network="ttn", seed=1, **kwargs)
    layer.build((None, d_in))
    net = layer.generated_kernel.network
    x = contract.random_inputs((3, d_in))
    want = x @ ops.convert_to_numpy(layer.kernel)
    steps = factorized.last_level_cores(net)
    for h in range(1, steps):
        plan = factorized.plan(
            net, d_in, layer.generated_kernel.dims[1], rows=3, head_steps=h
        )
        assert plan.head_steps == h
        sites = factorized.cores(net, plan, executors.NumpyOps())
        got = factorized.numpy_apply(plan, x, sites)
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), h
    with pytest.raises(ValueError, match="head_steps"):
        factorized.plan(net, d_in, units, head_steps=steps)
