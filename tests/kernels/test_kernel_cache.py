"""Execution modes: the inference cache is never stale; kernel QAT."""

import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_adntn import TNConv2D
from keras_adntn import TNDense
from keras_adntn import TNMultiHeadAttention
from tests import layer_contract as contract

JIT = [False, True]


def _np(x):
    return ops.convert_to_numpy(x)


def _mlp(execution="cached", **kwargs):
    return keras.Sequential(
        [
            keras.Input((24,)),
            TNDense(
                16, activation="relu", execution=execution, seed=1, **kwargs
            ),
            TNDense(6, execution=execution, seed=2, **kwargs),
        ]
    )


def _reference(model, x):
    """The model's output with kernels generated now (no cache)."""
    h = x
    for layer in model.layers:
        h = layer.activation(ops.matmul(h, layer.kernel) + layer.bias)
    return _np(h)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 24)).astype("float32")
    y = rng.standard_normal((32, 6)).astype("float32")
    return x, y


@pytest.mark.parametrize("jit", JIT)
def test_cache_is_fresh_after_every_kind_of_update(data, tmp_path, jit):
    if jit and keras.backend.backend() == "torch":
        pytest.skip(contract.TORCH_COMPILE_SKIP)
    x, y = data
    model = _mlp()
    model.compile(optimizer="adam", loss="mse", jit_compile=jit)
    first = model.predict(x, verbose=0)
    np.testing.assert_allclose(first, _reference(model, x), atol=1e-5)
    # optimizer steps
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    trained = model.predict(x, verbose=0)
    assert not np.allclose(trained, first, atol=1e-4)
    np.testing.assert_allclose(trained, _reference(model, x), atol=1e-5)
    # evaluate uses the same fresh kernel
    loss = model.evaluate(x, y, verbose=0)
    assert loss == pytest.approx(float(np.mean((trained - y) ** 2)), 1e-4)
    # set_weights (e.g. averaging models) cannot carry a cache along
    path = os.path.join(tmp_path, "m.weights.h5")
    model.save_weights(path)
    model.set_weights([w * 0.9 for w in model.get_weights()])
    scaled = model.predict(x, verbose=0)
    np.testing.assert_allclose(scaled, _reference(model, x), atol=1e-5)
    # a direct assignment to one core
    core = model.layers[0].generator.trainable_weights[0]
    core.assign(core * 1.5)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), _reference(model, x), atol=1e-5
    )
    # load_weights
    model.load_weights(path)
    np.testing.assert_allclose(model.predict(x, verbose=0), trained, atol=1e-5)
    # and direct (eager) calls
    np.testing.assert_allclose(_np(model(x)), trained, atol=1e-5)


def test_cache_is_state_not_weights(data, tmp_path):
    x, _ = data
    cached, plain = _mlp("cached"), _mlp("on_the_fly")
    layer = cached.layers[0]
    assert cached.count_params() == plain.count_params()
    assert len(cached.weights) == len(plain.weights)
    # state, not weights: cached kernel, its tag and the int8 switch
    assert len(layer.variables) == len(layer.weights) + 3
    assert len(plain.layers[0].variables) == len(plain.layers[0].weights) + 1
    assert layer.compression_ratio == plain.layers[0].compression_ratio
    # files hold the same variables in both modes, and load across them
    path = contract.check_keras_file_round_trip(cached, x, tmp_path)
    weights = os.path.join(tmp_path, "c.weights.h5")
    cached.save_weights(weights)
    plain.load_weights(weights)
    np.testing.assert_allclose(
        plain.predict(x, verbose=0), cached.predict(x, verbose=0), atol=1e-5
    )
    loaded = keras.models.load_model(path)
    assert loaded.layers[0].execution == "cached"


def test_training_generates_and_frozen_layers_use_the_cache(data):
    x, y = data
    model = _mlp()
    model.layers[0].trainable = False
    frozen = _np(model.layers[0].kernel)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_allclose(_np(model.layers[0].kernel), frozen)
    np.testing.assert_allclose(
        _np(model(x, training=True)), _reference(model, x), atol=1e-5
    )


