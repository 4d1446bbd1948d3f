"""Per-layer conversion (`TNDense.from_dense`, `TNConv2D.from_conv2d`,
`TNMultiHeadAttention.from_multi_head_attention`) and the data-aware
initialisation of `keras_adntn.compress.init`."""

import ast
import inspect
import pathlib

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import keras_adntn
from keras_adntn import TNConv2D
from keras_adntn import TNDense
from keras_adntn import TNMultiHeadAttention
from keras_adntn.compress import ConversionResult
from keras_adntn.compress import convert_layer
from keras_adntn.compress import output_error
from keras_adntn.compress import whitening
from keras_adntn.compress.adapters import conv_patches
from keras_adntn.compress.init import activation_aware_low_rank


def _digits():
    data = load_digits()
    return train_test_split(
        (data.data / 16.0).astype("float32"),
        data.target,
        test_size=0.25,
        random_state=0,
        stratify=data.target,
    )


def _fit(model, x, y, epochs):
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


def _inputs(model, name, x):
    feats = keras.Model(model.inputs, model.get_layer(name).input)
    return np.asarray(feats.predict(x, verbose=0), "float32")


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


def _asvd_error(layer, rows_fit, rows_test, rank, conv_inputs=None):
    """Output error (pre-activation) of activation-aware SVD at `rank`."""
    w = np.asarray(layer.kernel, np.float64)
    w = w.reshape(-1, w.shape[-1])
    b = np.asarray(layer.bias, np.float64)
    r, mean = whitening(rows_fit)
    approx = activation_aware_low_rank(w, r, rank)
    bias = b + mean @ (w - approx)
    want = rows_test @ w + b
    got = rows_test @ approx + bias
    spread = np.sum((want - want.mean(0)) ** 2)
    return float(np.sqrt(np.sum((got - want) ** 2) / spread))


def _pre_activation_error(new, teacher, x):
    """Output error of the layers without their activation."""
    saved = new.activation, teacher.activation
    new.activation = teacher.activation = keras.activations.linear
    try:
        return output_error(new, teacher, [x])
    finally:
        new.activation, teacher.activation = saved


@pytest.fixture(scope="module")
def digits_mlp():
    keras.utils.set_random_seed(0)
    x_tr, x_te, y_tr, y_te = _digits()
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(128, activation="relu", name="h1"),
            keras.layers.Dense(128, activation="relu", name="h2"),
            keras.layers.Dense(10, name="logits"),
        ]
    )
    _fit(model, x_tr, y_tr, 20)
    return model, x_tr, x_te, y_tr, y_te


def test_from_dense_data_aware_beats_weight_only_and_asvd(digits_mlp):
    """On a trained MLP: the data-aware TNDense has a smaller output error
    on held-out inputs than the weight-only one, and no larger than
    activation-aware SVD with at least as many stored parameters (~25x
    on the layer); at ~10x the student right after initialisation stays
    within 5 points of the teacher."""
    model, x_tr, x_te, y_tr, y_te = digits_mlp
    h2 = model.get_layer("h2")
    fit, test = _inputs(model, "h2", x_tr), _inputs(model, "h2", x_te)
    report = {}
    new = TNDense.from_dense(
        h2, fit, network="ttn", target_ratio=25, steps=400, report=report
    )
    assert isinstance(new, TNDense) and new.name == "h2"
    assert new.compression_ratio >= 25
    assert report["init"] == "activations"
    assert report["fit_loss"] < report["fit_start"]
    weight_only = TNDense.from_dense(
        h2, network="ttn", bond_dim=report["bond_dim"], steps=400
    )
    err = _pre_activation_error(new, h2, test)
    err_weight = _pre_activation_error(weight_only, h2, test)
    assert err < err_weight, (err, err_weight)
    # activation-aware SVD with a budget >= the TN layer's
    rank = -(-(new.count_params() - 128) // 256)
    err_asvd = _asvd_error(h2, fit, test, rank)
    assert err <= err_asvd, (err, err_asvd, rank)
    # the student right after initialisation, ~10x on the layer
    small = TNDense.from_dense(h2, fit, network="ttn", target_ratio=10)
    student = keras.Sequential(
        [keras.Input((64,)), model.get_layer("h1"), small, model.layers[-1]]
    )
    teacher_acc = _accuracy(model, x_te, y_te)
    student_acc = _accuracy(student, x_te, y_te)
    assert teacher_acc - student_acc <= 0.05, (teacher_acc, student_acc)
    print(
        f"\n[from_dense] {keras.backend.backend()}: {new.compression_ratio:.1f}"
        f"x, output error {err:.3f} (weight-only {err_weight:.3f}, ASVD "
        f"rank {rank} {err_asvd:.3f}); at {small.compression_ratio:.1f}x "
        f"accuracy {student_acc:.4f} vs teacher {teacher_acc:.4f}"
    )


def test_from_dense_weight_only_and_errors():
    dense = keras.layers.Dense(32, activation="relu", name="d")
    dense.build((None, 16))
    report = {}
    new = TNDense.from_dense(dense, network="mpo", bond_dim=64, report=report)
    # weight-only mpo: TT-SVD, exact at full bond, the bias copied
    assert report["init"] == "svd" and report["weight_error"] < 1e-5
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(new.bias),
        keras.ops.convert_to_numpy(dense.bias),
    )
    x = np.random.default_rng(0).normal(size=(8, 16)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(new(x)),
        keras.ops.convert_to_numpy(dense(x)),
        atol=1e-4,
    )
    with pytest.raises(ValueError, match="`x`"):
        TNDense.from_dense(dense, np.full((4, 16), np.nan, "float32"))
    with pytest.raises(ValueError, match="`x`"):
        TNDense.from_dense(dense, np.zeros((4, 15), "float32"))
    with pytest.raises(ValueError, match="`layer`"):
        TNDense.from_dense(keras.layers.Flatten())
    with pytest.raises(ValueError, match="`init`"):
        TNDense.from_dense(dense, init="activations")
    with pytest.raises(ValueError, match="`target_ratio`"):
        TNDense.from_dense(dense, target_ratio=0.5)
    with pytest.raises(ValueError, match="bond_dim"):
        TNDense.from_dense(dense, bond_dim=2, target_ratio=4)


