import csv
import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_adntn.callbacks import DMRGSweep
from keras_adntn.callbacks import EntanglementLogger
from keras_adntn.explicit.entanglement import bond_spectra
from keras_adntn.explicit.entanglement import entropy
from keras_adntn.explicit.entanglement import plot_entanglement
from keras_adntn.explicit.tn_layer import TNLayer
from keras_adntn.explicit.tn_layer import factorize
from keras_adntn.explicit.tn_layer import next_factorable
from tests import layer_contract as contract


def to_np(x):
    return ops.convert_to_numpy(x)


def small_model(adapter="dense", num_sites=3, bond_dim=3, in_dim=2):
    return keras.Sequential(
        [
            keras.Input((in_dim,)),
            TNLayer(
                8,
                num_sites,
                bond_dim,
                activation="relu",
                input_adapter=adapter,
                seed=0,
                name="tn_layer",
            ),
            keras.layers.Dense(1),
        ]
    )


def test_factorization_rules():
    assert factorize(64, 6) == (2,) * 6
    assert factorize(12, 2) == (4, 3)
    assert factorize(7, 2) is None
    assert factorize(1, 3) == (1, 1, 1)
    assert next_factorable(2, 6) == 64
    assert next_factorable(7, 2) == 8


@pytest.mark.parametrize("mode", ["sites", "kernel"])
@pytest.mark.parametrize("shape", [(4, 64), (2, 3, 64)])
def test_contraction_modes_match_kernel(mode, shape):
    layer = TNLayer(64, 6, 4, contraction=mode, seed=1)
    x = contract.random_inputs(shape)
    y = to_np(layer(x))
    assert layer.contraction_mode == mode
    assert y.shape == shape[:-1] + (64,)
    # the other mode, same cores: two independent computations agree
    other = "kernel" if mode == "sites" else "sites"
    twin = TNLayer(64, 6, 4, contraction=other, seed=1)
    np.testing.assert_allclose(y, to_np(twin(x)), atol=1e-5)
    expected = x @ to_np(layer.kernel) + to_np(layer.bias)
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_auto_contraction_rule():
    small = TNLayer(64, 6, 4)
    small.build((None, 64))
    assert small.contraction_mode == "kernel"
    big = TNLayer(4096, 6, 2)
    big.build((None, 4096))
    assert big.contraction_mode == "sites"
    assert big.count_params() < 4096 * 4096 / 100


def test_shapes_bonds_and_adapters():
    layer = TNLayer(10, 3, 3, input_adapter="pad", seed=0)
    y = layer(np.ones((2, 7), "float32"))
    assert tuple(y.shape) == (2, 10)
    assert layer.input_sites == (2, 2, 2)
    assert layer.output_sites == (3, 2, 2)
    assert layer.bond_dims == (3, 3)
    dense = TNLayer(64, 6, 4, input_adapter="dense", seed=0)
    dense(np.ones((2, 2), "float32"))
    assert dense.input_sites == (2,) * 6
    assert not any(w is dense.adapter_kernel for w in dense.trainable_weights)
    assert len(dense.trainable_weights) == 7
    contract.check_symbolic_call(TNLayer(6, 2, 2), (3, 9))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"units": 0, "num_sites": 2, "bond_dim": 2}, "units"),
        ({"units": 4, "num_sites": 0, "bond_dim": 2}, "num_sites"),
        ({"units": 4, "num_sites": 2, "bond_dim": 0}, "bond_dim"),
        (
            {"units": 4, "num_sites": 2, "bond_dim": 2, "input_adapter": "x"},
            "input_adapter",
        ),
        (
            {"units": 4, "num_sites": 2, "bond_dim": 2, "contraction": "x"},
            "contraction",
        ),
        ({"units": 7, "num_sites": 2, "bond_dim": 2}, "units"),
    ],
)
def test_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TNLayer(**kwargs)


def test_unfactorable_input_without_adapter():
    with pytest.raises(ValueError, match="input_adapter"):
        TNLayer(4, 2, 2)(np.ones((1, 7), "float32"))


def test_callback_value_errors():
    for kwargs in (
        {"max_bond": 0},
        {"cutoff": -1.0},
        {"strategy": "x"},
        {"update_freq": "x"},
        {"sweeps_per_layer": 0},
    ):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            DMRGSweep(**kwargs)


