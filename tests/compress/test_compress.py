"""`keras_adntn.compress`: compressing a trained model, and its CLI."""

import importlib
import json
import os

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from keras_adntn import TNConv2D
from keras_adntn import TNDense
from keras_adntn import TNMultiHeadAttention
from keras_adntn import networks
from keras_adntn.cli import main
from keras_adntn.compress import CompressionReport
from keras_adntn.compress import compress
from keras_adntn.compress import tt_svd_cores
from keras_adntn.tensorize import Tensorization


def _digits():
    data = load_digits()
    return train_test_split(
        (data.data / 16.0).astype("float32"),
        data.target,
        test_size=0.25,
        random_state=0,
        stratify=data.target,
    )


def _mlp(hidden=256):
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(hidden, activation="relu", name="h1"),
            keras.layers.Dense(hidden, activation="relu", name="h2"),
            keras.layers.Dense(10, name="logits"),
        ]
    )


def _train(model, x, y, epochs):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


def _accuracy(model, x, y):
    pred = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(pred, -1) == y))


def _kernel_error(kernel, teacher_kernel):
    kernel = keras.ops.convert_to_numpy(kernel)
    teacher_kernel = keras.ops.convert_to_numpy(teacher_kernel)
    return float(
        np.linalg.norm(kernel - teacher_kernel) / np.linalg.norm(teacher_kernel)
    )


def _activation_error(student, teacher, x, name):
    """Relative error of layer `name`'s output, student against teacher."""
    got, want = (
        keras.Model(m.inputs, m.get_layer(name).output).predict(x, verbose=0)
        for m in (student, teacher)
    )
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def _same_weights(before, model):
    after = model.get_weights()
    return len(before) == len(after) and all(
        np.array_equal(a, b) for a, b in zip(before, after)
    )


def test_digits_round_trip(tmp_path):
    """The paper's pipeline on a trained digits MLP: the 256x256 layer
    becomes a ttn TNDense >= 50x smaller, at most 2 points less accurate
    on the held-out split after distillation; the input model is
    unchanged and the result saves and loads."""
    keras.utils.set_random_seed(0)
    x_tr, x_te, y_tr, y_te = _digits()
    teacher = _train(_mlp(), x_tr, y_tr, epochs=15)
    before = teacher.get_weights()
    teacher_acc = _accuracy(teacher, x_te, y_te)
    student, report = compress(
        teacher,
        (x_tr, y_tr),
        network="ttn",
        bond_dim=2,
        validation_data=(x_te, y_te),
        epochs=10,
        verbose=0,
    )
    assert _same_weights(before, teacher)
    assert [type(layer) for layer in teacher.layers] == [keras.layers.Dense] * 3
    assert isinstance(student.get_layer("h2"), TNDense)
    assert type(student.get_layer("h1")) is keras.layers.Dense
    # the replaced layer
    (row,) = report.layers
    assert row["name"] == "h2" and row["type"] == "Dense"
    assert row["new_type"] == "TNDense" and row["bond_dim"] == 2
    assert row["params_before"] == 256 * 256 + 256
    assert row["params_after"] == student.get_layer("h2").count_params()
    assert row["ratio"] >= 50
    assert report.replaced_params_before / report.replaced_params_after >= 50
    # the reported errors, measured here on their own: the kernels' error
    # and the layer's output error on the validation inputs (fine-tuning
    # for the task moves the kernel away from the teacher's)
    h2, t2 = student.get_layer("h2"), teacher.get_layer("h2")
    assert row["weight_error_final"] == pytest.approx(
        _kernel_error(h2.kernel, t2.kernel), rel=1e-4
    )
    want, got = (
        keras.Model(m.inputs, m.get_layer("h2").output).predict(x_te, verbose=0)
        for m in (teacher, student)
    )
    spread = np.linalg.norm(want - want.mean(0))
    assert row["error_final"] == pytest.approx(
        np.linalg.norm(got - want) / spread, rel=1e-3
    )
    assert np.isfinite(row["error_init"]) and row["error_init"] > 0.05
    assert row["error_final"] != pytest.approx(row["error_init"], rel=1e-3)
    # accuracy, measured independently of the report
    student_acc = _accuracy(student, x_te, y_te)
    assert report.metric == "accuracy"
    assert report.scores["teacher"] == pytest.approx(teacher_acc)
    assert report.scores["student_final"] == pytest.approx(student_acc)
    assert teacher_acc - student_acc <= 0.02, (teacher_acc, student_acc)
    # copied layers start from the teacher's weights (h1 is fine-tuned,
    # the bias of h2 too: compare shapes, and the counts in the report)
    assert report.params_before == teacher.count_params()
    assert report.params_after == student.count_params()
    d = report.to_dict()
    assert d["layers"][0]["name"] == "h2" and d["evaluated_on"] == (
        "validation_data"
    )
    assert set(d["scores"]) == {"teacher", "student_init", "student_final"}
    table = report.table()
    assert "h2" in table and "TNDense" in table and "accuracy" in table
    assert str(report) == table and "CompressionReport" in repr(report)
    # .keras round trip of the compressed model
    path = os.path.join(tmp_path, "small.keras")
    student.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(x_te[:32], verbose=0),
        student.predict(x_te[:32], verbose=0),
        rtol=1e-5,
        atol=1e-5,
    )
    print(
        f"\n[compress] {keras.backend.backend()}: h2 {row['params_before']}"
        f" -> {row['params_after']} ({row['ratio']:.1f}x), accuracy "
        f"teacher {teacher_acc:.4f} student {student_acc:.4f}"
    )


