"""SoftIsometry, reconstruction losses and distillation (SPEC §6)."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_adntn import TNDense
from keras_adntn.distiller import Distiller
from keras_adntn.losses import DistillationLoss
from keras_adntn.losses import reconstruction_loss
from keras_adntn.losses import sample_indices
from keras_adntn.regularizers import SoftIsometry
from tests.layer_contract import check_keras_file_round_trip
from tests.layer_contract import random_inputs


def _np(x):
    return float(ops.convert_to_numpy(x))


def test_soft_isometry_value():
    c = np.random.default_rng(0).standard_normal((2, 3, 2, 2)).astype("f4")
    got = _np(SoftIsometry(0.5)(c))
    want = 0.0
    for g in range(2):
        m = c[g].reshape(3, 4)  # fan_out > fan_in: C C^T
        want += np.sum((m @ m.T - np.eye(3)) ** 2)
    np.testing.assert_allclose(got, 0.5 * want, rtol=1e-5)


def test_soft_isometry_zero_on_isometries_and_small_vars():
    q = np.linalg.qr(np.random.default_rng(1).standard_normal((6, 4)))[0]
    assert _np(SoftIsometry(1.0, grouped=False)(q.astype("f4"))) < 1e-10
    assert _np(SoftIsometry(1.0)(np.ones((2, 4), "f4"))) == 0.0
    with pytest.raises(ValueError):
        SoftIsometry(-1.0)


def test_soft_isometry_as_core_regularizer(tmp_path):
    reg = SoftIsometry(1e-2)
    model = keras.Sequential(
        [keras.Input((16,)), TNDense(8, core_regularizer=reg, seed=0)]
    )
    assert len(model.losses) == len(model.layers[0].generator.weights)
    assert _np(ops.sum(ops.stack(model.losses))) > 0
    config = model.layers[0].get_config()["core_regularizer"]
    assert SoftIsometry.from_config(config["config"]).weight == 1e-2
    check_keras_file_round_trip(model, random_inputs((4, 16)), tmp_path)
    back = keras.regularizers.get(keras.regularizers.serialize(reg))
    assert isinstance(back, SoftIsometry) and back.weight == 1e-2


@pytest.mark.parametrize("kind", ["frobenius", "sampled", "l1", "huber"])
def test_reconstruction_loss_values(kind):
    layer = TNDense(8, seed=0)
    layer.build((None, 16))
    target = random_inputs((16, 8)) * 0.1
    w = ops.convert_to_numpy(layer.kernel)
    d = (w - target).reshape(-1)
    got = _np(reconstruction_loss(layer, target, kind=kind, num_samples=20))
    if kind == "frobenius":
        want = np.mean(d**2)
    elif kind == "sampled":
        want = np.mean(d[sample_indices(d.size, 20)] ** 2)
    elif kind == "l1":
        want = np.mean(np.abs(d))
    else:
        a = np.abs(d)
        want = np.mean(np.where(a <= 1, 0.5 * d**2, a - 0.5))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_sampled_indices_are_fixed():
    a = sample_indices(1000, 50, seed=3)
    np.testing.assert_array_equal(a, sample_indices(1000, 50, seed=3))
    assert len(np.unique(a)) == 50
    assert len(sample_indices(10, 50)) == 10


def test_reconstruction_loss_errors():
    layer = TNDense(8, seed=0)
    layer.build((None, 16))
    with pytest.raises(ValueError, match="kind"):
        reconstruction_loss(layer, np.zeros((16, 8)), kind="l3")
    with pytest.raises(ValueError, match="shape"):
        reconstruction_loss(layer, np.zeros((8, 16)))


def test_reconstruction_fit_reduces_error():
    """The loss drives the cores through `model.fit` (add_loss-free)."""
    target = random_inputs((16, 8)) * 0.2

    class Fit(keras.Model):
        def __init__(self):
            super().__init__()
            self.tn = TNDense(
                8, seed=0, generator_activation="prelu", use_bias=False
            )

        def call(self, x):
            return self.tn(x)

        def compute_loss(
            self, x=None, y=None, y_pred=None, sample_weight=None, training=True
        ):
            return reconstruction_loss(self.tn, target)

    model = Fit()
    model(random_inputs((1, 16)))
    before = _np(reconstruction_loss(model.tn, target))
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    x = random_inputs((8, 16))
    model.fit(x, np.zeros((8, 8), "f4"), epochs=20, verbose=0)
    assert _np(reconstruction_loss(model.tn, target)) < 0.8 * before


def test_distillation_loss_value():
    s = np.array([[0.0, 1.0, 2.0]], "f4")
    t = np.array([[2.0, 1.0, 0.0]], "f4")
    loss = DistillationLoss(temperature=2.0, alpha=0.25)

    def softmax(z):
        e = np.exp(z - z.max())
        return e / e.sum()

    p, q = softmax(t[0] / 2), softmax(s[0] / 2)
    kl = np.sum(p * np.log(p / q)) * 4
    np.testing.assert_allclose(_np(loss(1.0, s, t)), 0.25 + 0.75 * kl, 1e-5)
    assert _np(loss.kl(t, t)) < 1e-7
    assert DistillationLoss(**loss.get_config()).alpha == 0.25
    with pytest.raises(ValueError):
        DistillationLoss(alpha=2.0)
    with pytest.raises(ValueError):
        DistillationLoss(temperature=0.0)


def test_distiller_fit_and_evaluate():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16)).astype("f4")
    teacher = keras.Sequential([keras.Input((16,)), keras.layers.Dense(4)])
    y = np.argmax(teacher.predict(x, verbose=0), axis=-1)
    student = keras.Sequential(
        [
            keras.Input((16,)),
            TNDense(4, core_regularizer=SoftIsometry(1e-4), seed=0),
        ]
    )
    teacher_before = [np.array(v) for v in teacher.weights]
    student_before = [np.array(v) for v in student.trainable_variables]
    distiller = Distiller(student, teacher, alpha=0.2, temperature=3.0)
    distiller.compile(
        optimizer=keras.optimizers.Adam(0.02),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    loss_fn = distiller.distillation_loss
    gap_before = float(
        loss_fn.kl(student.predict(x, verbose=0), teacher.predict(x, verbose=0))
    )
    acc_before = np.mean(np.argmax(student.predict(x, verbose=0), axis=-1) == y)
    history = distiller.fit(x, y, epochs=15, batch_size=32, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    for old, v in zip(teacher_before, teacher.weights):
        np.testing.assert_array_equal(old, np.array(v))
    for old, v in zip(student_before, student.trainable_variables):
        assert not np.allclose(old, np.array(v)), v.path
    gap_after = float(
        loss_fn.kl(student.predict(x, verbose=0), teacher.predict(x, verbose=0))
    )
    assert gap_after < gap_before
    loss, accuracy = distiller.evaluate(x, y, verbose=0)
    assert np.isfinite(loss)
    # the metric is the student's accuracy, recomputed here
    predicted = np.argmax(student.predict(x, verbose=0), axis=-1)
    assert accuracy == pytest.approx(np.mean(predicted == y), abs=1e-6)
    assert accuracy > acc_before, (acc_before, accuracy)
    np.testing.assert_allclose(
        distiller.predict(x, verbose=0), student.predict(x, verbose=0)
    )
