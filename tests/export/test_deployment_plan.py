"""The per-model deployment plan (`deployment_plan.plan_model`): what a
default export keeps, what budgets buy, what cannot fit, and how close its
estimates come to TensorFlow Lite Micro's measurement."""

import os
import time

import keras
import numpy as np
import pytest

from keras_adntn import TNConv2D
from keras_adntn import TNDense
from keras_adntn.export import export_litert
from keras_adntn.export.deployment_plan import plan_model
from keras_adntn.export.options import DEFAULT_ARENA_BUDGET
from keras_adntn.export.options import ExportOptions

# the estimates against the TFLM measurement: within this factor
ESTIMATE_MARGIN = 2.0


def _model(d_in, units, network="ttn", **kwargs):
    return keras.Sequential(
        [
            keras.Input((d_in,)),
            TNDense(units, network=network, seed=1, **kwargs),
        ]
    )


def _plan(model, **options):
    (layer,) = plan_model(model, ExportOptions(**options)).layers.values()
    return layer


@pytest.mark.parametrize("network", ["ttn", "mpo", "attn", "mera"])
def test_default_plan_keeps_the_compression_within_the_default_arena(
    network,
):
    # planted: the old default (a ttn head as large as the kernel, or an
    # attn kernel generated in two blocks: 4 MB of arena) fails this
    layer = _plan(_model(1024, 1024, network))
    assert layer.chosen.arena_bytes <= DEFAULT_ARENA_BUDGET
    assert layer.chosen.flash_bytes * 8 < layer.twin.flash_bytes
    assert not layer.twin_wins and not layer.note


def test_a_4096_tree_layer_by_default_fits_128k_flash_and_256k_arena():
    layer = _plan(_model(4096, 4096))
    assert layer.chosen.kind == "on_the_fly"
    assert layer.chosen.flash_bytes <= 128 * 1024
    assert layer.chosen.arena_bytes <= 256 * 1024
    rejected = {c.kind for c, _ in layer.rejected}
    assert rejected == {"headed", "cached"}


def test_a_brick_wall_fits_the_arena_only_as_its_kernel_and_says_so():
    model = _model(256, 256, "brickwall")
    layer = _plan(model)
    assert layer.chosen.kind == "cached" and layer.twin_wins
    assert "twin wins" in "\n".join(layer.lines())
    data = np.zeros((4, 256), "float32")
    int8 = _plan(model, quantize="int8", representative_dataset=data)
    assert int8.is_twin and int8.chosen.flash_bytes <= int8.twin.flash_bytes


def test_a_small_layer_is_told_that_the_dense_twin_wins():
    layer = _plan(_model(64, 256))
    assert layer.twin_wins
    text = "\n".join(layer.lines())
    assert "the int8 Dense twin wins here" in text


def test_a_flash_budget_buys_latency():
    model = _model(1024, 1024)
    plans = [
        _plan(model),
        _plan(model, flash_budget="300K"),
        _plan(model, flash_budget="8M"),
    ]
    kinds = [p.chosen.kind for p in plans]
    assert kinds == ["on_the_fly", "headed", "cached"]
    seconds = [p.chosen.seconds for p in plans]
    assert seconds[0] > seconds[1] > seconds[2]
    assert plans[1].chosen.flash_bytes <= 300 * 1024


@pytest.mark.parametrize(
    "mode, kind",
    [
        ("cached", "cached"),
        ("on_the_fly", "on_the_fly"),
        ("factorized", "headed"),
    ],
)
def test_a_layer_mode_overrides_the_plan(mode, kind):
    model = _model(256, 256)
    name = model.layers[0].name
    assert _plan(model, mode={name: mode}).chosen.kind == kind
    assert _plan(model, mode=mode).chosen.kind == kind