def test_tt_svd_exact_at_full_bond_and_error_falls_with_bond():
    rng = np.random.default_rng(0)
    # a padded shape: 5 -> 8 rows, 12 -> 16 columns, 7 modes
    t = Tensorization((5, 12))
    weight = rng.normal(size=(1, 5, 12))
    errors = []
    for chi in (1, 2, 4, 8):
        net = networks.MPO(num_modes=t.num_modes, bond_dim=chi)
        net.build()
        for name, value in tt_svd_cores(net, t.fold(weight)).items():
            net._vars[name].assign(value)
        got = keras.ops.convert_to_numpy(t.unfold(net.generate(), _ops()))
        errors.append(np.linalg.norm(got - weight) / np.linalg.norm(weight))
    assert all(a >= b - 1e-7 for a, b in zip(errors, errors[1:]))
    assert errors[0] > 0.1 and errors[-1] < 1e-5


def _ops():
    from keras_adntn.networks.executors import KerasOps

    return KerasOps()


def test_mpo_init_exact_in_a_model():
    rng = np.random.default_rng(0)
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(24, activation="relu", name="big"),
            keras.layers.Dense(3),
        ]
    )
    x = rng.normal(size=(32, 16)).astype("float32")
    y = rng.integers(0, 3, 32)
    errors = []
    for chi in (1, 2, 4, 8, 16):
        student, report = compress(
            model,
            (x, y),
            network="mpo",
            bond_dim=chi,
            layers=["big"],
            init="svd",
            epochs=0,
            verbose=0,
        )
        errors.append(report.layers[0]["error_init"])
        assert report.layers[0]["init"] == "svd"
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-5  # 16 x 24 -> 4 + 5 modes: bond 16 is full
    # the data-aware default keeps the exact start at full bond (this
    # student, not the svd one of the loop: a data-aware init that drifts
    # from the exact start fails the output comparison below)
    student, report = compress(
        model,
        (x, y),
        network="mpo",
        bond_dim=16,
        layers=["big"],
        reconstruction_steps=50,
        epochs=0,
        verbose=0,
    )
    assert report.layers[0]["init"].startswith("activations")
    assert report.layers[0]["error_init"] < 1e-4
    np.testing.assert_allclose(
        student.predict(x, verbose=0),
        model.predict(x, verbose=0),
        rtol=1e-4,
        atol=1e-5,
    )


def _conv_model():
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, strides=2, name="conv"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4),
        ]
    )


def test_conv_model_gets_its_conv_replaced():
    rng = np.random.default_rng(0)
    model = _conv_model()
    x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 4, 32)
    before = model.get_weights()
    student, report = compress(
        model,
        (x, y),
        min_params=1000,
        reconstruction_steps=20,
        epochs=0,
        verbose=0,
    )
    assert _same_weights(before, model)
    conv = student.get_layer("conv")
    assert isinstance(conv, TNConv2D) and conv.strides == (2, 2)
    assert [r["name"] for r in report.layers] == ["conv"]
    assert report.layers[0]["init"] == "activations"
    assert student.predict(x, verbose=0).shape == (32, 4)
    # activation matching fits the teacher's outputs: 20 steps take the
    # relative activation error of the calibrated start (about 1.4) to
    # about 1.0 (the teacher is random, so not much better can be had)
    fitted = _activation_error(student, model, x, "conv")
    keras.utils.set_random_seed(0)
    unfitted, _ = compress(
        model,
        (x, y),
        min_params=1000,
        reconstruction_steps=0,
        epochs=0,
        verbose=0,
    )
    start = _activation_error(unfitted, model, x, "conv")
    assert fitted < 0.85 * start, (fitted, start)
    # exact with a full-bond MPO (initialisation only)
    student, report = compress(
        model,
        (x, y),
        network="mpo",
        bond_dim=64,
        layers=["conv"],
        epochs=0,
        verbose=0,
    )
    assert report.layers[0]["error_init"] < 1e-5
    np.testing.assert_allclose(
        student.predict(x, verbose=0),
        model.predict(x, verbose=0),
        rtol=1e-4,
        atol=1e-5,
    )


