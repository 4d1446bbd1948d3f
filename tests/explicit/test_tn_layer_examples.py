"""The four examples of Jahromi & Orus' TNN paper, at reduced size.

Every model trains with `DMRGSweep` (strategy "pal"): frozen Dense adapter
(`input_adapter="dense"`), TNLayer(64 units, 6 sites), Dense head.

Each threshold fails when the TNLayer does not learn. Where a trained head
on frozen TNLayer features also meets it (the blobs are linearly
separable; a line is a linear read-out of ReLU features), the head is
frozen instead and the untrained model is the control. On the spiral and
the sine a frozen TNLayer with a trained head misses the threshold
(TensorFlow and JAX, seed 0).
"""

import keras
import numpy as np
from sklearn.datasets import make_blobs

from keras_adntn.callbacks import DMRGSweep
from keras_adntn.callbacks import EntanglementLogger
from keras_adntn.explicit.tn_layer import TNLayer


def spiral(n_per_class, rng, noise=0.2):
    xs, ys = [], []
    for c in range(3):
        r = np.linspace(0.0, 1.0, n_per_class)
        t = np.linspace(4 * c, 4 * (c + 1), n_per_class)
        t = t + rng.normal(0.0, noise, n_per_class)
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        ys.append(np.full(n_per_class, c))
    idx = rng.permutation(3 * n_per_class)
    return np.concatenate(xs)[idx].astype("float32"), np.concatenate(ys)[idx]


def tn_model(in_dim, head, activation="relu", bond_dim=4, layers=1):
    acts = [activation] if layers == 1 else [None] + ["sigmoid"] * (layers - 1)
    stack = [keras.Input((in_dim,))]
    for k, act in enumerate(acts):
        stack.append(
            TNLayer(
                64,
                6,
                bond_dim,
                activation=act,
                input_adapter="dense" if k == 0 else None,
                seed=k,
                name=f"tn_layer{k}",
            )
        )
    stack.append(head)
    return keras.Sequential(stack)


def _frozen(layer):
    layer.trainable = False
    return layer


def test_gaussian_blobs_are_learned_by_the_tn_layer():
    x, y = make_blobs(
        600,
        centers=[(-2.0, -2.0), (2.0, 2.0)],
        cluster_std=1.0,
        random_state=0,
    )
    x = ((x - x.min(0)) / (x.max(0) - x.min(0))).astype("float32")
    model = tn_model(2, _frozen(keras.layers.Dense(2, activation="softmax")))
    model.compile(
        keras.optimizers.SGD(0.5),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    _, untrained = model.evaluate(x[500:], y[500:], verbose=0)
    history = model.fit(
        x[:500],
        y[:500],
        batch_size=100,
        epochs=30,
        verbose=0,
        callbacks=[DMRGSweep(), EntanglementLogger()],
    )
    assert "tn_layer0/S_bond3" in history.history
    _, accuracy = model.evaluate(x[500:], y[500:], verbose=0)
    assert accuracy >= 0.97
    assert untrained <= 0.75, untrained


def test_spiral_is_learned_by_the_tn_layer():
    x, y = spiral(200, np.random.default_rng(0))
    model = tn_model(2, keras.layers.Dense(3, activation="softmax"))
    model.compile(
        keras.optimizers.Adam(0.02),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        x[:480],
        y[:480],
        batch_size=480,
        epochs=150,
        verbose=0,
        callbacks=[DMRGSweep()],
    )
    _, accuracy = model.evaluate(x[480:], y[480:], verbose=0)
    assert accuracy >= 0.90


def _line(model):
    ends = model.predict(np.array([[0.0], [1.0]], "float32"), verbose=0)
    return float(ends[1, 0] - ends[0, 0]), float(ends[0, 0])


def test_linear_regression_is_learned_by_the_tn_layer():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (400, 1)).astype("float32")
    noise = rng.uniform(-0.1, 0.1, (400, 1))
    y = (0.55 * x + 0.20 + noise).astype("float32")
    model = tn_model(1, _frozen(keras.layers.Dense(1)))
    model.compile(keras.optimizers.Adam(0.02), "mse")
    untrained = _line(model)
    model.fit(
        x, y, batch_size=400, epochs=120, verbose=0, callbacks=[DMRGSweep()]
    )
    slope, intercept = _line(model)
    assert abs(untrained[0] - 0.55) + abs(untrained[1] - 0.20) > 0.2
    assert abs(slope - 0.55) <= 0.05
    assert abs(intercept - 0.20) <= 0.05


def test_sine_regression_is_learned_by_the_tn_layer():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 2 * np.pi, (500, 1)).astype("float32")
    y = (np.sin(x) + rng.uniform(-0.1, 0.1, x.shape)).astype("float32")
    model = tn_model(1, keras.layers.Dense(1), layers=3)
    model.compile(keras.optimizers.Adam(0.03), "mse")
    model.fit(
        x[:400],
        y[:400],
        batch_size=400,
        epochs=150,
        verbose=0,
        callbacks=[DMRGSweep()],
    )
    mse = model.evaluate(x[400:], y[400:], verbose=0)
    assert mse < 0.02
