"""What a Keras user expects of the three TN layers: `quantize`,
`kernel_initializer` / `kernel_regularizer` / `kernel_constraint`, seed
validation, integer images."""

import math
import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_adntn import TNConv2D
from keras_adntn import TNDense
from keras_adntn import TNMultiHeadAttention
from keras_adntn.explicit.tn_layer import TNLayer
from keras_adntn.kernels import kernel_quantization as kq
from keras_adntn.networks import GeneratorNetwork
from tests import layer_contract as contract


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _kernels(layer):
    if isinstance(layer, TNMultiHeadAttention):
        return list(layer.kernels.values())
    return [layer.kernel]


def _generator_classes(model):
    return {
        type(sub).__name__
        for sub in model._flatten_layers()
        if isinstance(sub, GeneratorNetwork)
    }


def _attention_model(**kwargs):
    inputs = keras.Input((4, 8))
    out = TNMultiHeadAttention(2, 4, seed=0, name="tn", **kwargs)(
        inputs, inputs
    )
    return keras.Model(inputs, out), contract.random_inputs((3, 4, 8))


def _dense_model(**kwargs):
    model = keras.Sequential(
        [keras.Input((12,)), TNDense(8, seed=0, name="tn", **kwargs)]
    )
    return model, contract.random_inputs((3, 12))


def _conv_model(**kwargs):
    model = keras.Sequential(
        [keras.Input((6, 6, 3)), TNConv2D(4, 3, seed=0, name="tn", **kwargs)]
    )
    return model, contract.random_inputs((3, 6, 6, 3))


MODELS = {
    "TNDense": _dense_model,
    "TNConv2D": _conv_model,
    "TNMultiHeadAttention": _attention_model,
}


# -- keras.Model.quantize / layer.quantize -------------------------------------
@pytest.mark.parametrize("execution", ["on_the_fly", "cached"])
@pytest.mark.parametrize("kind", list(MODELS))
def test_model_quantize_int8_is_the_int8_kernel_path(kind, execution):
    model, x = MODELS[kind](execution=execution)
    before = model.predict(x, verbose=0)  # fills the cache when cached
    reference, _ = MODELS[kind](kernel_quantization="int8")
    reference.set_weights(model.get_weights())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.quantize("int8")
    messages = [str(w.message) for w in caught]
    # no "Layer TTN does not have a quantize method" for the generators
    generators = _generator_classes(model)
    assert generators and not [
        m for m in messages if any(f"Layer {g} " in m for g in generators)
    ], messages
    layer = model.get_layer("tn")
    assert layer.kernel_quantization == "int8"
    for kernel in _kernels(layer):
        # on the int8 grid already: rounding again changes nothing
        np.testing.assert_allclose(
            _np(kernel),
            _np(kq.fake_quantize(kernel, "int8")),
            rtol=1e-6,
            atol=1e-7,
        )
    after = model.predict(x, verbose=0)
    np.testing.assert_allclose(
        after, reference.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    assert not np.allclose(after, before, rtol=0, atol=1e-7)
    assert layer.get_config()["kernel_quantization"] == "int8"


@pytest.mark.parametrize("mode", ["float8", "int4"])
def test_other_quantize_modes_say_what_to_use(mode):
    model, x = _dense_model()
    layer = model.get_layer("tn")
    with pytest.raises(NotImplementedError, match="TNDense 'tn'.*int8"):
        layer.quantize(mode)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.quantize(mode)
    messages = [str(w.message) for w in caught]
    assert len([m for m in messages if "TNDense 'tn'" in m]) == 1, messages
    generators = _generator_classes(model)
    assert not [
        m for m in messages if any(f"Layer {g} " in m for g in generators)
    ], messages
    assert layer.kernel_quantization is None


def test_quantized_model_round_trips(tmp_path):
    model, x = _conv_model()
    model.quantize("int8")
    path = contract.check_keras_file_round_trip(model, x, tmp_path)
    loaded = keras.models.load_model(path)
    assert loaded.get_layer("tn").kernel_quantization == "int8"


# -- kernel_initializer
FAN = 64  # TNDense(FAN) on FAN inputs: fan_in = fan_out = FAN


@pytest.mark.parametrize(
    "initializer, std",
    [
        ("glorot_uniform", math.sqrt(1 / FAN)),
        ("he_normal", math.sqrt(2 / FAN)),
        ("lecun_uniform", math.sqrt(1 / FAN)),
        (keras.initializers.VarianceScaling(4.0, "fan_out"), 2 / 8),
        (keras.initializers.RandomNormal(stddev=0.3), 0.3),
        (keras.initializers.TruncatedNormal(stddev=0.3), 0.3 * 0.8796),
        (keras.initializers.RandomUniform(-0.5, 0.5), 1 / math.sqrt(12)),
    ],
)
def test_kernel_initializer_is_the_calibration_target(initializer, std):
    layer = TNDense(FAN, seed=0, kernel_initializer=initializer)
    layer.build((None, FAN))
    assert np.std(_np(layer.kernel)) == pytest.approx(std, rel=0.02)


@pytest.mark.parametrize("kind", ["TNConv2D", "TNMultiHeadAttention"])
def test_kernel_initializer_scales_conv_and_attention(kind):
    glorot, _ = MODELS[kind]()
    he, _ = MODELS[kind](kernel_initializer="he_uniform")
    small, _ = MODELS[kind](
        kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3)
    )
    stds = [
        np.mean([np.std(_np(k)) for k in _kernels(m.get_layer("tn"))])
        for m in (glorot, he, small)
    ]
    assert stds[1] > 1.2 * stds[0] and stds[2] == pytest.approx(1e-3, rel=0.05)


