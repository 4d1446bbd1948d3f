import csv
import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_adntn import TNDense
from keras_adntn.networks import initialization as tn_init
from tests import layer_contract as contract

NETWORKS = ["ttn", "attn", "mera", "brickwall", "mpo"]


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("shape", [(4, 16), (2, 3, 20), (2, 3, 2, 7)])
def test_output_shape_any_rank(network, shape):
    layer = TNDense(12, network=network, seed=0)
    y = layer(contract.random_inputs(shape))
    assert tuple(y.shape) == shape[:-1] + (12,)
    assert layer.compute_output_shape(shape) == shape[:-1] + (12,)
    contract.check_symbolic_call(TNDense(12, network=network), shape)


@pytest.mark.parametrize("network", NETWORKS)
def test_trainable_weights_are_cores_and_bias(network):
    layer = TNDense(64, network=network, bond_dim=2, seed=0)
    layer.build((None, 64))
    assert layer.count_params() == layer.generator.num_params + 64
    assert layer.dense_params == 64 * 64 + 64
    assert layer.compression_ratio == pytest.approx(
        layer.dense_params / layer.count_params()
    )
    assert tuple(layer.kernel.shape) == (64, 64)
    assert len(layer.trainable_weights) == len(layer.generator.cores) + 1


@pytest.mark.parametrize("network", NETWORKS)
def test_every_variable_gets_a_gradient(network):
    model = keras.Sequential(
        [
            keras.Input((24,)),
            TNDense(18, network=network, generator_groups=2, seed=0),
        ]
    )
    x = contract.random_inputs((16, 24))
    y = contract.random_inputs((16, 18), seed=1)
    contract.check_every_variable_learns(model, x, y)


def test_kernel_is_used_like_dense():
    layer = TNDense(7, activation="relu", seed=0)
    x = contract.random_inputs((5, 11))
    y = ops.convert_to_numpy(layer(x))
    kernel = ops.convert_to_numpy(layer.kernel)
    bias = ops.convert_to_numpy(layer.bias)
    np.testing.assert_allclose(
        y, np.maximum(x @ kernel + bias, 0), rtol=1e-5, atol=1e-5
    )


def test_groups_generate_column_blocks_independently():
    layer = TNDense(8, generator_groups=4, seed=0)
    layer.build((None, 6))
    assert layer.generator.groups == 4
    kernel = ops.convert_to_numpy(layer.kernel)
    first = [np.array(v) for v in layer.generator.weights]
    for v in layer.generator.weights:
        value = np.array(v)
        value[1:] = 0.0
        v.assign(value)
    changed = ops.convert_to_numpy(layer.kernel)
    np.testing.assert_allclose(changed[:, :2], kernel[:, :2], atol=1e-6)
    assert np.abs(changed[:, 2:]).max() == 0.0
    assert len(first) == len(layer.generator.cores)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("bond_dim", [1, 3, 8])
def test_initial_kernel_std_is_glorot_scale(network, bond_dim):
    layer = TNDense(
        96,
        network=network,
        bond_dim=bond_dim,
        generator_groups=2,
        seed=bond_dim,
    )
    layer.build((None, 200))
    kernel = ops.convert_to_numpy(layer.kernel)
    ratio = kernel.std() / tn_init.glorot_std(200, 96)
    assert np.isfinite(kernel).all()
    # per group exactly; the whole kernel within 2e-4 (groups' means differ)
    assert abs(ratio - 1) <= 0.01, ratio


def test_same_seed_same_initial_weights():
    a, b = TNDense(9, seed=7), TNDense(9, seed=7)
    a.build((None, 13))
    b.build((None, 13))
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("network", NETWORKS)
def test_config_round_trip(network):
    layer = TNDense(
        10,
        network=network,
        bond_dim=3,
        activation="tanh",
        generator_groups=2,
        mode_order="flat",
        seed=1,
        generator_activation="gelu",
        core_regularizer="l2",
    )
    contract.check_config_round_trip(layer, contract.random_inputs((3, 17)))


@pytest.mark.parametrize("network", NETWORKS)
def test_keras_file_round_trip(network, tmp_path):
    model = keras.Sequential(
        [
            keras.Input((20,)),
            TNDense(16, network=network, activation="relu", seed=0),
            TNDense(3, network=network, generator_groups=3, seed=1),
        ]
    )
    x = contract.random_inputs((4, 20))
    contract.check_every_variable_learns(model, x, np.zeros((4, 3)))
    contract.check_keras_file_round_trip(model, x, tmp_path)


