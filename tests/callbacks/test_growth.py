"""Growth of the bond dimension (SPEC §7): `grow`, `BondGrowth`."""

import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_adntn import TNConv2D
from keras_adntn import TNDense
from keras_adntn import TNMultiHeadAttention
from keras_adntn.callbacks.bond_growth import BondGrowth
from tests import layer_contract as contract

NETWORKS = ["ttn", "attn", "mera", "brickwall", "mpo"]


def _numpy(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


def _core_values(layer):
    network = layer.generator
    return {c.name: _numpy(network._vars[c.name]) for c in network.cores}


def _entries(layer, low, high, producers=False):
    """`{core: bool mask}` of the entries active at `high` but not `low`
    (`producers`: only those writing a new bond channel)."""
    out = {}
    for c in layer.generator.cores:
        inputs, outputs = c.thresholds()
        threshold = np.maximum(inputs, outputs)
        out[c.name] = (threshold > low) & (threshold <= high)
        if producers:
            out[c.name] &= outputs > low
    return out


@pytest.mark.parametrize("network", NETWORKS)
def test_capacity_starts_as_the_plain_layer(network):
    x = contract.random_inputs((4, 16))
    plain = TNDense(12, network=network, bond_dim=2, seed=0)
    grown = TNDense(12, network=network, bond_dim=2, max_bond_dim=4, seed=0)
    np.testing.assert_allclose(
        _numpy(grown(x)), _numpy(plain(x)), rtol=1e-5, atol=1e-6
    )
    assert grown.count_params() > plain.count_params()
    assert grown.active_params == plain.count_params()
    assert plain.active_params == plain.count_params()


@pytest.mark.parametrize(
    "network, activation",
    # mpo has no generator activation: one case
    [(n, a) for n in NETWORKS for a in ("elu", "sigmoid")][:-1],
)
def test_grow_keeps_the_function(network, activation):
    x = contract.random_inputs((4, 16))
    extra = {} if network == "mpo" else {"generator_activation": activation}
    layer = TNDense(
        12, network=network, bond_dim=1, max_bond_dim=4, seed=0, **extra
    )
    before = _numpy(layer(x))
    for bond_dim in (2, 4):
        layer.grow(bond_dim)
        # Exactly equal: the cores keep their allocated shapes and the new
        # entries only add exact zeros (measured 0.0 on every network and
        # backend); catches a grow that rescales, re-initialises or
        # perturbs an active entry by even one ulp.
        np.testing.assert_array_equal(_numpy(layer(x)), before)
    assert layer.bond_dim == 4
    assert layer.generator.bond_dim == 4
    assert layer.get_config()["bond_dim"] == 4
    assert layer.get_config()["max_bond_dim"] == 4
    full = TNDense(12, network=network, bond_dim=4, seed=0, **extra)
    full.build((None, 16))
    assert layer.active_params == full.count_params()
    fresh = _entries(layer, 1, 4)
    values = _core_values(layer)
    assert any(np.any(values[k][:, m] != 0) for k, m in fresh.items())


def test_grow_keeps_conv_and_attention_outputs():
    x = contract.random_inputs((2, 6, 6, 4))
    conv = TNConv2D(8, 3, network="mera", bond_dim=2, max_bond_dim=3, seed=0)
    before = _numpy(conv(x))
    conv.grow(3)
    np.testing.assert_array_equal(_numpy(conv(x)), before)
    q = contract.random_inputs((2, 5, 8))
    mha = TNMultiHeadAttention(
        2, 4, network="ttn", bond_dim=1, max_bond_dim=3, seed=0
    )
    before = _numpy(mha(q, q))
    mha.grow(3)
    np.testing.assert_array_equal(_numpy(mha(q, q)), before)
    assert mha.bond_dim == 3
    assert mha.active_params < mha.count_params()


@pytest.mark.parametrize("network", ["ttn", "mpo"])
def test_training_reaches_the_new_entries(network):
    layer = TNDense(12, network=network, bond_dim=2, max_bond_dim=4, seed=0)
    model = keras.Sequential([keras.Input((16,)), layer])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    x = contract.random_inputs((32, 16))
    y = contract.random_inputs((32, 12), seed=1)
    model.train_on_batch(x, y)
    layer.grow(3)
    start = _core_values(layer)
    for _ in range(3):
        model.train_on_batch(x, y)
    end = _core_values(layer)
    fresh, unused = _entries(layer, 2, 3), _entries(layer, 3, 4)
    moved = sum(
        int(np.sum((end[k] != start[k])[:, m])) for k, m in fresh.items()
    )
    assert moved > 0
    # producers of the new channels start at 0 (elu(0) = 0, linear mpo)
    # and are reached by the gradient through the random consumers
    for name, mask in _entries(layer, 2, 3, producers=True).items():
        assert np.all(start[name][:, mask] == 0)
    assert any(
        np.any(end[k][:, m] != 0)
        for k, m in _entries(layer, 2, 3, producers=True).items()
    )
    for name, mask in unused.items():
        assert np.all(end[name][:, mask] == 0)


def _growth_model(jit_compile):
    model = keras.Sequential(
        [
            keras.Input((16,)),
            TNDense(12, bond_dim=2, max_bond_dim=4, seed=0, activation="tanh"),
            TNDense(4, network="mpo", bond_dim=1, max_bond_dim=2, seed=1),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="mse",
        jit_compile=jit_compile,
    )
    return model


@pytest.mark.parametrize("jit_compile", ["auto", True])
def test_bond_growth_during_fit(jit_compile):
    if jit_compile is True and keras.backend.backend() == "torch":
        pytest.skip(contract.TORCH_COMPILE_SKIP)
    model = _growth_model(jit_compile)
    first, second = model.layers
    x = contract.random_inputs((32, 16))
    y = contract.random_inputs((32, 4), seed=1)
    callback = BondGrowth(patience=0, min_delta=1e9)
    moments = []  # Adam's (m, v) after every batch (2 batches an epoch)

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            optimizer = self.model.optimizer  # syncs the JAX state
            moments.append(
                (
                    [_numpy(m) for m in optimizer._momentums],
                    [_numpy(v) for v in optimizer._velocities],
                )
            )

    history = model.fit(
        x,
        y,
        batch_size=16,
        epochs=4,
        validation_data=(x, y),
        callbacks=[callback, Record()],
        verbose=0,
    )
    logs = history.history
    # epoch 0 sets the best value; every later epoch counts as a plateau
    assert logs["bond_dim"] == [2, 2, 3, 4]
    assert logs[f"{first.name}/bond_dim"] == [2, 2, 3, 4]
    assert logs[f"{second.name}/bond_dim"] == [1, 1, 2, 2]
    assert first.bond_dim == 4 and second.bond_dim == 2
    assert first.generator.bond_dim == 4
    assert callback.events == [
        (1, first.name, 2, 3),
        (1, second.name, 1, 2),
        (2, first.name, 3, 4),
    ]
    assert int(_numpy(model.optimizer.iterations)) == 8
    # the producers activated after epoch 1 (set to 0 by `grow`) learned
    # in epochs 2 and 3: the compiled step saw the new mask and values
    values = _core_values(first)
    fresh = _entries(first, 2, 3, producers=True)
    assert any(np.any(values[k][:, m] != 0) for k, m in fresh.items())
    # the optimizer kept its state across the growths (regression caught:
    # a growth that resets or rebuilds the optimizer). Adam's first step
    # after a growth (batch 3 after epoch 1's, batch 5 after epoch 2's)
    # starts from the moments of the step before it: with
    # g = (m' - b1 m) / (1 - b1), v' = b2 v + (1 - b2) g^2 holds for
    # every variable, which fails for moments restarted from zero
    b1, b2 = model.optimizer.beta_1, model.optimizer.beta_2
    assert len(moments) == 8
    for step in (2, 4):
        (m0, v0), (m1, v1) = moments[step - 1], moments[step]
        assert any(np.abs(m).sum() > 0 for m in m0)
        for a, b, c, d in zip(m0, v0, m1, v1):
            g = (c - b1 * a) / (1 - b1)
            np.testing.assert_allclose(
                d, b2 * b + (1 - b2) * g**2, rtol=1e-3, atol=1e-9
            )
        # what v' would be had the moments restarted from zero
        restarted = [(1 - b2) * (c / (1 - b1)) ** 2 for c in m1]
        assert not all(
            np.allclose(d, r, rtol=1e-3, atol=1e-9)
            for d, r in zip(v1, restarted)
        )
    np.testing.assert_allclose(
        _numpy(model.predict(x, verbose=0)),
        _numpy(model(x)),
        rtol=1e-4,
        atol=1e-5,
    )


def test_bond_growth_selection_cap_and_patience():
    model = _growth_model("auto")
    first, second = model.layers
    callback = BondGrowth(
        monitor="loss", patience=2, max_bond_dim=3, layers=[first.name]
    )
    callback.set_model(model)
    callback.on_train_begin()
    grown = []
    for epoch, loss in enumerate([1.0, 0.5, 0.6, 0.55, 0.7, 0.7, 0.7]):
        logs = {"loss": loss}
        callback.on_epoch_end(epoch, logs)
        grown.append(first.bond_dim)
        assert logs["bond_dim"] == logs[f"{first.name}/bond_dim"]
    # two epochs without improvement on 0.5 -> grow; again -> capped at 3
    assert grown == [2, 2, 2, 3, 3, 3, 3]
    assert second.bond_dim == 1
    with pytest.raises(ValueError, match="not a layer"):
        bad = BondGrowth(layers=["nope"])
        bad.set_model(model)
        bad.on_train_begin()


def _bonds(callback, layer, values, key="loss"):
    """Feeds `values` as the monitored quantity, one per epoch, and
    returns the layer's bond dimension after each epoch."""
    callback.on_train_begin()
    grown = []
    for epoch, value in enumerate(values):
        callback.on_epoch_end(epoch, {key: value})
        grown.append(layer.bond_dim)
    return grown


def test_bond_growth_step_mode_cooldown_and_min_delta():
    # planted: `step` ignored (grows by 1), `mode` ignored (an accuracy
    # read as a loss), `cooldown` ignored (grows again at once), or
    # `min_delta` ignored: each changes one of these sequences
    model = _growth_model("auto")
    first = model.layers[0]
    steps = BondGrowth(monitor="loss", patience=1, step=2, layers=[first])
    steps.set_model(model)
    assert _bonds(steps, first, [1.0, 1.1, 1.2]) == [2, 4, 4]  # capped at 4
    assert steps.events == [(1, first.name, 2, 4)]

    for mode, key in (("max", "loss"), ("auto", "val_accuracy")):
        model = _growth_model("auto")
        first = model.layers[0]
        rising = BondGrowth(monitor=key, patience=1, mode=mode)
        rising.set_model(model)
        # a rising quantity improves under max: no growth until it falls
        assert _bonds(rising, first, [0.1, 0.2, 0.3, 0.2], key) == [
            2,
            2,
            2,
            3,
        ]
    model = _growth_model("auto")
    first = model.layers[0]
    falling = BondGrowth(monitor="loss", patience=1, mode="min")
    falling.set_model(model)
    assert _bonds(falling, first, [0.3, 0.2, 0.1, 0.2]) == [2, 2, 2, 3]

    model = _growth_model("auto")
    first = model.layers[0]
    cool = BondGrowth(monitor="loss", patience=1, cooldown=2, layers=[first])
    cool.set_model(model)
    # grows at epoch 1, then cools down as Keras' ReduceLROnPlateau does
    # (the counter falls at each epoch's end: one epoch skipped); without
    # a cooldown it would grow at epoch 2 already
    assert _bonds(cool, first, [1.0] * 5) == [2, 3, 3, 4, 4]

    model = _growth_model("auto")
    first = model.layers[0]
    delta = BondGrowth(monitor="loss", patience=1, min_delta=0.1)
    delta.set_model(model)
    # 1.0 -> 0.95 is no improvement of more than 0.1: growth
    assert _bonds(delta, first, [1.0, 0.95, 0.5]) == [2, 3, 3]


def test_growth_does_not_reset_the_optimizer():
    model = _growth_model("auto")
    x = contract.random_inputs((32, 16))
    y = contract.random_inputs((32, 4), seed=1)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    before = [_numpy(v) for v in model.optimizer.variables]
    count = len(model.optimizer.variables)
    model.layers[0].grow(3)
    after = [_numpy(v) for v in model.optimizer.variables]
    assert len(model.optimizer.variables) == count
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert int(_numpy(model.optimizer.iterations)) == 4


def test_grown_model_reloads(tmp_path):
    model = _growth_model("auto")
    x = contract.random_inputs((8, 16))
    model.layers[0].grow(4)
    model.layers[1].grow(2)
    model.fit(x, _numpy(model(x)) + 0.1, epochs=1, verbose=0)
    path = os.path.join(tmp_path, "grown.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        _numpy(loaded(x)), _numpy(model(x)), rtol=1e-5, atol=1e-6
    )
    assert loaded.layers[0].bond_dim == 4
    assert loaded.layers[0].max_bond_dim == 4
    assert loaded.layers[1].bond_dim == 2
    # weights of the grown model set into an ungrown one: the active bond
    # comes with them, and growth goes on from there
    fresh = _growth_model("auto")
    fresh.set_weights(model.get_weights())
    np.testing.assert_allclose(
        _numpy(fresh(x)), _numpy(model(x)), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="bond_dim"):
        fresh.layers[0].grow(3)
    assert fresh.layers[0].bond_dim == 4


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_bond_dim"):
        TNDense(8, bond_dim=3, max_bond_dim=2)
    with pytest.raises(ValueError, match="max_bond_dim"):
        TNConv2D(8, 3, bond_dim=3, max_bond_dim=2.5)
    with pytest.raises(ValueError, match="max_bond_dim"):
        TNMultiHeadAttention(2, 4, bond_dim=2, max_bond_dim=1)
    layer = TNDense(8, bond_dim=2, max_bond_dim=3, seed=0)
    layer.build((None, 8))
    with pytest.raises(ValueError, match="max_bond_dim"):
        layer.grow(4)
    with pytest.raises(ValueError, match="bond_dim"):
        layer.grow(1)
    layer.grow(2)  # no-op
    assert layer.bond_dim == 2
    plain = TNDense(8, bond_dim=2, seed=0)
    plain.build((None, 8))
    with pytest.raises(ValueError, match="max_bond_dim"):
        plain.grow(3)
    with pytest.raises(ValueError, match="step"):
        BondGrowth(step=0)
    with pytest.raises(ValueError, match="mode"):
        BondGrowth(mode="up")