@pytest.mark.parametrize(
    "make",
    [
        lambda init: TNDense(4, kernel_initializer=init),
        lambda init: TNConv2D(4, 3, kernel_initializer=init),
        lambda init: TNMultiHeadAttention(2, 4, kernel_initializer=init),
    ],
    ids=list(MODELS),
)
@pytest.mark.parametrize(
    "initializer",
    [
        "zeros",
        "orthogonal",
        keras.initializers.RandomNormal(mean=1.0),
        keras.initializers.RandomUniform(0.0, 1.0),
        "no_such_initializer",
    ],
)
def test_unsupported_kernel_initializer_raises(make, initializer):
    with pytest.raises(ValueError, match="kernel_initializer.*glorot"):
        make(initializer)


# -- kernel_regularizer / kernel_constraint
@pytest.mark.parametrize("kind", list(MODELS))
def test_kernel_regularizer_is_a_layer_loss_in_fit(kind):
    model, x = MODELS[kind](kernel_regularizer=keras.regularizers.L2(0.5))
    layer = model.get_layer("tn")
    y = np.zeros_like(model.predict(x, verbose=0))
    model(x)
    penalty = sum(0.5 * float(np.sum(_np(k) ** 2)) for k in _kernels(layer))
    assert len(model.losses) == len(_kernels(layer))
    assert float(sum(_np(v) for v in model.losses)) == pytest.approx(
        penalty, rel=1e-4
    )
    model.compile(keras.optimizers.SGD(0.05), "mse")
    mse = float(np.mean(model.predict(x, verbose=0) ** 2))
    assert model.evaluate(x, y, verbose=0) == pytest.approx(
        mse + penalty, rel=1e-4
    )
    model.fit(x, y, epochs=3, batch_size=len(x), verbose=0)
    after = sum(0.5 * float(np.sum(_np(k) ** 2)) for k in _kernels(layer))
    assert after < penalty  # the penalty shrinks the generated kernel


@pytest.mark.parametrize("kind", list(MODELS))
def test_kernel_constraint_applies_to_the_generated_kernel(kind):
    model, x = MODELS[kind](kernel_constraint="non_neg")
    layer = model.get_layer("tn")
    for kernel in _kernels(layer):
        kernel = _np(kernel)
        assert kernel.min() == 0.0 and kernel.max() > 0.0
    before = [_np(k) for k in _kernels(layer)]
    model.compile(keras.optimizers.SGD(0.1), "mse")
    y = np.ones_like(model.predict(x, verbose=0))
    model.fit(x, y, epochs=2, batch_size=len(x), verbose=0)
    for old, kernel in zip(before, _kernels(layer)):
        kernel = _np(kernel)
        assert kernel.min() >= 0.0 and not np.allclose(kernel, old)


@pytest.mark.parametrize("kind", list(MODELS))
def test_kernel_arguments_in_config_and_keras_file(kind, tmp_path):
    model, x = MODELS[kind](
        kernel_initializer="he_normal",
        kernel_regularizer="l2",
        kernel_constraint=keras.constraints.MaxNorm(2.0),
    )
    config = model.get_layer("tn").get_config()
    assert config["kernel_initializer"]["class_name"] == "HeNormal"
    assert config["kernel_regularizer"]["class_name"] == "L2"
    assert config["kernel_constraint"]["class_name"] == "MaxNorm"
    path = contract.check_keras_file_round_trip(model, x, tmp_path)
    loaded = keras.models.load_model(path).get_layer("tn")
    assert loaded.get_config() == config


# -- validation
@pytest.mark.parametrize(
    "make",
    [
        lambda seed: TNDense(4, seed=seed),
        lambda seed: TNConv2D(4, 3, seed=seed),
        lambda seed: TNMultiHeadAttention(2, 4, seed=seed),
        lambda seed: TNLayer(4, 3, 2, seed=seed),
    ],
    ids=[*MODELS, "TNLayer"],
)
@pytest.mark.parametrize("seed", ["a", 1.5, -1, True])
def test_bad_seed_raises_value_error_at_construction(make, seed):
    with pytest.raises(ValueError, match="`seed`"):
        make(seed)


def test_integer_images_are_cast_like_dense_inputs():
    layer = TNConv2D(4, 3, seed=0)
    x = np.arange(2 * 5 * 5 * 2).reshape((2, 5, 5, 2)).astype("int32")
    y = layer(x)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"
    np.testing.assert_allclose(
        _np(y), _np(layer(x.astype("float32"))), rtol=1e-6
    )


@pytest.mark.parametrize("kind", ["dense", "conv", "attention"])
def test_trainable_false_at_construction_freezes_the_generator(kind):
    # found by the generator-quality benchmark: the cores kept training
    if kind == "dense":
        layer, x = TNDense(8, trainable=False, seed=0), np.ones((4, 12))
        inputs = keras.Input((12,))
        outputs = layer(inputs)
    elif kind == "conv":
        layer = TNConv2D(4, 3, trainable=False, seed=0)
        x = np.ones((4, 6, 6, 2))
        inputs = keras.Input((6, 6, 2))
        outputs = layer(inputs)
    else:
        layer = TNMultiHeadAttention(2, 4, trainable=False, seed=0)
        x = np.ones((4, 3, 8))
        inputs = keras.Input((3, 8))
        outputs = layer(inputs, inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(outputs))
    assert layer.trainable_weights == []
    frozen = {id(v) for v in layer.weights}
    assert not frozen & {id(v) for v in model.trainable_weights}
    before = [np.array(v) for v in layer.get_weights()]
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    model.fit(
        x.astype("float32"),
        np.ones((4, *model.output_shape[1:])),
        epochs=2,
        verbose=0,
    )
    for old, new in zip(before, layer.get_weights()):
        np.testing.assert_array_equal(old, new)
