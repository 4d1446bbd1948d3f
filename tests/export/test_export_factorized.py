"""`export_litert(mode="factorized")`: an MPO TNDense contracted with its
cores on the device (FULLY_CONNECTED / RESHAPE / TRANSPOSE), no kernel.

Runs in-process on the TensorFlow backend (other backends export through
a subprocess, covered in test_export.py).
"""

import keras
import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

from keras_adntn import TNDense  # noqa: E402
from keras_adntn.export import export_litert  # noqa: E402

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason=(
        "in-process LiteRT conversion needs KERAS_BACKEND=tensorflow; under "
        f"{keras.backend.backend()} export goes through a TensorFlow "
        "subprocess, covered once by test_export_through_subprocess"
    ),
)
# the ops of the contraction (no WHILE: nothing is generated; no
# BATCH_MATMUL: TFLM keeps persistent copies of its inputs); PACK / UNPACK
# split generator groups, PAD and STRIDED_SLICE pad and crop digits
CONTRACTION_OPS = {
    "RESHAPE",
    "FULLY_CONNECTED",
    "TRANSPOSE",
    "ADD",
    "PAD",
    "STRIDED_SLICE",
    "PACK",
    "UNPACK",
}


def _model(width=1024, units=1024, network="mpo", **kwargs):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((width,)),
            TNDense(
                units,
                network=network,
                seed=0,
                bias_initializer="random_normal",
                **kwargs,
            ),
        ]
    )


# a file's bytes beyond its constants: ops, tensors, names, metadata
GRAPH_BYTES = 8 * 1024

@pytest.mark.parametrize(
    "shape, kwargs, fraction, arena",
    [
        # the device goal for 1024 -> 1024: arena <= 32 KB
        ((1024, 1024), {}, 1 / 64, 32 * 1024),
        ((100, 48), {"generator_groups": 2}, 1 / 2, 4 * 100 * 48),
    ],
    ids=["1024", "padded-groups"],
)
def test_factorized_export_parity_without_kernel(
    tmp_path, shape, kwargs, fraction, arena
):
    # catches: a kernel (or a block of one) written to the file or made in
    # the arena, or a digit order that differs from Keras's on the device
    model = _model(*shape, **kwargs)
    report = export_litert(model, tmp_path / "m.tflite", mode="factorized")
    assert report.mode == "factorized"
    assert report.builtin_only, report.ops
    assert set(report.ops) <= CONTRACTION_OPS, report.ops
    assert report.max_transpose_rank <= 5
    kernel_bytes = 4 * shape[0] * shape[1]
    layer = report.layers[0]
    # stored: the bias and core-sized blocks (merged sites, at most
    # MAX_DEVICE_BLOCK_ENTRIES numbers each), never the kernel
    assert layer.stored_bytes < 4 * shape[1] + kernel_bytes * fraction
    # ...and the file says the same, whatever layer a constant is
    # attributed to (the graph's own bookkeeping: under 8 KB here)
    bound = 4 * shape[1] + kernel_bytes * fraction + GRAPH_BYTES
    assert report.file_bytes < bound
    assert report.parity_rel_error <= 1e-4
    if report.tflm_arena_bytes is None:
        pytest.skip("tflite-micro is not installed: arena not measured")
    assert report.tflm_parity_rel_error <= 1e-4
    # the arena holds input-sized states (2 bond channels, a few copies),
    # never a kernel
    assert report.tflm_arena_bytes <= arena


def test_factorized_int8_error_within_cached_int8(tmp_path):
    # catches: an int8 factorized export that departs further from Keras
    # than the ordinary int8 model of the same kernel
    model = _model(256, 256)
    data = np.random.default_rng(1).standard_normal((64, 256)).astype(
        "float32"
    )
    errors = {}
    for mode in ("cached", "factorized"):
        report = export_litert(
            model,
            tmp_path / f"{mode}.tflite",
            mode=mode,
            quantize="int8",
            representative_dataset=data,
        )
        errors[mode] = report.parity_rel_error
    assert errors["factorized"] <= 1.5 * errors["cached"], errors


