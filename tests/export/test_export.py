"""LiteRT export (SPEC §9): cached and on-the-fly modes, quantisation.

Every exported flatbuffer is run with `ai_edge_litert`'s interpreter and
compared with the Keras model; `export_litert` also runs it on TensorFlow
Lite Micro's interpreter (its report's `tflm_*` fields), which the tests
check: the arena is the smallest TFLM allocates and runs with. The
conversion itself needs TensorFlow: the in-process tests run under the
TensorFlow backend; under jax / torch `export_litert` converts in a
TensorFlow subprocess, which the tests marked `any_backend` exercise (one
conversion there costs a TensorFlow start-up, ~10 s, so the other
conversions are not repeated).
"""

import json
import os

import keras
import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("tflite_micro")

from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from keras_adntn import TNConv2D  # noqa: E402
from keras_adntn import TNDense  # noqa: E402
from keras_adntn.export import ExportReport  # noqa: E402
from keras_adntn.export import export_litert  # noqa: E402
from keras_adntn.networks import executors  # noqa: E402

BACKEND = keras.backend.backend()
tf_backend_only = pytest.mark.skipif(
    BACKEND != "tensorflow",
    reason=(
        "in-process LiteRT conversion needs KERAS_BACKEND=tensorflow; under "
        f"{BACKEND} export goes through a TensorFlow subprocess (~10 s per "
        "export), covered once by test_export_through_subprocess"
    ),
)
NETWORKS = ["ttn", "attn", "mera", "brickwall", "mpo"]
PARITY = 1e-4
# Ops TFLM runs with a persistent copy of an input as large as the state
# (BATCH_MATMUL with adj_x, or without adj_y): the tiled on-device path
# must not produce them.
PERSISTENT_COPY_OPS = {"BATCH_MATMUL"}


def _run(path, *inputs):
    interpreter = Interpreter(model_path=str(path))
    details = interpreter.get_input_details()
    for detail, x in zip(details, inputs):
        interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    for detail, x in zip(details, inputs):
        interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    out = interpreter.get_output_details()[0]
    return interpreter.get_tensor(out["index"])


def _rel_error(model, path, x):
    want = keras.ops.convert_to_numpy(model(x))
    got = _run(path, x)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def _assert_builtin_tflm(report, measured=True):
    assert report.builtin_only, report.ops
    if measured:  # ran on the TFLite Micro interpreter, same outputs
        assert report.tflm_arena_bytes > 0
        assert report.tflm_latency_s > 0
        if report.quantize is None:
            assert report.tflm_parity_rel_error <= PARITY
    assert not any(name.startswith("CUSTOM") for name in report.ops)
    assert report.tflm_unsupported == [], report.tflm_unsupported
    assert report.tflm_rank_issues == [], report.tflm_rank_issues
    assert report.max_transpose_rank <= 5