def test_keras_file_of_4096_layer_is_small(tmp_path):
    model = keras.Sequential([keras.Input((4096,)), TNDense(4096, seed=0)])
    x = contract.random_inputs((2, 4096))
    path = contract.check_keras_file_round_trip(model, x, tmp_path)
    assert os.path.getsize(path) < 100_000


def test_functional_model_and_mask_propagation():
    inputs = keras.Input((None,), dtype="int32")
    h = keras.layers.Embedding(20, 8, mask_zero=True)(inputs)
    h = TNDense(8, seed=0)(h)
    out = keras.layers.GlobalAveragePooling1D()(h)
    model = keras.Model(inputs, out)
    x = np.array([[1, 2, 0, 0], [3, 0, 0, 0]])
    masked = model.predict(x, verbose=0)
    trimmed = model.predict(x[:1, :2], verbose=0)
    np.testing.assert_allclose(masked[0], trimmed[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("network", NETWORKS)
def test_jit_compile_fit(network):
    model = keras.Sequential(
        [keras.Input((12,)), TNDense(8, network=network, seed=0)]
    )
    x = contract.random_inputs((32, 12))
    # torch.compile: one case per layer type, the default network; the
    # other networks, the factorized path, growth and the cache skip there
    compiled = network == "ttn"
    contract.check_jit_fit(model, x, x[:, :8], torch_compile=compiled)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("network", ["ttn", "mera", "mpo"])
def test_mixed_precision(policy, network):
    contract.check_mixed_precision(
        lambda: TNDense(16, network=network, seed=0),
        contract.random_inputs((4, 32)),
        policy,
    )


def test_fit_evaluate_predict_with_callbacks(tmp_path):
    model = keras.Sequential(
        [keras.Input((10,)), TNDense(16, activation="relu"), TNDense(1)]
    )
    model.compile(optimizer="adam", loss="mse")
    x = contract.random_inputs((64, 10))
    y = x.sum(axis=1, keepdims=True)
    log = os.path.join(tmp_path, "log.csv")
    ckpt = os.path.join(tmp_path, "best.keras")
    history = model.fit(
        x,
        y,
        validation_split=0.25,
        epochs=3,
        verbose=0,
        callbacks=[
            keras.callbacks.EarlyStopping(patience=1),
            keras.callbacks.ModelCheckpoint(ckpt, save_best_only=True),
            keras.callbacks.CSVLogger(log),
        ],
    )
    # regressions caught: callbacks not given the epoch logs, a
    # checkpoint that does not restore the generated weights, a model
    # that does not learn under fit
    logs = history.history
    epochs = len(logs["loss"])
    assert epochs >= 2 and logs["loss"][-1] < logs["loss"][0]
    with open(log) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == epochs
    np.testing.assert_allclose(
        [float(r["val_loss"]) for r in rows], logs["val_loss"], rtol=1e-5
    )
    # the checkpoint is the best epoch's model: its validation loss is the
    # smallest logged (validation_split takes the last 25 %)
    reloaded = keras.models.load_model(ckpt)
    val = reloaded.evaluate(x[48:], y[48:], verbose=0)
    np.testing.assert_allclose(val, min(logs["val_loss"]), rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"units": 0}, "units"),
        ({"units": 2.5}, "units"),
        ({"units": 4, "bond_dim": 0}, "bond_dim"),
        ({"units": 4, "radix": 1}, "radix"),
        ({"units": 4, "network": "peps"}, "network"),
        ({"units": 4, "mode_order": "zigzag"}, "mode_order"),
        ({"units": 6, "generator_groups": 4}, "generator_groups"),
        ({"units": 6, "generator_groups": 0}, "generator_groups"),
        ({"units": 4, "latent_order": 0}, "latent_order"),
        ({"units": 4, "network": "mpo", "latent_order": 2}, "latent_order"),
        ({"units": 4, "depth": 0}, "depth"),
        ({"units": 4, "generator_activation": "nope"}, "nope"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TNDense(**kwargs)


def test_impossible_latent_order_raises_at_build():
    layer = TNDense(4, latent_order=50)
    with pytest.raises(ValueError, match="latent_order"):
        layer.build((None, 4))


def test_unknown_last_dimension_raises_at_build():
    with pytest.raises(ValueError, match="last dimension"):
        TNDense(4).build((None, None))
