"""Factorized execution (`execution="factorized"` / `"auto"`): the input
contracted with the MPO's cores, the kernel never formed.

Each test names the regression it catches: a wrong digit order or group
layout (parity with the generated path), a gradient that does not reach
a core, a silent fallback, or an `"auto"` that never picks the fast path.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_adntn import TNDense
from keras_adntn import TNMultiHeadAttention
from keras_adntn import factorized
from tests import layer_contract as contract

# (input dim, units, generator groups, max_bond_dim): square, padded input
# and output, groups, growth masks, an input smaller than the output
CASES = [
    (64, 32, 1, None),
    (100, 24, 2, None),
    (24, 100, 4, 4),
    (7, 5, 1, None),
    (48, 48, 3, 6),
]


def _pair(units, execution, network="mpo", **kwargs):
    return TNDense(
        units, network=network, seed=3, execution=execution, **kwargs
    )


@pytest.mark.parametrize("network", ["mpo", "ttn"])
@pytest.mark.parametrize("case", CASES)
def test_factorized_matches_generated(case, network):
    # catches: a digit order, padding, crop or group layout (for a ttn:
    # of its head and last-level sites) that differs from the generated
    # kernel's (the two paths must agree to rounding)
    d_in, units, groups, max_bond = case
    x = contract.random_inputs((3, 5, d_in))
    outs = {}
    for execution in ("factorized", "on_the_fly"):
        layer = _pair(
            units,
            execution,
            network,
            generator_groups=groups,
            max_bond_dim=max_bond,
        )
        layer.build((None, None, d_in))
        if max_bond:
            layer.grow(max_bond - 1, noise=0.1)  # masks and grown cores
        outs[execution] = ops.convert_to_numpy(layer(x))
    ref = outs["on_the_fly"]
    scale = np.abs(ref).max()
    assert np.abs(outs["factorized"] - ref).max() <= 1e-5 * scale


def test_factorized_plan_never_forms_the_kernel():
    # catches: a "factorized" path that secretly multiplies by the whole
    # kernel (one block holding every site)
    layer = _pair(4096, "factorized")
    layer.build((None, 4096))
    plan = layer.generated_kernel.factorized_execution.plan(128)
    assert len(plan.blocks) >= 2
    largest = max(b.entries for b in plan.blocks)
    assert largest <= factorized.MAX_BLOCK_ENTRIES < 4096 * 4096
    x = contract.random_inputs((2, 4096))
    ref = x @ ops.convert_to_numpy(layer.kernel)
    got = ops.convert_to_numpy(layer(x)) - ops.convert_to_numpy(layer.bias)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_numpy_plan_matches_keras_plan():
    # catches: the export's NumPy block matrices drifting from Keras's
    layer = _pair(24, "factorized", generator_groups=2)
    layer.build((None, 40))
    gk = layer.generated_kernel
    plan = gk.factorized_execution.plan(4)
    x = contract.random_inputs((4, 40))
    cores = {
        k: ops.convert_to_numpy(v) for k, v in gk.network.active_cores().items()
    }
    got = factorized.numpy_apply(plan, x, cores)
    np.testing.assert_allclose(
        got, x @ ops.convert_to_numpy(layer.kernel), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("network", ["mpo", "ttn"])
def test_gradients_match_generated_path(network):
    # catches: a factorized path whose gradient misses a core (for a ttn:
    # one of the head's or of the last level's) or differs from the
    # generated path's (both are the same function of the cores)
    x = contract.random_inputs((16, 40))
    y = contract.random_inputs((16, 24), seed=1)
    weights = {}
    for execution in ("factorized", "on_the_fly"):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((40,)),
                _pair(24, execution, network, generator_groups=2),
            ]
        )
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        before = [np.array(w) for w in model.get_weights()]
        model.fit(x, y, epochs=2, batch_size=8, verbose=0)
        after = model.get_weights()
        # every core moved
        assert all(not np.allclose(a, b) for a, b in zip(before, after)), (
            execution
        )
        weights[execution] = after
    for a, b in zip(weights["factorized"], weights["on_the_fly"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("network", ["mpo", "ttn"])
def test_jit_fit_matches_eager(network):
    # catches: a path (for a ttn: its head) that traces differently under
    # XLA / torch.compile
    model = keras.Sequential(
        [
            keras.Input((32,)),
            _pair(16, "factorized", network, generator_groups=2),
        ]
    )
    x = contract.random_inputs((32, 32))
    y = contract.random_inputs((32, 16), seed=1)
    contract.check_jit_fit(model, x, y)


def test_auto_chooses_factorized_for_a_large_layer():
    # catches: a cost model that never takes the fast path where it wins
    # by orders of magnitude (4096x4096, 128 rows), or takes it for a
    # network with gates after its last level
    layer = TNDense(4096, network="mpo", seed=0)
    layer.build((None, 4096))
    assert layer.execution == "auto"
    assert layer.execution_paths(128) == {"generated_kernel": "factorized"}
    assert layer.execution_paths(1) == {"generated_kernel": "factorized"}
    plan = layer.generated_kernel.factorized_execution.plan(128)
    assert plan.generated_seconds(128) > 5 * plan.factorized_seconds(128)
    attn = TNDense(4096, network="attn", seed=0)
    attn.build((None, 4096))
    assert attn.execution_paths(128) == {"generated_kernel": "generated"}


def test_auto_and_cached_paths():
    # catches: the cache no longer serving inference, or auto forming the
    # kernel where a regularizer needs it
    cached = TNDense(256, network="mpo", execution="cached", seed=0)
    cached.build((None, 256))
    assert cached.execution_paths(128, training=False) == {
        "generated_kernel": "cached"
    }
    assert cached.execution_paths(128, training=True) == {
        "generated_kernel": "factorized"
    }
    reg = TNDense(256, network="mpo", kernel_regularizer="l2", seed=0)
    reg.build((None, 256))
    assert reg.execution_paths(128) == {"generated_kernel": "generated"}
    reg(contract.random_inputs((2, 256)))
    assert len(reg.losses) == 1


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"network": "attn"}, "network='attn'"),
        ({"network": "mpo", "mode_order": "flat"}, "mode_order"),
        ({"network": "mpo", "kernel_regularizer": "l2"}, "regularizer"),
        ({"network": "mpo", "kernel_constraint": "max_norm"}, "constraint"),
    ],
)
def test_factorized_errors_name_the_argument(kwargs, word):
    # catches: a silent fallback to forming the kernel
    with pytest.raises(ValueError, match="execution='factorized'") as error:
        TNDense(8, execution="factorized", **kwargs)
    assert word in str(error.value)


def test_bad_execution_lists_the_choices():
    with pytest.raises(ValueError, match="'auto', 'factorized'"):
        TNDense(8, execution="fast")


def test_int8_forms_the_quantised_kernel():
    # catches: QAT silently ignored on the factorized path (the int8 grid
    # acts on the formed kernel, so int8 switches the layer to forming it)
    layer = _pair(16, "factorized")
    x = contract.random_inputs((4, 32))
    plain = ops.convert_to_numpy(layer(x))
    layer.kernel_quantization = "int8"
    assert layer.execution_paths(4) == {"generated_kernel": "generated"}
    quant = ops.convert_to_numpy(layer(x))
    want = x @ ops.convert_to_numpy(layer.kernel) + ops.convert_to_numpy(
        layer.bias
    )
    np.testing.assert_allclose(quant, want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(quant, plain, atol=1e-6)
    with pytest.raises(ValueError, match="kernel_quantization"):
        _pair(16, "factorized", kernel_quantization="int8")


def test_summary_shows_the_path():
    # catches: a user unable to see which path a layer takes
    from keras_adntn import summary

    model = keras.Sequential(
        [
            keras.Input((1024,)),
            TNDense(1024, network="mpo", seed=0),
            TNDense(16, network="attn", seed=0),
        ]
    )
    lines = []
    rows = summary(model, print_fn=lines.append)
    assert [r["path"] for r in rows] == ["factorized", "generated", ""]
    assert "path (128 rows)" in lines[0]


def test_config_and_file_round_trip(tmp_path):
    # catches: `execution` lost in get_config / .keras files
    model = keras.Sequential(
        [keras.Input((40,)), _pair(24, "factorized", generator_groups=2)]
    )
    x = contract.random_inputs((3, 40))
    contract.check_config_round_trip(model.layers[0], x)
    contract.check_keras_file_round_trip(model, x, tmp_path)
    assert model.layers[0].get_config()["execution"] == "factorized"


def test_mixed_precision():
    # catches: a float16 contraction (the path runs in float32 and casts)
    contract.check_mixed_precision(
        lambda: _pair(24, "factorized"),
        contract.random_inputs((4, 40)),
        "mixed_float16",
    )


@pytest.mark.parametrize("network", ["mpo", "ttn"])
def test_attention_projections_factorized(network):
    # catches: TNMultiHeadAttention projections on a different path than
    # the generated one (joint and separate kernels; for a ttn, the joint
    # parts sliced and scaled after the tree contraction)
    q = contract.random_inputs((2, 5, 16))
    v = contract.random_inputs((2, 7, 12), seed=1)
    for joint in (True, False):
        outs, paths = {}, {}
        for execution in ("factorized", "on_the_fly"):
            layer = TNMultiHeadAttention(
                num_heads=2,
                key_dim=4,
                network=network,
                joint_qkv=joint,
                execution=execution,
                seed=0,
            )
            outs[execution] = ops.convert_to_numpy(layer(q, v))
            paths[execution] = set(layer.execution_paths(10).values())
        np.testing.assert_allclose(
            outs["factorized"], outs["on_the_fly"], rtol=1e-5, atol=1e-5
        )
        assert paths == {
            "factorized": {"factorized"},
            "on_the_fly": {"generated"},
        }


@pytest.mark.parametrize(
    "kernel_size, strides, padding, dilation, groups, channels, order",
    [
        (3, 1, "same", 1, 1, (6, 8), "left"),
        (5, 2, "valid", 1, 2, (6, 8), "left"),
        (1, 1, "same", 1, 1, (8, 6), "right"),
        (3, 1, "same", 2, 4, (12, 8), "right"),
    ],
)
def test_conv_factorized_matches_generated(
    kernel_size,
    strides,
    padding,
    dilation,
    groups,
    channels,
    order,
    monkeypatch,
):
    # catches: a spatial factor cropped or ordered differently from the
    # generated kernel, strides / padding / dilation not honoured, or a
    # group layout error, in either order: channel sites first (Keras's,
    # and the device's with more input than output channels), or the
    # spatial factor first (a depthwise conv with a channel multiplier,
    # then the channel sites: the device's order with fewer input
    # channels, forced here)
    from keras_adntn import TNConv2D
    from keras_adntn.factorized import FactorizedExecution

    monkeypatch.setattr(
        FactorizedExecution, "_conv_direction", lambda self, read=None: order
    )

    c_in, filters = channels
    x = contract.random_inputs((2, 11, 13, c_in))
    outs = {}
    for execution in ("factorized", "on_the_fly"):
        layer = TNConv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            dilation_rate=dilation,
            network="mpo",
            generator_groups=groups,
            seed=1,
            execution=execution,
        )
        outs[execution] = ops.convert_to_numpy(layer(x))
    plan = layer.generated_kernel.factorized_execution.plan(64)
    assert plan.direction == order
    ref = outs["on_the_fly"]
    assert np.abs(outs["factorized"] - ref).max() <= 1e-5 * np.abs(ref).max()


def test_conv_factorized_gradients_and_errors():
    # catches: gradients missing a spatial or channel core; and a silent
    # fallback where the factors cannot separate
    from keras_adntn import TNConv2D

    model = keras.Sequential(
        [
            keras.Input((8, 8, 4)),
            TNConv2D(6, 3, network="mpo", execution="factorized", seed=0),
        ]
    )
    x = contract.random_inputs((4, 8, 8, 4))
    y = contract.random_inputs((4, 6, 6, 6), seed=1)
    contract.check_every_variable_learns(model, x, y)
    with pytest.raises(ValueError, match="spatial digits"):
        TNConv2D(4, (3, 1), network="mpo", execution="factorized").build(
            (None, 8, 8, 4)
        )
    with pytest.raises(ValueError, match="groups"):
        TNConv2D(4, 3, groups=2, network="mpo", execution="factorized")
    auto = TNConv2D(4, (3, 1), network="mpo", seed=0)
    auto.build((None, 8, 8, 4))
    assert auto.execution_paths(64) == {"generated_kernel": "generated"}


def _trained_weights(build, x, y):
    """The weights after two SGD epochs from the same start, and whether
    every generator core moved (a key bias gets no gradient by design)."""
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    before = [np.array(w) for w in model.get_weights()]
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    after = model.get_weights()
    cores = [i for i, w in enumerate(model.weights) if "/mpo/" in w.path]
    moved = bool(cores) and all(
        not np.allclose(before[i], after[i]) for i in cores
    )
    return after, moved


@pytest.mark.parametrize("layer_type", ["conv", "attention"])
def test_conv_and_attention_gradients_match_generated_path(layer_type):
    # catches: a factorized conv or attention projection whose gradient
    # differs from the generated path's (the docs promise values and
    # gradients equal to 1e-5, as TNDense's test checks), in either conv
    # order, or one that misses a core
    from keras_adntn import TNConv2D

    if layer_type == "conv":
        x = contract.random_inputs((8, 8, 8, 4))
        y = contract.random_inputs((8, 6, 6, 6), seed=1)

        def build(execution):
            return lambda: keras.Sequential(
                [
                    keras.Input((8, 8, 4)),
                    TNConv2D(6, 3, network="mpo", execution=execution, seed=0),
                ]
            )

    else:
        x = contract.random_inputs((8, 5, 16))
        y = contract.random_inputs((8, 5, 16), seed=1)

        def build(execution):
            def model():
                q = keras.Input((5, 16))
                out = TNMultiHeadAttention(
                    num_heads=2,
                    key_dim=4,
                    network="mpo",
                    execution=execution,
                    seed=0,
                )(q, q)
                return keras.Model(q, out)

            return model

    weights = {}
    for execution in ("factorized", "on_the_fly"):
        weights[execution], moved = _trained_weights(build(execution), x, y)
        assert moved, execution
    for a, b in zip(weights["factorized"], weights["on_the_fly"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
