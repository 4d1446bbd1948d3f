import keras
import numpy as np
import pytest
from keras import ops

from keras_adntn import TNDense

NETWORKS = ["ttn", "attn", "mera", "brickwall", "mpo"]


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 32)).astype("float32")
    y = (x[:, :4].sum(axis=1) > 0).astype("int32")
    return x, y


def _model(network):
    return keras.Sequential(
        [
            keras.Input((32,)),
            TNDense(64, network=network, activation="relu"),
            TNDense(2, network=network),
        ]
    )


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
@pytest.mark.parametrize("network", NETWORKS)
def test_three_epochs_with_defaults_stay_finite(network, policy):
    keras.config.set_dtype_policy(policy)
    x, y = _data()
    model = _model(network)
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    for v in model.weights:
        assert np.isfinite(ops.convert_to_numpy(v)).all(), v.path


def test_non_finite_input_gives_non_finite_output_not_a_crash():
    layer = TNDense(4, seed=0)
    x = np.ones((2, 6), "float32")
    x[0, 0] = np.nan
    y = ops.convert_to_numpy(layer(x))
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()


def test_terminate_on_nan_stops_training():
    x, y = _data()
    x[5, 0] = np.inf
    model = _model("ttn")
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(
        x,
        y,
        epochs=5,
        batch_size=128,
        verbose=0,
        callbacks=[keras.callbacks.TerminateOnNaN()],
    )
    assert len(history.history["loss"]) == 1