@pytest.mark.parametrize("adapter", [None, "pad", "dense"])
def test_config_and_keras_file_round_trip(adapter, tmp_path):
    in_dim = 8 if adapter is None else 7
    x = contract.random_inputs((4, in_dim))
    layer = TNLayer(6, 2, 3, activation="relu", input_adapter=adapter, seed=3)
    contract.check_config_round_trip(layer, x)
    model = keras.Sequential([keras.Input((in_dim,)), layer])
    contract.check_keras_file_round_trip(model, x, tmp_path)


def test_jit_fit():
    x = contract.random_inputs((16, 2))
    y = contract.random_inputs((16, 1))
    contract.check_jit_fit(small_model(), x, y)


def test_mixed_precision():
    """Separate from the jit test, whose torch skip used to skip this
    too: a TNLayer computing in float32 (or losing its float32 variables)
    under mixed_float16 fails here on every backend."""
    x = contract.random_inputs((16, 2))
    contract.check_mixed_precision(
        lambda: TNLayer(8, 3, 2, input_adapter="dense"), x, "mixed_float16"
    )


def test_plain_gradient_training_updates_every_core():
    x = contract.random_inputs((16, 2))
    y = contract.random_inputs((16, 1))
    contract.check_every_variable_learns(small_model(), x, y)


def test_dmrg_without_learning_keeps_the_weight():
    model = small_model(num_sites=4, bond_dim=16)
    x = contract.random_inputs((8, 2))
    model(x)
    layer = model.get_layer("tn_layer")
    before = to_np(layer.kernel)
    model.compile(keras.optimizers.SGD(0.0), "mse")
    cb = DMRGSweep()
    model.fit(x, x[:, :1], batch_size=4, epochs=4, verbose=0, callbacks=[cb])
    assert cb.steps == 8
    np.testing.assert_allclose(to_np(layer.kernel), before, atol=1e-5)


def test_dmrg_truncation_keeps_shapes_and_cuts_the_bond():
    model = small_model(num_sites=3, bond_dim=4)
    x = contract.random_inputs((8, 2))
    model.compile(keras.optimizers.SGD(0.01), "mse")
    layer = model.layers[0]
    model(x)
    shapes = [tuple(c.shape) for c in layer.cores]
    cb = DMRGSweep(max_bond=1, update_freq="batch")
    model.fit(x, x[:, :1], batch_size=8, epochs=4, verbose=0, callbacks=[cb])
    assert [tuple(c.shape) for c in layer.cores] == shapes
    for s in bond_spectra(layer):
        assert np.sum(s > 1e-6) == 1
    assert all(len(s) == 1 for s in cb.singular_values.values())


def _two_tn_layers():
    """A built model of two 3-site TNLayers, and an input batch."""
    model = keras.Sequential(
        [
            keras.Input((8,)),
            TNLayer(8, 3, 2, seed=0, name="first"),
            TNLayer(8, 3, 2, seed=1, name="second"),
        ]
    )
    x = contract.random_inputs((8, 8))
    model(x)
    return model, x


def test_dmrg_lbl_moves_one_layer_at_a_time():
    """Regression caught: "lbl" updating every layer at once (as "pal"),
    never updating, or never moving on to the next layer."""
    model, x = _two_tn_layers()
    first, second = model.layers

    def state():
        return (
            [to_np(c) for c in first.cores],
            [to_np(c) for c in second.cores],
            to_np(first.kernel),
            to_np(second.kernel),
        )

    snapshots = [state()]

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model  # noqa: B018 -- syncs the JAX state
            snapshots.append(state())

    model.compile(keras.optimizers.SGD(0.1), "mse")
    cb = DMRGSweep(strategy="lbl")
    # 3 sites: one sweep is 4 pair steps (0, 1, 1, 0), one per batch;
    # steps 1-4 belong to the first layer, steps 5-8 to the second
    model.fit(x, x, batch_size=8, epochs=8, verbose=0, callbacks=[cb, Record()])
    assert cb.steps == 8 and len(snapshots) == 9
    for step in range(1, 9):
        before, after = snapshots[step - 1], snapshots[step]
        active, held = (0, 1) if step <= 4 else (1, 0)
        # the active layer's weight moved, the other's cores did not
        assert not np.allclose(
            after[2 + active], before[2 + active], atol=1e-5
        ), step
        for old, new in zip(before[held], after[held]):
            np.testing.assert_allclose(new, old, atol=1e-7)


