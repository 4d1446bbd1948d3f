"""GeneratedKernel and GeneratorSpec: the core every TN layer wires."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_adntn import TNDense
from keras_adntn import TNMultiHeadAttention
from keras_adntn.kernels import GeneratedKernel
from keras_adntn.kernels import GeneratorSpec
from keras_adntn.kernels import calibration


def _np(x):
    return ops.convert_to_numpy(x)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"network": "tree"}, "`network`"),
        ({"bond_dim": 0}, "`bond_dim`"),
        ({"radix": 1}, "`radix`"),
        ({"mode_order": "zigzag"}, "`mode_order`"),
        ({"network": "mpo", "latent_order": 2}, "`latent_order`"),
        ({"network": "mpo", "depth": 2}, "`depth`"),
        ({"generator_groups": 0}, "`generator_groups`"),
        ({"seed": -1}, "`seed`"),
        ({"bond_dim": 3, "max_bond_dim": 2}, "`max_bond_dim`"),
        ({"generator_activation": "no_such_activation"}, "no_such"),
    ],
)
def test_spec_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GeneratorSpec(**kwargs)


def test_spec_config_round_trip_and_seed_offset():
    spec = GeneratorSpec("attn", bond_dim=3, generator_groups=2, seed=5)
    again = GeneratorSpec.from_config(spec.get_config())
    assert again.get_config() == spec.get_config()
    assert spec.offset(3).seed == 8
    assert GeneratorSpec(seed=None).offset(3).seed is None


@pytest.mark.parametrize("groups", [1, 4])
def test_kernel_matches_its_generator_blocks(groups):
    spec = GeneratorSpec("ttn", generator_groups=groups, seed=0)
    gk = GeneratedKernel(spec, (24, 16 // groups), fan_in=24, fan_out=16)
    gk.build()
    kernel = _np(gk.kernels()["kernel"])
    blocks = _np(gk.blocks())  # (groups, 24, 16 / groups)
    assert kernel.shape == (24, 16)
    np.testing.assert_allclose(
        kernel, np.concatenate(list(blocks), axis=1), atol=1e-6
    )
    # calibrated to glorot_uniform's std for the kernel's fans, per group:
    # with 4 groups their means differ and the whole kernel's std is 1.6%
    # above
    want = calibration.kernel_std(None, 24, 16)
    assert abs(kernel.std() / want - 1) < (0.001 if groups == 1 else 0.05)


def test_joint_parts_each_get_their_own_scale():
    spec = GeneratorSpec("ttn", seed=0)
    parts = [
        ("a", 32, 8, (32, 8), 32, 8),
        ("b", 4, 64, (4, 64), 4, 64),
    ]
    gk = GeneratedKernel(spec, (32, 72), parts=parts)
    gk.build()
    kernels = gk.kernels()
    assert set(kernels) == {"a", "b"}
    assert tuple(kernels["b"].shape) == (4, 64)
    for name, _, _, _, fan_in, fan_out in parts:
        got = _np(kernels[name]).std()
        want = calibration.kernel_std(None, fan_in, fan_out)
        np.testing.assert_allclose(got, want, rtol=1e-3)
    assert [v.name for v in gk.non_trainable_weights] == ["part_scale"]


def test_setting_quantization_puts_the_kernel_on_the_int8_grid():
    gk = GeneratedKernel(GeneratorSpec(seed=0), (16, 8), fan_in=16, fan_out=8)
    gk.build()
    before = _np(gk.kernels()["kernel"])
    gk.kernel_quantization = "int8"
    after = _np(gk.kernels()["kernel"])
    steps = after / (np.abs(after).max(axis=0) / 127.0)
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
    assert np.max(np.abs(after - before)) > 0
    with pytest.raises(ValueError, match="`kernel_quantization`"):
        gk.kernel_quantization = "int4"


def test_config_round_trip():
    gk = GeneratedKernel(
        GeneratorSpec("mpo", bond_dim=3, seed=1),
        (12, 10),
        fan_in=12,
        fan_out=10,
        execution="cached",
        name="w",
    )
    again = GeneratedKernel.from_config(gk.get_config())
    gk.build()
    again.build()
    np.testing.assert_allclose(
        _np(gk.kernels()["kernel"]), _np(again.kernels()["kernel"])
    )


def test_layers_are_thin_wiring_around_generated_kernels():
    dense = TNDense(8, generator_groups=2, seed=0)
    dense.build((None, 12))
    assert [k.name for k in dense.generated_kernels] == ["generated_kernel"]
    assert dense.generator is dense.generated_kernel.network
    mha = TNMultiHeadAttention(2, 4, seed=0)
    mha.build((None, 3, 8), (None, 3, 8))
    assert [k.name for k in mha.generated_kernels] == ["qkv", "output"]
    total = sum(k.count_params() for k in mha.generated_kernels)
    biases = sum(int(np.prod(b.shape)) for b in mha.biases.values())
    assert mha.count_params() == total + biases


def test_groups_means_channel_groups_only():
    with pytest.raises(ValueError, match="generator_groups"):
        TNDense(8, groups=2)
    with pytest.raises(ValueError, match="generator_groups"):
        TNMultiHeadAttention(2, 4, groups=2)
    # a config written before the rename still loads
    config = TNDense(8, generator_groups=2).get_config()
    config["groups"] = config.pop("generator_groups")
    assert TNDense.from_config(config).generator_groups == 2
    assert (
        keras.layers.deserialize(
            keras.layers.serialize(TNDense(8, generator_groups=4))
        ).generator_groups
        == 4
    )
