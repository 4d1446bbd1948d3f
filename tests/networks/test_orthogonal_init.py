"""`generator_init="orthogonal"`: the MPO starts at a Kronecker product of
orthogonal factors, so the generated kernel is (semi-)orthogonal."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_adntn import TNConv2D
from keras_adntn import TNDense
from keras_adntn import TNMultiHeadAttention
from keras_adntn.kernels import GeneratorSpec
from keras_adntn.networks import initialization as tn_init


def _kernel(units, fan_in, **kwargs):
    layer = TNDense(units, network="mpo", seed=0, **kwargs)
    layer.build((None, fan_in))
    return layer, np.asarray(ops.convert_to_numpy(layer.kernel), "float64")


def _condition(w):
    s = np.linalg.svd(w, compute_uv=False)
    return s.max() / s.min()


@pytest.mark.parametrize(
    "units, fan_in, kwargs",
    [
        (64, 64, {}),
        (32, 128, {}),  # tall: orthonormal columns
        (128, 32, {}),  # wide: orthonormal rows
        (64, 64, {"radix": 4}),
        (64, 64, {"bond_dim": 1}),
        (64, 64, {"max_bond_dim": 4}),
    ],
)
def test_orthogonal_kernel_has_a_flat_spectrum(units, fan_in, kwargs):
    layer, w = _kernel(units, fan_in, generator_init="orthogonal", **kwargs)
    # calibrated to glorot_uniform's std, like every generated kernel
    assert w.std() == pytest.approx(np.sqrt(2 / (fan_in + units)), rel=0.02)
    assert _condition(w) < 1.05
    gram = w.T @ w if fan_in >= units else w @ w.T
    np.testing.assert_allclose(gram / gram[0, 0], np.eye(len(gram)), atol=0.02)
    # the calibrated initialisation of the same MPO is far from it
    _, plain = _kernel(units, fan_in, **kwargs)
    assert _condition(plain) > 20


def test_orthogonal_groups_each_block_is_orthogonal():
    layer, w = _kernel(64, 64, generator_init="orthogonal", generator_groups=4)
    blocks = np.split(w, 4, axis=1)
    for block in blocks:
        assert _condition(block) < 1.05
    assert not np.allclose(blocks[0], blocks[1])


def test_orthogonal_init_is_seeded_and_keeps_growth_exact():
    a = _kernel(64, 64, generator_init="orthogonal")[1]
    b = _kernel(64, 64, generator_init="orthogonal")[1]
    np.testing.assert_array_equal(a, b)
    other = TNDense(64, network="mpo", seed=1, generator_init="orthogonal")
    other.build((None, 64))
    assert not np.allclose(a, ops.convert_to_numpy(other.kernel))
    layer, w = _kernel(64, 64, generator_init="orthogonal", max_bond_dim=4)
    np.testing.assert_allclose(w, a, atol=1e-6)  # same cores, embedded
    layer.grow(4)
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer.kernel), w, rtol=1e-4, atol=1e-6
    )


def test_orthogonal_init_config_round_trip():
    layer, w = _kernel(64, 64, generator_init="orthogonal")
    config = layer.get_config()
    assert config["generator_init"] == "orthogonal"
    again = TNDense.from_config(config)
    again.build((None, 64))
    np.testing.assert_allclose(ops.convert_to_numpy(again.kernel), w)
    # configs saved before the argument existed load as "calibrated"
    del config["generator_init"]
    assert TNDense.from_config(config).generator_init == "calibrated"


def test_frozen_orthogonal_layer_trains_nothing_in_the_kernel():
    model = keras.Sequential(
        [
            keras.Input((16,)),
            TNDense(
                16,
                network="mpo",
                generator_init="orthogonal",
                trainable=False,
                seed=0,
            ),
        ]
    )
    assert model.trainable_weights == []
    assert sum(int(np.prod(v.shape)) for v in model.weights) < 16 * 16


def test_site_factor_is_an_isometry_in_leaf_order():
    rng = np.random.default_rng(0)
    # leaves (o, i): the factor over (o, i) is Q[i, o] laid out o-major
    f = tn_init.site_factor(rng, (True, False), 3).reshape(3, 3)
    np.testing.assert_allclose(f.T @ f, np.eye(3), atol=1e-12)
    col = tn_init.site_factor(rng, (False, False), 2)
    assert np.linalg.norm(col) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"network": "ttn", "generator_init": "orthogonal"}, "mpo"),
        ({"network": "mpo", "generator_init": "orth"}, "`generator_init`"),
        (
            {
                "network": "mpo",
                "generator_init": "orthogonal",
                "mode_order": "flat",
            },
            "mode_order",
        ),
    ],
)
def test_orthogonal_init_rejects_what_it_cannot_do(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GeneratorSpec(**kwargs)
    with pytest.raises(ValueError, match=match):
        TNDense(8, **kwargs)


ORTH = {"network": "mpo", "generator_init": "orthogonal"}


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: TNDense(60, **ORTH).build((None, 100)), "power"),
        (lambda: TNConv2D(16, 3, **ORTH).build((None, 8, 8, 8)), "power"),
        (lambda: TNConv2D(16, 2, **ORTH).build((None, 8, 8, 8)), "rank"),
        (
            lambda: TNMultiHeadAttention(2, 8, **ORTH).build(
                (None, 4, 16), (None, 4, 16)
            ),
            "joint_qkv=False",
        ),
    ],
)
def test_orthogonal_init_errors_at_build_where_it_would_not_be(make, match):
    # the kernel's shape, hence whether it can be orthogonal, is known at
    # build
    with pytest.raises(ValueError, match=match):
        make()


def test_orthogonal_attention_with_separate_kernels():
    layer = TNMultiHeadAttention(2, 8, joint_qkv=False, seed=0, **ORTH)
    layer.build((None, 4, 16), (None, 4, 16))
    for name, kernel in layer.kernels.items():
        w = np.asarray(ops.convert_to_numpy(kernel), "float64")
        w = w.reshape(16, -1) if name != "output" else w.reshape(-1, 16)
        assert _condition(w) < 1.05, name