def _inputs(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


# -- float export, both modes ------------------------------------------------
@tf_backend_only
@pytest.mark.parametrize("mode", ["cached", "on_the_fly"])
@pytest.mark.parametrize(
    "dense_kwargs",
    [
        {"activation": "relu"},  # zero bias: the converter's FC->BMM trap
        {"activation": "relu", "bias_initializer": "ones"},
        {"activation": "relu", "use_bias": False},
        {"activation": "tanh", "generator_groups": 2},
    ],
    ids=["zero-bias", "bias", "no-bias", "tanh-groups"],
)
def test_small_tndense_parity(tmp_path, mode, dense_kwargs):
    model = keras.Sequential(
        [
            keras.Input((32,)),
            TNDense(64, seed=1, **dense_kwargs),
            keras.layers.Dense(8),
        ]
    )
    report = export_litert(model, tmp_path / "m.tflite", mode=mode)
    assert os.path.getsize(report.path) == report.file_bytes
    assert _rel_error(model, report.path, _inputs((4, 32))) <= PARITY
    assert report.parity_rel_error <= PARITY
    _assert_builtin_tflm(report)
    tn_row = report.layers[0]
    assert (tn_row.name, tn_row.class_name) == (model.layers[0].name, "TNDense")
    assert tn_row.params == model.layers[0].count_params()
    if mode == "cached":
        assert not {"BATCH_MATMUL", "TRANSPOSE", "ELU"} & set(report.ops)
        assert tn_row.ops["FULLY_CONNECTED"] == 1
        assert tn_row.stored_bytes >= 4 * 32 * 64
    else:
        # generated in a loop of two blocks, no persistent-copy matmul
        assert report.tiles == {model.layers[0].name: 2}
        assert {"WHILE", "GATHER", "FULLY_CONNECTED"} <= set(tn_row.ops)
        assert not PERSISTENT_COPY_OPS & set(tn_row.ops)
        assert tn_row.stored_bytes < 4 * 32 * 64
        assert report.layers[1].ops == {"FULLY_CONNECTED": 1}


@tf_backend_only
@pytest.mark.parametrize("mode", ["cached", "on_the_fly"])
def test_cached_execution_and_qat_layers_export(tmp_path, mode):
    """Layers with `execution="cached"` export like on-the-fly ones (the
    export generates; no cache variable reaches the file) and QAT kernels
    keep parity."""
    model = keras.Sequential(
        [
            keras.Input((32,)),
            TNDense(64, seed=1, activation="relu", execution="cached"),
            TNDense(8, seed=2, kernel_quantization="int8"),
        ]
    )
    model.predict(_inputs((4, 32)), verbose=0)  # fills the cache
    report = export_litert(model, tmp_path / "m.tflite", mode=mode)
    assert _rel_error(model, report.path, _inputs((4, 32))) <= PARITY
    _assert_builtin_tflm(report)
    if mode == "on_the_fly":
        assert report.stored_bytes < 4 * (32 * 64 + 64 * 8)
    assert report.layers[0].params == model.layers[0].count_params()


@tf_backend_only
@pytest.mark.parametrize("network", NETWORKS)
def test_on_the_fly_every_network(tmp_path, network):
    model = keras.Sequential(
        [keras.Input((16,)), TNDense(32, network=network, seed=2)]
    )
    report = export_litert(model, tmp_path / "m.tflite", mode="on_the_fly")
    assert _rel_error(model, report.path, _inputs((3, 16))) <= PARITY
    _assert_builtin_tflm(report)
    # tiled where it pays (ttn, mpo; attn and mera, whose gates follow the
    # expansions that make their modes), else generated once (brickwall,
    # whose gates act on all leaves); never stored
    tiled = network != "brickwall"
    assert ("WHILE" in report.ops) == tiled, report.ops
    assert bool(report.tiles) == tiled
    assert not PERSISTENT_COPY_OPS & set(report.ops)
    assert report.stored_bytes < 4 * 16 * 32


@tf_backend_only
def test_on_the_fly_size_bound_1024(tmp_path):
    model = keras.Sequential([keras.Input((1024,)), TNDense(1024, seed=3)])
    fly = export_litert(
        model, tmp_path / "fly.tflite", mode="on_the_fly", arena_budget="64K"
    )
    cached = export_litert(model, tmp_path / "cached.tflite", mode="cached")
    # the defaults fit a 64 KB flash / 64 KB SRAM part (the balanced
    # default tree; 0.1.0's 7/7/6 tree needed 104 KB of arena)
    assert fly.file_bytes <= 64 * 1024, fly.file_bytes
    assert fly.tflm_arena_bytes <= 64 * 1024, fly.tflm_arena_bytes
    assert cached.file_bytes > 4 * 1024 * 1024
    assert set(cached.ops) == {"FULLY_CONNECTED"}
    _assert_builtin_tflm(fly)
    x = _inputs((2, 1024))
    assert _rel_error(model, fly.path, x) <= PARITY
    assert _rel_error(model, cached.path, x) <= PARITY


@tf_backend_only
def test_cached_does_not_rely_on_converter_folding(tmp_path):
    # bond_dim 4 makes intermediates the converter refuses to fold; cached
    # mode still stores one constant kernel (generated at export time).
    model = keras.Sequential(
        [keras.Input((64,)), TNDense(256, bond_dim=4, seed=4)]
    )
    report = export_litert(model, tmp_path / "m.tflite", mode="cached")
    assert set(report.ops) == {"FULLY_CONNECTED"}
    assert _rel_error(model, report.path, _inputs((2, 64))) <= PARITY


@tf_backend_only
def test_tnconv2d_both_modes(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((8, 8, 4)),
            TNConv2D(8, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    x = _inputs((2, 8, 8, 4))
    for mode in ("cached", "on_the_fly"):
        report = export_litert(model, tmp_path / f"{mode}.tflite", mode=mode)
        assert _rel_error(model, report.path, x) <= PARITY
        _assert_builtin_tflm(report)
        if mode == "cached":
            assert report.layers[0].ops.get("CONV_2D") == 1
        else:  # generated in the graph, one CONV_2D per channel block
            blocks = report.tiles[model.layers[0].name]
            assert blocks >= 2
            assert report.layers[0].ops.get("CONV_2D") == blocks
            assert {"MUL", "ELU"} <= set(report.layers[0].ops)
            assert not PERSISTENT_COPY_OPS & set(report.layers[0].ops)


def test_every_layer_type_exports_from_this_backend(tmp_path):
    """On every backend (jax / torch: through the TensorFlow subprocess),
    one model holding a TNDense of each network and a TNConv2D converts
    to builtin ops only and gives this backend's outputs. Regression
    caught: a layer whose saved file does not reload in the TensorFlow
    process, or whose generated kernel differs there (a backend-dependent
    generator), which the TensorFlow-only tests cannot see."""
    inputs = keras.Input((6, 6, 2))
    h = TNConv2D(4, 3, seed=0)(inputs)
    h = keras.layers.Flatten()(h)
    for k, network in enumerate(NETWORKS):
        h = TNDense(16, network=network, activation="elu", seed=k)(h)
    model = keras.Model(inputs, h)
    report = export_litert(model, tmp_path / "all.tflite", mode="cached")
    route = "in-process" if BACKEND == "tensorflow" else "subprocess"
    assert report.route == route
    _assert_builtin_tflm(report)
    assert _rel_error(model, report.path, _inputs((1, 6, 6, 2))) <= PARITY


# -- on the microcontroller: arena budgets, measured on TFLite Micro ----------
@tf_backend_only
def test_arena_budget_is_met_on_tflm(tmp_path):
    """The block count follows the budget, and the arena TFLM measures
    stays within it; without tiling the arena holds the whole kernel."""
    model = keras.Sequential(
        [
            keras.Input((256,)),
            TNDense(256, activation="relu", seed=8),
            keras.layers.Dense(10),
        ]
    )
    name = model.layers[0].name
    # the tiled generation (mode="factorized" contracts a ttn with a head)
    fly = {"mode": "on_the_fly"}
    fast = export_litert(model, tmp_path / "fast.tflite", **fly)
    small = export_litert(
        model, tmp_path / "small.tflite", arena_budget="32K", **fly
    )
    cached = export_litert(model, tmp_path / "cached.tflite", mode="cached")
    for report in (fast, small, cached):
        _assert_builtin_tflm(report)
    assert 2 <= fast.tiles[name] < small.tiles[name]
    assert small.tflm_arena_bytes <= 32 * 1024 < fast.tflm_arena_bytes
    assert small.within_budget and small.warnings == []
    # flash: the cores instead of the 256x256 kernel
    assert small.file_bytes < 0.6 * cached.file_bytes
    assert small.layers[0].stored_bytes < 0.05 * cached.layers[0].stored_bytes


@tf_backend_only
def test_unreachable_budget_warns(tmp_path):
    model = keras.Sequential([keras.Input((64,)), TNDense(64, seed=9)])
    # below every estimate: refused before any conversion
    with pytest.raises(ValueError, match="smallest arena possible is 3,584"):
        export_litert(
            model, tmp_path / "m.tflite", mode="on_the_fly", arena_budget=512
        )
    # within the smallest estimate, below what TFLM measures: a warning
    with pytest.warns(UserWarning, match="exceeds arena_budget"):
        report = export_litert(
            model, tmp_path / "m.tflite", mode="on_the_fly", arena_budget=3600
        )
    assert report.within_budget is False
    assert report.tflm_arena_bytes > 3600
    assert "OVER the budget" in str(report)
    # it went as far as one row per block
    assert report.tiles == {model.layers[0].name: 64}


def test_generate_fixed_leaves_is_a_slice():
    """`generate(fixed=...)`, the tiled export's block, is exactly the
    slice of the whole generated tensor, for every network."""
    from keras_adntn import networks
    from keras_adntn.networks.executors import NumpyOps

    for name in NETWORKS:
        net = networks.get(name)(num_modes=9, bond_dim=3, groups=2, seed=1)
        net.build()
        cores = {k: np.asarray(v) for k, v in net._vars.items()}
        whole = net._run(cores, NumpyOps()).reshape(2, *[2] * 9)
        for fixed in ({0: 1}, {0: 0, 2: 1}, {1: 1, 4: 0, 8: 1}):
            block = net._run(cores, NumpyOps(), fixed=fixed)
            index = (slice(None),) + tuple(
                fixed.get(k, slice(None)) for k in range(9)
            )
            want = whole[index].reshape(2, -1)
            np.testing.assert_allclose(block, want, atol=1e-6)


@tf_backend_only
def test_compare_deployments_table(tmp_path):
    from keras_adntn.export import compare_deployments

    model = keras.Sequential(
        [keras.Input((128,)), TNDense(128, activation="relu", seed=10)]
    )
    table = compare_deployments(model, tmp_path, arena_budget="48K")
    labels = [row.label for row in table.rows]
    assert labels[0].startswith("Dense twin")
    # a ttn layer is contracted with its head in mode="factorized"
    assert len(labels) == 8
    assert labels[4:6] == ["factorized float32", "factorized int8"]
    assert labels[6:] == ["default plan float32", "default plan int8"]
    # the default int8 plan: the head's contraction quantized in full, so
    # smaller than the factorized float32 file
    assert table.rows[7].flash_bytes < table.rows[4].flash_bytes
    assert table.rows[0].latency_ratio == 1.0
    for row in table.rows:
        assert row.arena_bytes > 0 and row.flash_bytes > 0
    fly, twin = table.rows[2], table.rows[0]
    assert fly.mode == "on_the_fly" and fly.quantize is None
    assert fly.arena_bytes <= 48 * 1024
    assert fly.parity_rel_error <= PARITY
    assert fly.flash_bytes < table.rows[1].flash_bytes  # < cached float32
    text = str(table)
    assert "Dense twin" in text and "arena budget 48.0 KB" in text
    assert twin.parity_rel_error < 0.2  # int8, calibrated on noise


# -- quantisation -------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    if BACKEND != "tensorflow":
        pytest.skip("digits export tests run in-process (TensorFlow backend)")
    datasets = pytest.importorskip("sklearn.datasets")
    selection = pytest.importorskip("sklearn.model_selection")
    x, y = datasets.load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    x_train, x_test, y_train, y_test = selection.train_test_split(
        x, y, test_size=0.3, random_state=0
    )
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            TNDense(256, activation="relu", bond_dim=4, seed=0),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x_train, y_train, epochs=30, batch_size=64, verbose=0)
    accuracy = float(
        np.mean(np.argmax(model.predict(x_test, verbose=0), -1) == y_test)
    )
    return model, x_train, x_test, y_test, accuracy


def _accuracy(path, x, y):
    return float(np.mean(np.argmax(_run(path, x), -1) == y))


def _tflm_accuracy(path, x, y):
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_file(str(path), arena_size=1 << 22)
    hits = 0
    for sample, label in zip(x, y):
        interpreter.set_input(sample[None], 0)
        interpreter.invoke()
        hits += int(np.argmax(interpreter.get_output(0)) == label)
    return hits / len(y)


def test_int8_digits_cached(tmp_path, digits):
    model, x_train, x_test, y_test, keras_acc = digits
    assert keras_acc >= 0.95
    ref = export_litert(model, tmp_path / "f32.tflite", mode="cached")
    q = export_litert(
        model,
        tmp_path / "int8.tflite",
        mode="cached",
        quantize="int8",
        representative_dataset=x_train[:200],
    )
    _assert_builtin_tflm(q)
    assert q.float_ops == {}  # fully integer between QUANTIZE/DEQUANTIZE
    assert keras_acc - _accuracy(q.path, x_test, y_test) <= 0.01
    assert q.file_bytes <= 0.3 * ref.file_bytes, (q.file_bytes, ref.file_bytes)


def test_int8_digits_on_the_fly(tmp_path, digits):
    model, x_train, x_test, y_test, keras_acc = digits

    def calibration():  # the LiteRT convention also works
        for i in range(200):
            yield [x_train[i : i + 1]]

    q = export_litert(
        model,
        tmp_path / "int8.tflite",
        mode="on_the_fly",
        quantize="int8",
        representative_dataset=calibration,
    )
    fly = export_litert(model, tmp_path / "f32.tflite", mode="on_the_fly")
    cached = export_litert(
        model,
        tmp_path / "cached_int8.tflite",
        mode="cached",
        quantize="int8",
        representative_dataset=x_train[:200],
    )
    _assert_builtin_tflm(q)
    # the generator (its MULs, ELUs) stays float32, the rest is int8
    assert {"MUL", "ELU"} <= set(q.float_ops)
    assert q.layers[1].stored_bytes < fly.layers[1].stored_bytes  # int8
    assert q.file_bytes < fly.file_bytes
    # the issue's bound: within 1.5x of the cached int8 error
    assert q.tflm_parity_rel_error <= 1.5 * cached.tflm_parity_rel_error
    # accuracy on the TFLite Micro interpreter itself, within 1 point
    assert keras_acc - _tflm_accuracy(q.path, x_test, y_test) <= 0.01


def test_float16_digits(tmp_path, digits):
    model, _, x_test, y_test, keras_acc = digits
    ref = export_litert(model, tmp_path / "f32.tflite", mode="cached")
    with pytest.warns(UserWarning, match="could not run"):
        half = export_litert(
            model, tmp_path / "f16.tflite", mode="cached", quantize="float16"
        )
    # TFLite Micro has no float16 DEQUANTIZE: said, not measured
    assert half.tflm_arena_bytes is None
    _assert_builtin_tflm(half, measured=False)
    assert half.file_bytes < 0.6 * ref.file_bytes
    assert half.parity_rel_error <= 1e-2
    assert abs(_accuracy(half.path, x_test, y_test) - keras_acc) <= 0.005


@tf_backend_only
def test_keras_quantize_then_int8_export(tmp_path):
    """`model.quantize("int8")` (Keras's API) puts the TN kernel on its int8
    grid; the int8 export of that model is a real int8 model whose output
    follows Keras's."""
    # (a Keras-quantised Dense layer itself does not convert: its int8
    # matmul is rejected by the LiteRT converter, a Keras matter)
    model = keras.Sequential(
        [
            keras.Input((32,)),
            TNDense(64, activation="relu", seed=11),
            TNDense(8, seed=12),
        ]
    )
    model.quantize("int8")
    assert [layer.kernel_quantization for layer in model.layers] == [
        "int8",
        "int8",
    ]
    x = _inputs((200, 32))
    errors = {}
    for mode in ("cached", "on_the_fly"):
        report = export_litert(
            model,
            tmp_path / f"{mode}.tflite",
            mode=mode,
            quantize="int8",
            representative_dataset=x,
        )
        _assert_builtin_tflm(report)
        assert report.quantize == "int8"
        if mode == "cached":  # the TN kernel stored as int8 weights
            assert report.float_ops == {}
        errors[mode] = report.tflm_parity_rel_error
    # int8 activations of an untrained model: about 0.1 off
    assert errors["cached"] < 0.2
    assert errors["on_the_fly"] <= 1.5 * errors["cached"]


# -- report, arguments, backends -----------------------------------------------
def test_report_table_and_dict(tmp_path):
    model = keras.Sequential([keras.Input((16,)), TNDense(16, seed=5)])
    report = export_litert(model, tmp_path / "m.tflite", mode="on_the_fly")
    data = report.to_dict()
    json.dumps(data)
    assert ExportReport.from_dict(data) == report
    text = str(report)
    for word in ("total", "TNDense", "WHILE", "on_the_fly", "blocks"):
        assert word in text
    assert f"arena {report.tflm_arena_bytes:,} bytes" in text
    assert sum(row.stored_bytes for row in report.layers) == (
        report.stored_bytes
    )
    assert sum(sum(row.ops.values()) for row in report.layers) == sum(
        report.ops.values()
    )
    # every op of the loop body belongs to the layer, none to "(other)"
    assert "(other)" not in [row.name for row in report.layers]
    assert report.layers[0].ops["WHILE"] == 1


def test_activation_byte_estimates():
    """`activation_bytes` and `peak_activation_bytes` (printed in the
    report when TFLM is not installed) on a hand-built float32 chain
    x(1x8) -> FC 16 -> relu -> FC 32 -> FC 4, whose sizes are known:
    outputs 64 + 128 + 16 = 208 bytes; alive at once at most the 64-byte
    and 128-byte hidden tensors (192; the input is dead after the first
    op). Regression caught: a peak that never frees tensors (240), that
    forgets the running op's inputs (128), or a sum that counts the
    constant weights."""
    import tensorflow as tf

    from keras_adntn.export.analysis import analyze_flatbuffer

    rng = np.random.default_rng(0)
    shapes = [(8, 16), (16, 32), (32, 4)]
    w1, w2, w3 = (rng.standard_normal(s).astype("f4") for s in shapes)

    @tf.function(input_signature=[tf.TensorSpec((1, 8), tf.float32)])
    def chain(x):
        return tf.matmul(tf.matmul(tf.nn.relu(tf.matmul(x, w1)), w2), w3)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [chain.get_concrete_function()], chain
    )
    result = analyze_flatbuffer(converter.convert())
    assert result["ops"] == {"FULLY_CONNECTED": 3}
    assert result["activation_bytes"] == 4 * (16 + 32 + 4)
    assert result["peak_activation_bytes"] == 4 * (16 + 32)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "lazy"}, "`mode` must be one of"),
        ({"quantize": "int4"}, "`quantize` must be one of"),
        ({"quantize": "int8"}, "representative_dataset"),
        ({"batch_size": 0}, "`batch_size`"),
        ({"arena_budget": "lots"}, "`arena_budget`"),
        ({"arena_budget": -5}, "`arena_budget`"),
        ({"arena_budget": "12Q"}, "`arena_budget`"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    model = keras.Sequential([keras.Input((8,)), TNDense(8, seed=6)])
    with pytest.raises(ValueError, match=match):
        export_litert(model, tmp_path / "m.tflite", **kwargs)
    assert not (tmp_path / "m.tflite").exists()


def test_device_context_is_scoped_to_its_block():
    # catches: a trace's DeviceContext leaking out of its block (every
    # later call would generate with the export's executor), or a nested
    # block not restoring the outer one
    from keras_adntn.kernels import device_context
    from keras_adntn.kernels.device_context import DeviceContext

    outer = DeviceContext(make_ops=lambda: executors.KerasOps(max_rank=5))
    inner = DeviceContext(make_ops=lambda: executors.KerasOps(max_rank=3))
    assert device_context.current() is None
    with device_context.tracing(outer):
        assert device_context.current() is outer
        with device_context.tracing(inner):
            assert device_context.current() is inner
        assert device_context.current() is outer
    assert device_context.current() is None
    with pytest.raises(ValueError, match="`context`"):
        with device_context.tracing(executors.KerasOps()):
            pass


def test_device_context_executor_makes_each_kernel_once():
    # catches: a product that ignores the export's executor (the kernel
    # would be traced with full-rank transposes TFLM rejects), or one
    # that generates a kernel twice in one call
    from keras_adntn.kernels import device_context
    from keras_adntn.kernels.device_context import DeviceContext

    layer = TNDense(8, seed=6)
    layer.build((None, 8))
    made = []

    def make_ops():
        made.append(executors.KerasOps(max_rank=5))
        return made[-1]

    x = np.ones((2, 8), "float32")
    with device_context.tracing(DeviceContext(make_ops=make_ops)):
        y = layer(x)
    assert len(made) == 1
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(y),
        keras.ops.convert_to_numpy(layer(x)),
        rtol=1e-5,
        atol=1e-6,
    )