def _attention_model():
    q = keras.Input((6, 16))
    h = keras.layers.MultiHeadAttention(2, 8, name="att")(q, q)
    h = keras.layers.GlobalAveragePooling1D()(h)
    out = keras.layers.Dense(3, activation="softmax")(h)
    return keras.Model(q, out)


def test_attention_is_replaced():
    rng = np.random.default_rng(0)
    model = _attention_model()
    x = rng.normal(size=(16, 6, 16)).astype("float32")
    y = rng.integers(0, 3, 16)
    student, report = compress(
        model,
        (x, y),
        network="mpo",
        bond_dim=512,
        layers=["att"],
        reconstruction_steps=0,  # the exact TT-SVD start alone
        epochs=0,
        verbose=0,
    )
    assert isinstance(student.get_layer("att"), TNMultiHeadAttention)
    assert report.layers[0]["error_init"] < 1e-5
    np.testing.assert_allclose(
        student.predict(x, verbose=0),
        model.predict(x, verbose=0),
        rtol=1e-4,
        atol=1e-5,
    )
    student, report = compress(
        model,
        (x, y),
        min_params=0,
        reconstruction_steps=10,
        epochs=0,
        verbose=0,
    )
    assert report.layers[0]["name"] == "att"
    # data-aware for all four projections (the attention context too)
    assert report.layers[0]["init"] == "activations"
    assert "weight-only" not in report.layers[0]["note"]
    # the ratio is the layers' own parameter counts: 4 x (16 x 16 + 16)
    # dense against the generators' cores
    att = student.get_layer("att")
    assert model.get_layer("att").count_params() == 1088
    assert report.layers[0]["ratio"] == pytest.approx(1088 / att.count_params())
    # default settings: 209 parameters, 5.2x (measured)
    assert report.layers[0]["ratio"] > 5


def test_layers_it_cannot_handle_are_reported():
    inp = keras.Input((16,))
    shared = keras.layers.Dense(16, name="shared")
    inner = keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(4, name="deep")],
        name="inner",
    )
    out = keras.layers.Dense(2, name="head")(inner(shared(shared(inp))))
    model = keras.Model(inp, out)
    x = np.random.default_rng(0).normal(size=(8, 16)).astype("float32")
    y = np.arange(8) % 2
    student, report = compress(model, (x, y), min_params=0, epochs=0, verbose=0)
    reasons = {r["name"]: r["reason"] for r in report.skipped}
    assert "shared" in reasons["shared"]
    assert "nested" in reasons["inner/deep"]
    assert "not be smaller" in reasons["head"]
    assert report.layers == []
    assert "left as they were" in report.table()
    np.testing.assert_allclose(
        student.predict(x, verbose=0), model.predict(x, verbose=0)
    )


def test_target_ratio_picks_the_largest_bond_that_reaches_it():
    x_tr, _, y_tr, _ = _digits()
    model = _mlp(hidden=256)
    _, report = compress(
        model,
        (x_tr[:64], y_tr[:64]),
        target_ratio=100,
        reconstruction_steps=0,
        epochs=0,
        verbose=0,
    )
    row = report.layers[0]
    assert row["ratio"] >= 100
    _, bigger = compress(
        model,
        (x_tr[:64], y_tr[:64]),
        bond_dim=row["bond_dim"] + 1,
        init="random",
        epochs=0,
        verbose=0,
    )
    assert bigger.layers[0]["ratio"] < 100
    _, report = compress(
        model,
        (x_tr[:64], y_tr[:64]),
        target_ratio=10**6,
        init="random",
        epochs=0,
        verbose=0,
    )
    assert report.layers[0]["bond_dim"] == 1
    assert "not reachable" in report.layers[0]["note"]