def test_dmrg_epoch_frequency_cutoff_and_sweeps_per_layer():
    """Regressions caught: `update_freq="epoch"` stepping per batch, a
    `cutoff` that cuts nothing, `sweeps_per_layer` ignored by "lbl"."""
    x = contract.random_inputs((16, 2))
    model = small_model(num_sites=3, bond_dim=4)
    model.compile(keras.optimizers.SGD(0.05), "mse")
    cb = DMRGSweep(update_freq="epoch", cutoff=0.5)
    model.fit(x, x[:, :1], batch_size=4, epochs=3, verbose=0, callbacks=[cb])
    assert cb.steps == 3  # one pair step an epoch, not one a batch
    spectra = list(cb.singular_values.values())
    assert spectra and all(s[-1] > 0.5 * s[0] for s in spectra)
    assert any(len(s) < 4 for s in spectra)  # the cutoff truncated

    def second_moves(sweeps):
        model, x = _two_tn_layers()
        before = to_np(model.layers[1].kernel)
        model.compile(keras.optimizers.SGD(0.1), "mse")
        cb = DMRGSweep(strategy="lbl", sweeps_per_layer=sweeps)
        # 3 sites: a sweep is 4 pair steps; 8 steps are two sweeps
        model.fit(x, x, batch_size=8, epochs=8, verbose=0, callbacks=[cb])
        after = to_np(model.layers[1].kernel)
        return not np.allclose(after, before, atol=1e-6)

    assert second_moves(1)  # one sweep each: the second layer's turn came
    assert not second_moves(2)  # two sweeps of the first layer first


def _independent_spectra(layer):
    """Schmidt values of every bond from an SVD of the full weight viewed
    as a state on sites `(i_k, j_k)` (no QR, no sweep)."""
    w = np.asarray(to_np(layer.kernel), "float64")
    n = layer.num_sites
    t = w.reshape(tuple(layer.input_sites) + tuple(layer.output_sites))
    t = t.transpose([p for k in range(n) for p in (k, n + k)])
    spectra = []
    for k in range(1, n):
        s = np.linalg.svd(
            t.reshape(int(np.prod(t.shape[: 2 * k])), -1), compute_uv=False
        )
        spectra.append(s / np.linalg.norm(s))
    return spectra


def test_entropy_logs_history_csv_and_plot(tmp_path):
    x = contract.random_inputs((16, 2))
    model = small_model()
    model.compile(keras.optimizers.SGD(0.05), "mse")
    path = os.path.join(tmp_path, "log.csv")
    history = model.fit(
        x,
        x[:, :1],
        epochs=2,
        verbose=0,
        callbacks=[
            DMRGSweep(),
            EntanglementLogger(),
            keras.callbacks.CSVLogger(path),
        ],
    )
    # regression caught: wrong Schmidt values (a missed orthogonalisation,
    # a wrong site order) or a logger reading stale cores. The logged
    # entropies are checked against an SVD of the trained full weight,
    # independent of bond_spectra's QR/SVD sweep, and the two epochs
    # differ (the logger reads the cores of each epoch)
    layer = model.get_layer("tn_layer")
    reference = _independent_spectra(layer)
    for got, want in zip(bond_spectra(layer), reference):
        np.testing.assert_allclose(got, want[: len(got)], atol=1e-6)
        np.testing.assert_allclose(want[len(got) :], 0.0, atol=1e-6)
    for k in (1, 2):
        values = history.history[f"tn_layer/S_bond{k}"]
        assert len(values) == 2
        p = reference[k - 1] ** 2
        p = p[p > 1e-30]
        assert values[-1] == pytest.approx(-np.sum(p * np.log(p)), abs=1e-5)
        assert values[-1] > 1e-3  # not a product state
    assert any(
        history.history[f"tn_layer/S_bond{k}"][0]
        != history.history[f"tn_layer/S_bond{k}"][1]
        for k in (1, 2)
    )
    with open(path) as f:
        assert "tn_layer/S_bond1" in next(csv.reader(f))
    png = plot_entanglement(history, os.path.join(tmp_path, "s.png"))
    assert os.path.getsize(png) > 1000


def test_entropy_formula():
    assert entropy([1.0, 0.0]) == pytest.approx(0.0)
    assert entropy([1.0, 1.0]) == pytest.approx(np.log(2))
    assert entropy([3.0, 3.0, 3.0]) == pytest.approx(np.log(3))