def test_parse_bytes():
    from keras_adntn.export import parse_bytes

    assert parse_bytes("256K") == 256 * 1024
    assert parse_bytes("1.5M") == 1536 * 1024
    assert parse_bytes("64kb") == 64 * 1024
    assert parse_bytes(1000) == 1000
    assert parse_bytes(None) is None
    with pytest.raises(ValueError, match="`sram`"):
        parse_bytes(True, "sram")


def test_int8_plan_through_subprocess(tmp_path):
    """The route of the jax / torch backends (forced under TensorFlow) for
    an int8 export of the default plan: an mpo TNMultiHeadAttention and
    an mpo TNDense, calibrated on samples written by this process.
    Regression caught: calibration samples mangled on the way (a
    mis-calibrated int8 model departs from Keras), the plan lost (the
    report says which deployment each layer took), or the contraction
    left in float32."""
    from keras_adntn import TNMultiHeadAttention
    from keras_adntn.export import remote
    from keras_adntn.export.options import ExportOptions

    inputs = keras.Input((4, 64))
    h = TNMultiHeadAttention(2, 16, network="mpo", seed=0)(inputs, inputs)
    dense = TNDense(256, network="mpo", activation="relu", seed=1)
    model = keras.Model(inputs, dense(h))
    data = _inputs((32, 4, 64))
    path = str(tmp_path / "m.tflite")
    kwargs = dict(quantize="int8", representative_dataset=data)
    if BACKEND == "tensorflow":
        report = remote.export_in_subprocess(
            model, path, ExportOptions(**kwargs)
        )
    else:
        report = export_litert(model, path, **kwargs)
    assert report.route == "subprocess" and report.mode == "auto"
    assert [row["layer"] for row in report.deployment] == [dense.name]
    assert report.deployment[0]["chosen"]["kind"] == "factorized"
    _assert_builtin_tflm(report)
    # int8 on TFLM and LiteRT, calibrated on this process's samples
    assert report.tflm_parity_rel_error < 0.1
    assert _rel_error(model, report.path, data[:1]) < 0.1


def test_export_through_subprocess(tmp_path):
    """The route of the jax / torch backends (forced under TensorFlow),
    with an arena budget: the tiles and the TFLM numbers come back."""
    from keras_adntn.export import remote
    from keras_adntn.export.options import ExportOptions

    model = keras.Sequential(
        [keras.Input((64,)), TNDense(64, activation="relu", seed=7)]
    )
    path = str(tmp_path / "m.tflite")
    kwargs = dict(mode="on_the_fly", arena_budget=32 * 1024)
    if BACKEND == "tensorflow":
        report = remote.export_in_subprocess(
            model, path, ExportOptions(**kwargs)
        )
    else:
        report = export_litert(model, path, **kwargs)
    assert report.route == "subprocess"
    assert report.mode == "on_the_fly"
    _assert_builtin_tflm(report)
    assert report.within_budget, report.tflm_arena_bytes
    assert report.tiles[model.layers[0].name] >= 4
    assert report.parity_rel_error <= PARITY
    assert _rel_error(model, report.path, _inputs((1, 64))) <= PARITY