def test_regression_is_scored_by_loss():
    rng = np.random.default_rng(0)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(64, activation="tanh"),
            keras.layers.Dense(1),
        ]
    )
    x = rng.normal(size=(32, 8)).astype("float32")
    y = x.sum(1, keepdims=True)
    student, report = compress(
        model,
        {"x": x[:24], "y": y[:24], "x_val": x[24:], "y_val": y[24:]},
        bond_dim=2,
        min_params=0,
        reconstruction_steps=5,
        epochs=1,
        verbose=0,
    )
    # the scores are the mean squared errors on the validation arrays,
    # recomputed here
    assert report.metric == "loss"
    assert report.evaluated_on == "x_val/y_val of data"
    for key, m in (("teacher", model), ("student_final", student)):
        mse = float(np.mean((m.predict(x[24:], verbose=0) - y[24:]) ** 2))
        assert report.scores[key] == pytest.approx(mse, rel=1e-4), key
    assert "loss on x_val/y_val of data" in report.table()


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(4)

    def call(self, x):
        return self.dense(x)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"network": "nope"}, "network"),
        ({"bond_dim": 0}, "bond_dim"),
        ({"bond_dim": 2, "target_ratio": 10}, "target_ratio"),
        ({"target_ratio": 1.0}, "target_ratio"),
        ({"layers": ["missing"]}, "layers"),
        ({"layers": ["flatten"]}, "layers"),
        ({"layers": []}, "layers"),
        ({"init": "svd"}, "init"),
        ({"init": "magic"}, "init"),
        ({"max_layers": 0}, "max_layers"),
        ({"min_params": -1}, "min_params"),
        ({"reconstruction_steps": -1}, "reconstruction_steps"),
        ({"epochs": 1.5}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"temperature": -1}, "temperature"),
        ({"alpha": 2}, "alpha"),
        ({"task": "ranking"}, "task"),
        ({"verbose": 3}, "verbose"),
        ({"data": "x.npz"}, "data"),
        ({"data": {"x": 1}}, "data"),
        ({"data": (np.zeros((4, 5)), np.zeros(4))}, "data"),
        ({"data": (np.zeros((4, 8)), np.zeros(3))}, "data"),
        ({"validation_data": (np.zeros((4, 9)), np.zeros(4))}, "validation"),
        ({"model": "model.keras"}, "model"),
        ({"model": "subclassed"}, "model"),
    ],
)
def test_bad_arguments_raise_before_any_work(kwargs, name, monkeypatch):
    # importlib: `keras_adntn.compress` may also name the exported function
    module = importlib.import_module("keras_adntn.compress.api")

    def no_work(*args, **kw):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(module, "select_layers", no_work)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(64),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(2),
        ]
    )
    if kwargs.get("model") == "subclassed":
        kwargs["model"] = _Subclassed()
        kwargs["model"](np.zeros((1, 8), "float32"))
    args = {
        "model": model,
        "data": (np.zeros((4, 8), "float32"), np.zeros(4)),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        compress(**args)


# -- the CLI


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(128, activation="relu", name="big"),
            keras.layers.Dense(3),
        ]
    )
    x = rng.normal(size=(48, 16)).astype("float32")
    y = rng.integers(0, 3, 48)
    paths = {
        "model": os.path.join(tmp_path, "model.keras"),
        "data": os.path.join(tmp_path, "data.npz"),
        "out": os.path.join(tmp_path, "small.keras"),
        "wrong": os.path.join(tmp_path, "wrong.npz"),
        "noy": os.path.join(tmp_path, "noy.npz"),
        "bad": os.path.join(tmp_path, "bad.npz"),
    }
    model.save(paths["model"])
    np.savez(paths["data"], x=x, y=y, x_val=x[:16], y_val=y[:16])
    np.savez(paths["wrong"], x=np.zeros((4, 5), "f4"), y=np.zeros(4))
    np.savez(paths["noy"], x=x)
    with open(paths["bad"], "w") as f:
        f.write("not a zip")
    return paths