def test_from_conv2d_data_aware():
    """A small trained digits CNN: the data-aware TNConv2D fits the
    im2col statistics (output error below the weight-only one and no
    above activation-aware SVD at >= its parameters)."""
    keras.utils.set_random_seed(0)
    x_tr, x_te, y_tr, _ = _digits()
    x_tr, x_te = x_tr.reshape(-1, 8, 8, 1), x_te.reshape(-1, 8, 8, 1)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", name="conv"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ]
    )
    _fit(model, x_tr, y_tr, 8)
    conv = model.get_layer("conv")
    fit, test = _inputs(model, "conv", x_tr), _inputs(model, "conv", x_te)
    report = {}
    new = TNConv2D.from_conv2d(
        conv, fit, network="ttn", target_ratio=10, steps=300, report=report
    )
    assert isinstance(new, TNConv2D) and new.compression_ratio >= 10
    weight_only = TNConv2D.from_conv2d(
        conv, network="ttn", bond_dim=report["bond_dim"], steps=300
    )
    err = output_error(new, conv, [test])
    err_weight = output_error(weight_only, conv, [test])
    assert err < err_weight, (err, err_weight)
    patches_fit = conv_patches(fit, conv, 20000)
    patches_test = conv_patches(test, conv, 10**9)
    # activation-aware SVD with as many parameters (the closest rank)
    rank = round((new.count_params() - 32) / (144 + 32))
    err_asvd = _asvd_error(conv, patches_fit, patches_test, rank)
    assert err <= err_asvd, (err, err_asvd, rank, new.count_params())


def test_from_multi_head_attention():
    rng = np.random.default_rng(0)
    mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8, name="att")
    # correlated inputs (rank 4 in 16 dimensions plus a little noise)
    z = rng.normal(size=(64, 6, 4)) @ rng.normal(size=(4, 16))
    x = (z + 0.05 * rng.normal(size=z.shape)).astype("float32")
    mha(x, x)
    # exact at full bond, data-aware mpo (TT-SVD start kept)
    report = {}
    new = TNMultiHeadAttention.from_multi_head_attention(
        mha, x, network="mpo", bond_dim=512, report=report
    )
    assert report["error"] < 1e-4, report
    # a small ttn: data-aware beats weight-only on these inputs
    kwargs = {"network": "ttn", "bond_dim": 2, "steps": 200}
    report = {}
    new = TNMultiHeadAttention.from_multi_head_attention(
        mha, x, report=report, **kwargs
    )
    assert isinstance(new, TNMultiHeadAttention)
    assert "weight-only" not in report["note"]
    weight_only = TNMultiHeadAttention.from_multi_head_attention(mha, **kwargs)
    err = output_error(new, mha, [x, x, x])
    assert err == pytest.approx(report["error"], rel=1e-3)
    assert err < output_error(weight_only, mha, [x, x, x])
    with pytest.raises(ValueError, match="`x`"):
        TNMultiHeadAttention.from_multi_head_attention(mha, (x, x, x, x))


def test_convert_layer_result_and_the_classmethods():
    """`convert_layer` returns a `ConversionResult`; the classmethods
    delegate to it (their `report=` dict holds its fields) and keep their
    names, signature and docstring."""
    dense = keras.layers.Dense(8, name="d")
    dense.build((None, 16))
    result = convert_layer(dense, network="mpo", bond_dim=64)
    assert isinstance(result, ConversionResult)
    assert isinstance(result.layer, TNDense) and result.layer.name == "d"
    assert result.init == "svd" and result.error is None
    report = {}
    TNDense.from_dense(dense, network="mpo", bond_dim=64, report=report)
    assert report.keys() == result.to_dict().keys()
    assert report["bond_dim"] == 64 and report["init"] == "svd"
    for cls, name, teacher in [
        (TNDense, "from_dense", "Dense"),
        (TNConv2D, "from_conv2d", "Conv2D"),
        (
            TNMultiHeadAttention,
            "from_multi_head_attention",
            "MultiHeadAttention",
        ),
    ]:
        method = getattr(cls, name)
        assert method.__qualname__ == f"{cls.__name__}.{name}"
        params = list(inspect.signature(method).parameters)
        assert params[:2] == ["layer", "x"] and params[-1] == "report"
        assert method.__doc__.startswith(
            f"A `{cls.__name__}` initialised from a trained `{teacher}`"
        )
    with pytest.raises(ValueError, match="`layer`"):
        convert_layer(keras.layers.Flatten())
    with pytest.raises(ValueError, match="TNConv2D.from_conv2d"):
        TNConv2D.from_conv2d(dense)


def test_layers_import_nothing_from_compress():
    """The layers sit below `keras_adntn.compress`: no import of it, not
    even inside a function."""
    root = pathlib.Path(keras_adntn.__file__).parent / "layers"
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
                names += [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            bad = [n for n in names if n.startswith("keras_adntn.compress")]
            assert not bad, (path.name, bad)