def test_mixed_precision_cached(data):
    x, _ = data
    keras.config.set_dtype_policy("mixed_float16")
    model = _mlp()
    out = model.predict(x, verbose=0)
    assert out.dtype == np.float16
    assert (
        model.layers[0].generated_kernel._cache.slots["kernel"].dtype
        == "float32"
    )
    np.testing.assert_allclose(out, _reference(model, x), atol=2e-2)


def test_conv_and_attention_cached_match_on_the_fly():
    x = contract.random_inputs((4, 6, 6, 8))
    conv = TNConv2D(8, 3, execution="cached", seed=0)
    out = _np(conv(x))
    ref = _np(ops.conv(x, conv.kernel) + conv.bias)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    core = conv.generator.trainable_weights[0]
    core.assign(core * 2.0)
    ref = _np(ops.conv(x, conv.kernel) + conv.bias)
    np.testing.assert_allclose(_np(conv(x)), ref, atol=1e-5)

    t = contract.random_inputs((2, 5, 16))
    mha = TNMultiHeadAttention(2, 8, execution="cached", seed=0)
    first = _np(mha(t, t))
    core = mha.qkv_kernel.network.trainable_weights[0]
    core.assign(core * 2.0)
    out = _np(mha(t, t))
    ref = _np(mha(t, t, training=True))  # training: kernels generated
    assert not np.allclose(out, first, atol=1e-4)
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_kernel_quantization_int8_grid_and_training(data):
    x, y = data
    layer = TNDense(16, kernel_quantization="int8", seed=0)
    layer.build((None, 24))
    kernel = _np(layer.kernel)
    scale = np.abs(kernel).max(axis=0) / 127.0
    steps = kernel / scale
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
    assert np.unique(np.round(steps[:, 0])).size > 10
    model = _mlp("on_the_fly", kernel_quantization="int8")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    history = model.fit(x, y, epochs=8, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    conv = TNConv2D(4, 3, kernel_quantization="int8", seed=0)
    conv.build((None, 6, 6, 3))
    kernel = _np(conv.kernel)
    scale = np.abs(kernel).max(axis=(0, 1, 2)) / 127.0
    np.testing.assert_allclose(kernel / scale, np.round(kernel / scale), 1e-3)


def test_qat_moves_the_cores_as_float_training_does(data):
    # catches: QAT without the straight-through estimator. The rounding's
    # zero gradient leaves only the path through the per-channel scale
    # (the column maxima), whose core updates are off by cos 0.91-0.96
    # here; with the estimator they equal float training's but for the
    # grid's rounding (cos > 0.9999). The loss falling (the test above)
    # does not tell them apart: the bias alone lowers it.
    x, _ = data
    y = np.random.default_rng(1).standard_normal((32, 16)).astype("float32")
    moves = {}
    for quantization in (None, "int8"):
        layer = TNDense(
            16,
            kernel_quantization=quantization,
            execution="on_the_fly",
            use_bias=False,
            seed=0,
        )
        model = keras.Sequential([keras.Input((24,)), layer])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        cores = layer.generated_kernel.network.trainable_weights
        before = [_np(c).copy() for c in cores]
        model.train_on_batch(x, y)
        moves[quantization] = np.concatenate(
            [(_np(c) - b).ravel() for c, b in zip(cores, before)]
        )
    plain, qat = moves[None], moves["int8"]
    norms = np.linalg.norm(plain) * np.linalg.norm(qat)
    assert plain @ qat / norms > 0.995
    assert 0.95 < np.linalg.norm(qat) / np.linalg.norm(plain) < 1.05


def test_cache_generates_only_when_stale(data):
    # catches: a cache that regenerates on every inference call (cached
    # predict would cost a generation per call, 4-6x Dense), or one that
    # misses a core update
    x, _ = data
    # attn: training calls generate (a ttn's may contract, as "auto")
    layer = TNDense(16, network="attn", execution="cached", seed=0)
    layer.build((None, 24))
    kernel = layer.generated_kernel
    with contract.counting_generations(kernel) as made:
        for _ in range(3):  # eager calls: a stale check, one generation
            layer(x, training=False)
        assert len(made) == 1
        core = kernel.network.trainable_weights[0]
        core.assign(core * 1.5)
        fresh = _np(layer(x, training=False))
        assert len(made) == 2
        layer(x, training=False)
        assert len(made) == 2
        layer(x, training=True)  # training generates: the gradient
        assert len(made) == 3
    want = _np(ops.matmul(x, layer.kernel) + layer.bias)
    np.testing.assert_allclose(fresh, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"execution": "lazy"}, "`execution` must be one of"),
        ({"execution": None}, "`execution` must be one of"),
        ({"kernel_quantization": "int4"}, "`kernel_quantization` must be"),
    ],
)
def test_bad_arguments(kwargs, match):
    for make in (
        lambda: TNDense(4, **kwargs),
        lambda: TNConv2D(4, 3, **kwargs),
        lambda: TNMultiHeadAttention(2, 4, **kwargs),
    ):
        with pytest.raises(ValueError, match=match):
            make()