def test_nonlinear_layers_keep_tiled_generation(tmp_path):
    # catches: mode="factorized" changing what an attn layer exports (its
    # gates follow the last level: it must generate on the fly, tiled, as
    # mode="on_the_fly" does)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((256,)), TNDense(256, network="attn", seed=0)]
    )
    fac = export_litert(model, tmp_path / "f.tflite", mode="factorized")
    fly = export_litert(model, tmp_path / "o.tflite", mode="on_the_fly")
    assert fac.ops == fly.ops
    assert fac.tiles == fly.tiles
    assert fac.parity_rel_error <= 1e-4


@pytest.mark.parametrize(
    "shape, kwargs, budget, fraction",
    [
        ((1024, 1024), {}, 64 * 1024, 1 / 8),
        ((100, 48), {"generator_groups": 2}, None, 1 / 2),
    ],
    ids=["1024-64K", "padded-groups"],
)
def test_tree_contracts_with_a_constant_head(
    tmp_path, shape, kwargs, budget, fraction
):
    # catches: a ttn layer still generating its kernel block by block in a
    # WHILE loop in mode="factorized" (80-140x the int8 twin's latency), a
    # head tile or padded / grouped digits in another order than Keras's,
    # a head as large as the kernel, or tiles the converter runs side by
    # side (the arena of all of them at once)
    model = _model(*shape, network="ttn", **kwargs)
    report = export_litert(
        model, tmp_path / "t.tflite", mode="factorized", arena_budget=budget
    )
    assert report.builtin_only, report.ops
    assert set(report.ops) <= CONTRACTION_OPS | {"MUL"}, report.ops
    assert report.parity_rel_error <= 1e-4
    kernel_bytes = 4 * shape[0] * shape[1]
    # the head (a slice of the tree) and the last level's blocks
    assert report.layers[0].stored_bytes < kernel_bytes * fraction
    bound = 4 * shape[1] + kernel_bytes * fraction + GRAPH_BYTES
    assert report.file_bytes < bound  # the file, not only the attribution
    if report.tflm_arena_bytes is None:
        pytest.skip("tflite-micro is not installed: arena not measured")
    assert report.tflm_parity_rel_error <= 1e-4
    if budget is not None:
        assert report.tflm_arena_bytes <= budget


def test_attention_and_conv_contract_in_the_trace(tmp_path):
    # catches: TNMultiHeadAttention / TNConv2D with an mpo generator still
    # generating their kernels on the device in mode="factorized" (their
    # own factorized path must run in the trace, with constant blocks)
    from keras_adntn import TNConv2D
    from keras_adntn import TNMultiHeadAttention

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 32))
    x = TNMultiHeadAttention(2, 8, network="mpo", seed=0)(inputs, inputs)
    attention = keras.Model(inputs, x)
    arenas = {}
    for mode in ("factorized", "on_the_fly"):
        report = export_litert(attention, tmp_path / f"a{mode}.tflite", mode)
        assert report.parity_rel_error <= 1e-4
        arenas[mode] = report.tflm_arena_bytes
    if arenas["factorized"] is None:
        pytest.skip("tflite-micro is not installed: arena not measured")
    # the projections no longer hold a generated kernel in the arena
    assert arenas["factorized"] < arenas["on_the_fly"]
    # both orders: the spatial factor first (fewer input channels), the
    # channel sites first (more)
    for c_in, filters in ((8, 16), (16, 8)):
        conv = keras.Sequential(
            [
                keras.Input((8, 8, c_in)),
                TNConv2D(filters, 3, padding="same", network="mpo", seed=0),
            ]
        )
        path = tmp_path / f"c{c_in}.tflite"
        report = export_litert(conv, path, mode="factorized")
        assert "DEPTHWISE_CONV_2D" in report.ops
        assert "CONV_2D" not in report.ops
        assert report.tflm_parity_rel_error <= 1e-4
        # the contraction is the layer's (its variables are read outside
        # its scope: the report found it by name), not "(other)"
        row = next(r for r in report.layers if r.class_name == "TNConv2D")
        assert {"DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= set(row.ops)
        assert row.stored_bytes > 4 * filters  # block matrices, not bias
