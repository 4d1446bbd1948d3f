"""Package generator activations: siren, rational, prelu (SPEC §4-5)."""

import math
import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_adntn import TNDense
from keras_adntn import activations as tn_act
from keras_adntn.networks import initialization as tn_init
from keras_adntn.networks.executors import KerasOps
from keras_adntn.networks.executors import numpy_ops
from keras_adntn.networks.ttn import TTN
from tests.layer_contract import check_config_round_trip
from tests.layer_contract import check_every_variable_learns
from tests.layer_contract import check_keras_file_round_trip
from tests.layer_contract import random_inputs

NAMES = ["siren", "rational", "prelu"]


@pytest.mark.parametrize("name", NAMES)
def test_numpy_and_keras_evaluations_agree(name):
    act = tn_act.get(name)
    x = np.linspace(-3, 3, 41).reshape(1, -1)
    params = act.initial_params(1)
    want = act.numpy_eval(x, params)
    got = act.keras_call(ops.convert_to_tensor(x.astype("f4")), params)
    np.testing.assert_allclose(ops.convert_to_numpy(got), want, atol=1e-4)


def test_rational_starts_close_to_relu():
    act = tn_act.Rational()
    x = np.linspace(-1, 1, 101).reshape(1, -1)
    y = act.numpy_eval(x, act.initial_params(1))
    assert np.max(np.abs(y - np.maximum(x, 0))) < 0.05


def test_prelu_gain_and_values():
    act = tn_act.PReLU(slope=0.5)
    assert math.isclose(tn_init.gain_squared(act), 2 / 1.25)
    y = act.numpy_eval(np.array([[-2.0, 3.0]]), act.initial_params(1))
    np.testing.assert_allclose(y, [[-1.0, 3.0]])


def test_siren_init_rule_and_calibration():
    net = TTN(num_modes=8, bond_dim=4, activation="siren", seed=0)
    acts = tn_init.level_activations(net)
    hidden = [c for c in net.cores if c.kind == "hidden"]
    assert hidden
    rng = np.random.default_rng(0)
    spec = hidden[0]
    core = tn_init.draw_core(rng, spec, 1, tn_init.level_gains(net), acts)
    bound = math.sqrt(6 / spec.fan_in) / 30.0
    assert np.abs(core).max() <= bound
    assert np.abs(core).max() > 0.5 * bound  # uniform, not tiny normal
    # calibration puts the argument of the sine at RMS 1
    net.build()
    values = {c.name: np.asarray(net._vars[c.name]) for c in net.cores}
    xp = numpy_ops(2**8)
    seen = {}

    def hook(level, final, state):
        if level in acts:
            seen[level] = float(np.sqrt(np.mean(np.square(state))))
        return state

    net._run({k: xp.convert(v) for k, v in values.items()}, xp, hook)
    assert set(seen) == set(acts)
    for level, rms in seen.items():
        assert abs(30.0 * rms - 1.0) < 1e-3, (level, rms)


@pytest.mark.parametrize("name", ["rational", "prelu"])
def test_learnable_coefficients_are_network_weights(name):
    layer = TNDense(8, generator_activation=name, seed=0)
    layer.build((None, 16))
    net = layer.generator
    names = [v.name for v in net.weights if v.name.startswith("act")]
    sizes = tn_act.get(name).param_shapes
    levels = len(tn_init.level_activations(net))
    assert len(names) == levels * len(sizes)
    assert all(v.trainable for v in net.weights)
    assert layer.count_params() == net.num_params + 8
    # NumPy (init/calibration executor) and Keras evaluations agree
    got = ops.convert_to_numpy(net.generate(KerasOps()))
    want = net.generate(numpy_ops(2**net.num_modes))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["prelu", "rational"])
def test_coefficients_learn(name):
    model = keras.Sequential(
        [keras.Input((16,)), TNDense(8, generator_activation=name, seed=0)]
    )
    x = random_inputs((32, 16))
    y = random_inputs((32, 8), seed=1)
    check_every_variable_learns(model, x, y)