def test_config_round_trip():
    x = contract.random_inputs((3, 24))
    layer = TNDense(8, execution="cached", kernel_quantization="int8")
    contract.check_config_round_trip(layer, x)


def _tag_matches(layer):
    cache = layer.generated_kernel._cache
    current = np.concatenate(
        [_np(ops.reshape(ops.cast(v, "float32"), (-1,))) for v in cache.sources]
    )
    return bool(np.array_equal(_np(cache.tag), current))


def test_growth_invalidates_the_cache(data):
    x, y = data
    model = _mlp(max_bond_dim=4)
    model.compile(optimizer="adam", loss="mse")
    model.predict(x, verbose=0)
    layer = model.layers[0]
    assert _tag_matches(layer)
    layer.grow(3)
    assert not _tag_matches(layer)  # growth is seen as a change
    grown = model.predict(x, verbose=0)
    assert _tag_matches(layer)
    np.testing.assert_allclose(grown, _reference(model, x), atol=1e-5)
    model.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), _reference(model, x), atol=1e-5
    )


@pytest.mark.parametrize("execution", ["cached", "on_the_fly"])
def test_changing_kernel_quantization_is_never_served_stale(data, execution):
    x = data[0][:8]
    model = _mlp(execution)
    float_out = _np(model.predict(x, verbose=0))
    np.testing.assert_allclose(float_out, _reference(model, x), atol=1e-5)
    for layer in model.layers:
        layer.kernel_quantization = "int8"
    int8_out = _np(model.predict(x, verbose=0))
    # the reference regenerates: each layer's kernel is on its int8 grid now
    np.testing.assert_allclose(int8_out, _reference(model, x), atol=1e-5)
    assert np.max(np.abs(int8_out - float_out)) > 1e-4
    for layer in model.layers:
        layer.kernel_quantization = None
    np.testing.assert_allclose(
        _np(model.predict(x, verbose=0)), float_out, atol=1e-5
    )


def test_cached_model_inside_a_users_jax_jit(data, tmp_path):
    if keras.backend.backend() != "jax":
        pytest.skip("jax.jit exists on the JAX backend only")
    import jax

    x = data[0][:8]
    model = _mlp("cached")
    want = _np(model.predict(x, verbose=0))
    for layer in model.layers:  # stale: the jitted call must refresh
        layer.generated_kernel._cache.invalidate()
    got = jax.jit(lambda v: model(v))(x)
    np.testing.assert_allclose(_np(got), want, atol=1e-5)
    for layer in model.layers:  # no tracer was left in the cache
        for variable in layer.generated_kernel._cache.variables:
            assert isinstance(variable.value, jax.Array)
            assert not isinstance(variable.value, jax.core.Tracer)
    np.testing.assert_allclose(
        _np(model.predict(x, verbose=0)), want, atol=1e-5
    )
    model.save(tmp_path / "after_jit.keras")
    loaded = keras.saving.load_model(tmp_path / "after_jit.keras")
    np.testing.assert_allclose(
        _np(loaded.predict(x, verbose=0)), want, atol=1e-5
    )