def test_cli_compress(files, capsys):
    argv = ["compress", files["model"], files["data"], files["out"]]
    assert main(argv + ["--bond-dim", "2", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "big" in out and "TNDense" in out and "x_val/y_val of data" in out
    loaded = keras.saving.load_model(files["out"])
    assert isinstance(loaded.get_layer("big"), TNDense)


@pytest.mark.parametrize(
    "args, message",
    [
        (["compress", "missing.keras", "{data}", "{out}"], "not found"),
        (["compress", "{model}", "missing.npz", "{out}"], "not found"),
        (["compress", "{model}", "{bad}", "{out}"], ".npz"),
        (["compress", "{model}", "{noy}", "{out}"], "'y'"),
        (["compress", "{model}", "{wrong}", "{out}"], "shape"),
        (["compress", "{model}", "{data}", "/no/such/dir/o.keras"], "dir"),
        (["compress", "{model}", "{data}", "out.h5"], ".keras"),
        (["compress", "{model}", "{data}", "{out}", "--network", "x"], "one"),
        (["compress", "{model}", "{data}", "{out}", "--layers", "z"], "z"),
        (
            [
                "compress",
                "{model}",
                "{data}",
                "{out}",
                "--bond-dim",
                "2",
                "--ratio",
                "5",
            ],
            "at most one of",
        ),
    ],
)
def test_cli_compress_errors(args, message, files, capsys):
    argv = [a.format(**files) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err
    assert "Traceback" not in err
    assert not os.path.exists(files["out"])


def test_report_is_plain_data():
    report = CompressionReport(
        [
            {
                "name": "d",
                "type": "Dense",
                "new_type": "TNDense",
                "network": "ttn",
                "bond_dim": 2,
                "params_before": 100,
                "params_after": 10,
                "ratio": 10.0,
                "init": "activations",
                "error_init": 0.9,
                "error_final": 0.8,
                "note": "",
            }
        ],
        [{"name": "s", "type": "Dense", "reason": "shared layer"}],
        "accuracy",
        {"teacher": 0.9, "student_init": 0.1, "student_final": 0.89},
        "data",
        200,
        110,
    )
    d = json.loads(json.dumps(report.to_dict()))
    assert d["replaced_params_before"] == 100
    assert d["replaced_params_after"] == 10
    table = report.table()
    assert "10.0x" in table and "shared layer" in table and "0.8900" in table


# -- never worse than the start, bad data, progress


def _small_classifier(rng):
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(64, activation="relu", name="big"),
            keras.layers.Dense(3, name="logits"),
        ]
    )
    x = rng.normal(size=(64, 16)).astype("float32")
    y = rng.integers(0, 3, 64)
    return model, x, y


def test_diverging_fine_tuning_is_rolled_back_and_reported():
    rng = np.random.default_rng(0)
    model, x, y = _small_classifier(rng)
    student, report = compress(
        model,
        (x, y),
        bond_dim=2,
        reconstruction_steps=20,
        learning_rate=1e30,  # diverges at once
        validation_data=(x, y),
        epochs=3,
        verbose=0,
    )
    tuning = report.fine_tuning
    assert tuning["diverged"] and "rolled back" in tuning["note"]
    assert tuning["best_epoch"] == 0
    assert report.scores["student_final"] == report.scores["student_init"]
    assert "fine-tuning:" in report.table()
    assert all(np.all(np.isfinite(w)) for w in student.get_weights())
    pred = student.predict(x, verbose=0)
    assert np.all(np.isfinite(pred))


@pytest.mark.parametrize(
    "scores, best",
    [([0.5, 0.9, 0.6], 2), ([0.9, 0.5, 0.9], 3), ([0.1, 0.1, 0.05], 0)],
)
def test_fine_tuning_keeps_the_best_epoch(monkeypatch, scores, best):
    """Regression caught: keeping the last epoch's weights (or a live view
    of them) instead of the best one. The validation scores are scripted
    so that epoch 2 of 3 is the best; the student must come back with the
    weights it had at the end of epoch 2, not epoch 3. On a tie between
    trained epochs the later one (its training loss is lower) is kept:
    validation data the teacher trained on saturate; a tie with the
    initialisation keeps the initialisation."""
    from keras_adntn.compress import finetune

    rng = np.random.default_rng(1)
    teacher, x, y = _small_classifier(rng)
    student = keras.models.clone_model(teacher)
    student.set_weights(teacher.get_weights())
    student.set_weights([w * 0.5 for w in student.get_weights()])
    start = [np.array(w) for w in student.get_weights()]
    scripted = iter(scores)
    seen = []

    def fake_score(model, *args, **kwargs):
        seen.append([np.array(w) for w in model.get_weights()])
        return next(scripted)

    monkeypatch.setattr(finetune, "score", fake_score)
    tuning = finetune.fine_tune(
        student,
        teacher,
        x,
        y,
        (x, y),
        "classification",
        False,
        epochs=3,
        batch_size=16,
        learning_rate=1e-2,
        temperature=2.0,
        alpha=0.5,
        start_score=0.1,
    )
    assert tuning["epochs_run"] == 3 and len(seen) == 3
    assert tuning["best_epoch"] == best
    assert tuning["best_score"] == max(scores[:best] or [0.1])
    final = student.get_weights()
    assert not all(np.allclose(a, b) for a, b in zip(seen[1], seen[2]))
    kept = seen[best - 1] if best else start
    for got, want in zip(final, kept):
        np.testing.assert_array_equal(got, want)


def test_fine_tuning_reports_on_validation_data():
    rng = np.random.default_rng(1)
    model, x, y = _small_classifier(rng)
    _, report = compress(
        model,
        (x, y),
        bond_dim=2,
        reconstruction_steps=20,
        validation_data=0.25,
        epochs=2,
        verbose=0,
    )
    tuning = report.fine_tuning
    assert tuning["diverged"] is None and tuning["epochs_run"] == 2
    # 25% of each class held out
    held = sum(round(0.25 * c) for c in np.bincount(y))
    assert report.evaluated_on == (
        f"{held} of 64 samples of data held out (stratified, seed 0)"
    )
    # never worse than the start on the data the epoch was chosen on
    assert report.scores["student_final"] >= report.scores["student_init"]


@pytest.mark.parametrize(
    "change, message",
    [
        ("labels_high", "labels must be integers in \\[0, 2\\]"),
        ("labels_negative", "labels must be integers"),
        ("nan_x", "NaN or infinite"),
        ("inf_y", "NaN or infinite"),
        ("fraction", "validation_data"),
    ],
)
def test_bad_data_is_one_value_error_and_the_model_is_untouched(
    change, message
):
    rng = np.random.default_rng(0)
    model, x, y = _small_classifier(rng)
    before = model.get_weights()
    kwargs = {}
    if change == "labels_high":
        y = y.copy()
        y[0] = 7
    elif change == "labels_negative":
        y = y.copy()
        y[0] = -1
    elif change == "nan_x":
        x = x.copy()
        x[3, 2] = np.nan
    elif change == "inf_y":
        y = y.astype("float32")
        y[1] = np.inf
    else:
        kwargs["validation_data"] = 1.5
    with pytest.raises(ValueError, match=message) as info:
        compress(model, (x, y), epochs=1, verbose=0, **kwargs)
    assert "\n" not in str(info.value)
    assert "data" in str(info.value)
    assert _same_weights(before, model)


def test_labels_shaped_n_by_1_work_as_in_fit(capsys):
    rng = np.random.default_rng(0)
    model, x, y = _small_classifier(rng)
    student, report = compress(
        model,
        (x, y.reshape(-1, 1)),
        bond_dim=2,
        reconstruction_steps=20,
        validation_data=(x, y.reshape(-1, 1)),
        epochs=1,
        verbose=1,
    )
    assert report.metric == "accuracy"
    assert report.scores["teacher"] == pytest.approx(_accuracy(model, x, y))
    # one plain progress line per phase
    out = capsys.readouterr().out
    for phase in ("[1/4] select", "[2/4] initialise", "[3/4] fine-tune"):
        assert phase in out
    assert "[4/4] evaluate" in out
    assert "\r" not in out and "\x1b" not in out


def test_cli_compress_new_flags_and_flag_names(files, tmp_path, capsys):
    argv = ["compress", files["model"], files["data"], files["out"]]
    code = main(
        argv
        + [
            "--bond-dim",
            "2",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--lr",
            "1e-3",
            "--init",
            "reconstruction",
            "--validation",
            "0.25",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "init=reconstruction" in out and "of data held out" in out
    os.remove(files["out"])
    assert main(argv + ["--ratio", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--ratio" in err and "target_ratio" not in err
    assert main(argv + ["--init", "svd"]) == 2
    assert "--init" in capsys.readouterr().err
    # labels out of range: one error line, exit 2, nothing written
    x = np.zeros((8, 16), "float32")
    bad = os.path.join(tmp_path, "labels.npz")
    np.savez(bad, x=x, y=np.full(8, 9))
    assert main(["compress", files["model"], bad, files["out"]]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "labels" in err and "Traceback" not in err
    assert not os.path.exists(files["out"])