def test_coefficients_change_the_kernel():
    layer = TNDense(8, generator_activation="prelu", seed=0)
    layer.build((None, 16))
    before = ops.convert_to_numpy(layer.kernel)
    for v in layer.generator.weights:
        if v.name.startswith("act"):
            v.assign(ops.ones(v.shape))  # slope 1: linear generator
    after = ops.convert_to_numpy(layer.kernel)
    assert not np.allclose(before, after)


@pytest.mark.parametrize(
    "act",
    ["siren", "rational", "prelu", ["prelu", "siren"], tn_act.Siren(10.0)],
)
def test_config_round_trip(act):
    layer = TNDense(8, generator_activation=act, seed=0)
    check_config_round_trip(layer, random_inputs((2, 16)))


def test_prelu_keras_file_round_trip(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((16,)),
            TNDense(8, generator_activation="prelu", seed=0),
        ]
    )
    layer = model.layers[0]
    for v in layer.generator.weights:
        if v.name.startswith("act"):
            v.assign(ops.full(v.shape, 0.7))
    x = random_inputs((4, 16))
    path = check_keras_file_round_trip(model, x, tmp_path)
    loaded = keras.models.load_model(path)
    assert loaded.layers[0].get_config()["generator_activation"] == "prelu"
    slopes = [
        ops.convert_to_numpy(v)
        for v in loaded.layers[0].generator.weights
        if v.name.startswith("act")
    ]
    assert slopes and all(np.allclose(s, 0.7) for s in slopes)
    assert os.path.exists(path)


def test_non_default_instance_serializes_as_dict():
    config = TNDense(8, generator_activation=tn_act.Siren(5.0)).get_config()
    assert isinstance(config["generator_activation"], dict)
    clone = TNDense.from_config(config)
    clone.build((None, 16))
    assert tn_init.level_activations(clone.generator)[1].omega0 == 5.0


def test_get_and_serialize():
    assert tn_act.get("elu") is None
    assert tn_act.get("prelu") == tn_act.PReLU()
    assert tn_act.serialize(tn_act.Rational()) == "rational"
    with pytest.raises(ValueError):
        TNDense(8, generator_activation="no_such_activation")


def test_rational_denominator_cannot_reach_zero():
    fn = tn_act.Rational()
    x = np.linspace(-3, 3, 61, dtype="float32")[None, :]
    bad = {
        "numerator": np.ones((1, 4), "float32"),
        "denominator": np.asarray([[-1.0, 2.0, 0.0]], "float32"),
    }  # b2 x^2 + b1 x + b0 = x (2 - x): zero at x = 0 and x = 2
    got = ops.convert_to_numpy(fn.keras_call(ops.convert_to_tensor(x), bad))
    assert np.isfinite(got).all()
    assert np.abs(got).max() <= np.abs(x**3 + x**2 + x + 1).max() / 0.1
    np.testing.assert_allclose(got, fn.numpy_eval(x, bad), rtol=1e-5)


@pytest.mark.skipif(
    keras.backend.backend() == "torch", reason="jit_compile: TF and JAX"
)
@pytest.mark.parametrize("name", NAMES)
def test_jit_training_with_learnable_activations(name):
    model = keras.Sequential(
        [
            keras.Input((16,)),
            TNDense(8, generator_activation=name, seed=0),
        ]
    )
    model.compile(optimizer="adam", loss="mse", jit_compile=True)
    x = random_inputs((32, 16))
    y = random_inputs((32, 8), seed=1)
    before = [ops.convert_to_numpy(v) for v in model.trainable_variables]
    history = model.fit(x, y, epochs=3, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]
    changed = [
        not np.allclose(a, ops.convert_to_numpy(v))
        for a, v in zip(before, model.trainable_variables)
    ]
    assert all(changed)