@pytest.mark.parametrize(
    "budget, match",
    [
        ({"arena_budget": "2K"}, "arena_budget.*tn_dense.*smallest arena"),
        ({"flash_budget": "1K"}, "flash_budget.*smallest possible"),
    ],
)
def test_an_impossible_budget_raises_before_any_conversion(
    tmp_path, budget, match
):
    model = _model(1024, 1024)
    path = tmp_path / "m.tflite"
    start = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        export_litert(model, path, **budget)
    assert time.perf_counter() - start < 10.0
    assert not os.path.exists(path)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="measured in-process on TensorFlow (the route is the same)",
)
@pytest.mark.parametrize(
    "d_in, units, network",
    [(1024, 1024, "mpo"), (512, 512, "ttn"), (256, 256, "ttn")],
)
def test_the_estimates_are_within_a_factor_of_two_of_tflm(
    tmp_path, d_in, units, network
):
    pytest.importorskip("tflite_micro")
    model = _model(d_in, units, network)
    report = export_litert(model, tmp_path / "m.tflite")
    (row,) = report.deployment
    flash, arena = row["chosen"]["flash_bytes"], row["chosen"]["arena_bytes"]
    margin = ESTIMATE_MARGIN
    assert flash / margin <= report.file_bytes <= flash * margin
    assert arena / margin <= report.tflm_arena_bytes <= arena * margin
    assert report.tflm_arena_bytes <= DEFAULT_ARENA_BUDGET
    assert report.file_bytes < d_in * units  # below the int8 twin


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="measured in-process on TensorFlow (the route is the same)",
)
def test_an_int8_contraction_is_integer_throughout(tmp_path):
    # planted: keeping the contraction's ops in float32 (as a generation
    # is) leaves FULLY_CONNECTED / RESHAPE / TRANSPOSE in float32 and the
    # blocks 4x larger
    pytest.importorskip("tflite_micro")
    model = _model(1024, 1024, "mpo", activation="relu")
    data = np.random.default_rng(0).standard_normal((64, 1024))
    data = data.astype("float32")
    int8 = {"quantize": "int8", "representative_dataset": data}
    twin = export_litert(model, tmp_path / "twin.tflite", mode="cached", **int8)
    tn = export_litert(model, tmp_path / "tn.tflite", **int8)
    assert tn.deployment[0]["chosen"]["kind"] == "factorized"
    assert tn.float_ops == {}  # every op int8 but the input/output casts
    assert tn.file_bytes * 100 < twin.file_bytes
    # measured 0.049 against the twin's 0.060 (4096: 0.028 against 0.060)
    assert tn.tflm_parity_rel_error <= 1.25 * twin.tflm_parity_rel_error


def test_int8_plan_leaves_out_a_kernel_whose_outliers_set_the_scale():
    # planted: without the error weighting, the plan stores this layer as
    # its int8 kernel (the twin's size, faster), whose rounding error is
    # about 4x a Gaussian kernel's
    model = _model(128, 128, activation="relu")
    data = np.random.default_rng(0).standard_normal((8, 128))
    layer = _plan(model, quantize="int8", representative_dataset=data)
    assert layer.chosen.kind != "cached"
    why = dict((c.kind, w) for c, w in layer.rejected)["cached"]
    assert "int8 rounding error" in why
    # with a flash budget that buys speed, the precise plan is kept too
    fast = _plan(
        model, quantize="int8", representative_dataset=data, flash_budget="1M"
    )
    assert fast.chosen.kind != "cached"


def _conv_model(network="mpo", **kwargs):
    conv = TNConv2D(64, 3, padding="same", network=network, seed=1, **kwargs)
    return keras.Sequential([keras.Input((16, 16, 32)), conv])


def test_a_conv_layer_is_planned_with_its_contraction():
    layer = _plan(_conv_model())
    assert layer.chosen.kind == "factorized"
    assert layer.chosen.flash_bytes * 2 < layer.twin.flash_bytes
    assert layer.chosen.arena_bytes <= DEFAULT_ARENA_BUDGET
    assert {c.kind for c, _ in layer.rejected} == {"on_the_fly", "cached"}
    # a tree's conv has no contraction: channel blocks or its kernel
    tree = _plan(_conv_model("ttn"))
    assert tree.chosen.kind in ("on_the_fly", "cached")


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="measured in-process on TensorFlow (the route is the same)",
)
def test_an_int8_conv_contraction_is_integer_throughout(tmp_path):
    # planted: a conv contraction kept in float32 (as a generation is)
    # leaves its FULLY_CONNECTED / DEPTHWISE_CONV_2D ops in float32
    pytest.importorskip("tflite_micro")
    model = _conv_model(activation="relu")
    data = np.random.default_rng(0).standard_normal((32, 16, 16, 32))
    int8 = {"quantize": "int8", "representative_dataset": data}
    twin = export_litert(model, tmp_path / "twin.tflite", mode="cached", **int8)
    tn = export_litert(model, tmp_path / "tn.tflite", **int8)
    assert tn.deployment[0]["chosen"]["kind"] == "factorized"
    assert tn.float_ops == {}
    assert tn.file_bytes * 2 < twin.file_bytes
    # measured: 43.4 KB against 42.0 KB; error 0.0077 against 0.0057
    assert tn.tflm_arena_bytes <= 1.25 * twin.tflm_arena_bytes
    assert tn.tflm_parity_rel_error <= 2.0 * twin.tflm_parity_rel_error
