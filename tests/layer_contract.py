"""Checks every TN layer must pass: the contract of a drop-in Keras layer."""

import os

import keras
import numpy as np
from keras import ops


def random_inputs(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("f4")


def check_config_round_trip(layer, x):
    y = layer(x)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(
        ops.convert_to_numpy(clone(x)), ops.convert_to_numpy(y), atol=1e-6
    )
    assert clone.get_config() == config


def check_keras_file_round_trip(model, x, tmp_path):
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )
    return path


def check_every_variable_learns(model, x, y, loss="mse"):
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    before = [np.array(v) for v in model.trainable_variables]
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    for old, var in zip(before, model.trainable_variables):
        assert not np.allclose(old, np.array(var)), var.path


def check_symbolic_call(layer, input_shape):
    inputs = keras.Input(input_shape[1:])
    out = layer(inputs)
    expected = layer.compute_output_shape((None, *input_shape[1:]))
    assert tuple(out.shape) == tuple(expected)


def check_jit_fit(model, x, y):
    if keras.backend.backend() == "torch":
        return
    model.compile(optimizer="adam", loss="mse", jit_compile=True)
    history = model.fit(x, y, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert np.isfinite(model.predict(x, verbose=0)).all()


def check_mixed_precision(make_layer, x, policy):
    keras.config.set_dtype_policy(policy)
    try:
        layer = make_layer()
        y = layer(x)
        dtype = keras.backend.standardize_dtype(y.dtype)
        assert dtype == policy.split("_")[1]
        assert all(v.dtype == "float32" for v in layer.weights)
        assert np.isfinite(ops.convert_to_numpy(ops.cast(y, "float32"))).all()
    finally:
        keras.config.set_dtype_policy("float32")
