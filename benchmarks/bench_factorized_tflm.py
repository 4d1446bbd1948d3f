"""Factorized execution on TensorFlow Lite Micro (issue 21's device goals).

`export_litert(mode="factorized")` writes an MPO `TNDense` as its input
contracted with block matrices of its cores (FULLY_CONNECTED / RESHAPE /
TRANSPOSE, no kernel). Every number is measured on TFLite Micro's own
interpreter (as `bench_tflm.py`): flash = file bytes (and the layer's
constants without its bias), arena = the smallest that runs, latency = host
time per invoke with TFLM's reference kernels, as a ratio to the Dense twin
(the same model exported cached int8), error = max|TFLM - Keras| /
max|Keras| on one input. Biases are random (a zero bias would be dropped
by the converter and flatter the flash).

Run: `KERAS_BACKEND=tensorflow python benchmarks/bench_factorized_tflm.py`
(about 5 minutes on 2 cores; `--quick` skips the 4096 layer). Writes
`benchmarks/results/factorized_tflm.md` and `.json`.

Goals, each printed MET or MISSED:
- `4096 -> TNDense(4096, mpo)`: layer flash <= 16 KB, arena <= 96 KB,
  latency <= 0.25x the twin;
- `1024 -> TNDense(1024, mpo)`: arena <= 32 KB, latency <= 0.5x the twin;
- int8: error <= 1.5x the cached int8 export's (same model, same input);
- ttn `1024 -> TNDense(1024)` in 64 KB: latency <= 20x the twin (the
  factorized export: a constant head in tiles; the on-the-fly row for
  reference);
- the conv model (16x16x32 -> 64 filters 3x3) with an mpo generator within
  192 KB of arena, the attention model (16x64, 4 heads x 16) within 64 KB.
"""

import argparse
import json
import os
import sys
import tempfile
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_adntn import TNConv2D  # noqa: E402
from keras_adntn import TNDense  # noqa: E402
from keras_adntn import TNMultiHeadAttention  # noqa: E402
from keras_adntn.export import export_litert  # noqa: E402

KB = 1024
RESULTS = os.path.join(os.path.dirname(__file__), "results")


def dense(width, **kwargs):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((width,)),
            TNDense(
                width, seed=0, bias_initializer="random_normal", **kwargs
            ),
        ]
    )


def conv(**kwargs):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((16, 16, 32)),
            TNConv2D(
                64, 3, padding="same", activation="relu", seed=0, **kwargs
            ),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ]
    )


def attention(**kwargs):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 64))
    x = TNMultiHeadAttention(4, 16, seed=0, **kwargs)(inputs, inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def _export(model, path, mode, quantize=None, budget=None):
    data = None
    if quantize == "int8":
        shape = tuple(model.inputs[0].shape)[1:]
        data = np.random.default_rng(1).standard_normal((64, *shape))
        data = data.astype("float32")
    return export_litert(
        model,
        path,
        mode=mode,
        quantize=quantize,
        representative_dataset=data,
        arena_budget=budget,
    )


def _row(name, report, twin=None, bias=0):
    """One table row; `bias`: the layer's bias entries (not counted in
    `layer_stored_without_bias`)."""
    layer = next(x for x in report.layers if x.class_name.startswith("TN"))
    bias = 4 * int(bias)
    return {
        "name": name,
        "mode": report.mode,
        "quantize": report.quantize,
        "flash": report.file_bytes,
        "layer_stored": layer.stored_bytes,
        "layer_stored_without_bias": layer.stored_bytes - bias,
        "arena": report.tflm_arena_bytes,
        "latency_s": report.tflm_latency_s,
        "latency_ratio": None
        if twin is None or report.tflm_latency_s is None
        else report.tflm_latency_s / twin.tflm_latency_s,
        "error": report.tflm_parity_rel_error,
        "ops": report.ops,
        "tiles": report.tiles,
    }


def _verdict(goals, text, value, bound):
    ok = value is not None and value <= bound
    goals.append(f"{'MET' if ok else 'MISSED'}: {text}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip 4096")
    args = parser.parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        sys.exit("run with KERAS_BACKEND=tensorflow (in-process conversion)")
    warnings.simplefilter("ignore")
    tmp = tempfile.mkdtemp(prefix="bench_factorized_tflm_")
    rows, goals = [], []
    widths = [1024] if args.quick else [1024, 4096]
    for width in widths:
        model = dense(width, network="mpo")
        name = f"{width} -> TNDense({width}, mpo)"
        twin = _export(model, os.path.join(tmp, f"t{width}"), "cached", "int8")
        fac = _export(model, os.path.join(tmp, f"f{width}"), "factorized")
        fac8 = _export(
            model, os.path.join(tmp, f"f8{width}"), "factorized", "int8"
        )
        fly = _export(
            model, os.path.join(tmp, f"o{width}"), "on_the_fly", budget="96K"
        )
        for label, report in [
            ("Dense twin (cached int8)", twin),
            ("factorized float32", fac),
            ("factorized int8", fac8),
            ("on the fly float32 (tiled generation)", fly),
        ]:
            row = _row(f"{name}: {label}", report, twin, bias=width)
            rows.append(row)
            print(row["name"], {k: row[k] for k in (
                "flash", "layer_stored_without_bias", "arena",
                "latency_ratio", "error")}, flush=True)
        r = rows[-3]
        if width == 4096:
            _verdict(
                goals,
                f"{name} layer flash without bias "
                f"{r['layer_stored_without_bias'] / KB:.1f} KB <= 16 KB "
                f"(file {r['flash'] / KB:.1f} KB with its 16 KB bias)",
                r["layer_stored_without_bias"],
                16 * KB,
            )
            _verdict(
                goals,
                f"{name} arena {r['arena'] / KB:.1f} KB <= 96 KB",
                r["arena"],
                96 * KB,
            )
            _verdict(
                goals,
                f"{name} latency {r['latency_ratio']:.3f}x twin <= 0.25x",
                r["latency_ratio"],
                0.25,
            )
        else:
            _verdict(
                goals,
                f"{name} arena {r['arena'] / KB:.1f} KB <= 32 KB",
                r["arena"],
                32 * KB,
            )
            _verdict(
                goals,
                f"{name} latency {r['latency_ratio']:.3f}x twin <= 0.5x",
                r["latency_ratio"],
                0.5,
            )
        err8, err_twin = rows[-2]["error"], rows[-4]["error"]
        _verdict(
            goals,
            f"{name} int8 error {err8:.2e} <= 1.5x cached int8's "
            f"{err_twin:.2e}",
            err8,
            1.5 * err_twin,
        )
    # the nonlinear default: a constant head in tiles (factorized), and
    # the tiled generation (on the fly); then the conv / attention models
    model = dense(1024)
    twin = _export(model, os.path.join(tmp, "ttwin"), "cached", "int8")
    rows.append(_row("1024 -> TNDense(1024) ttn: Dense twin", twin, twin))
    fly = _export(model, os.path.join(tmp, "tfly"), "on_the_fly", budget="64K")
    rows.append(_row("1024 -> TNDense(1024) ttn: on the fly, 64K", fly, twin))
    fac = _export(model, os.path.join(tmp, "tfac"), "factorized", budget="64K")
    row = _row("1024 -> TNDense(1024) ttn: factorized (head), 64K", fac, twin)
    rows.append(row)
    _verdict(
        goals,
        f"ttn 1024 factorized latency {row['latency_ratio']:.1f}x twin "
        f"<= 20x within 64 KB (arena {row['arena'] / KB:.1f} KB; flash "
        f"{row['flash'] / KB:.0f} KB, on the fly {rows[-2]['flash'] / KB:.0f}"
        f" KB at {rows[-2]['latency_ratio']:.0f}x)",
        row["latency_ratio"]
        if row["arena"] is not None and row["arena"] <= 64 * KB
        else None,
        20,
    )
    for name, make, bound in [
        ("conv 16x16x32 -> TNConv2D(64, 3x3, mpo)", conv, 192),
        ("attention 16x64 -> TNMultiHeadAttention(4x16, mpo)", attention, 64),
    ]:
        model = make(network="mpo")
        path = os.path.join(tmp, name[:4])
        twin = _export(model, path + "twin", "cached", "int8")
        rows.append(_row(f"{name}: Dense twin (cached int8)", twin, twin))
        report = _export(model, path, "factorized", budget=f"{bound}K")
        row = _row(f"{name}: factorized float32", report, twin)
        rows.append(row)
        _verdict(
            goals,
            f"{name} arena {row['arena'] / KB:.1f} KB <= {bound} KB",
            row["arena"],
            bound * KB,
        )
    lines = [
        "# Factorized execution on TFLite Micro",
        "",
        "| model: deployment | flash | layer constants w/o bias | arena | "
        "latency vs twin | error |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = r["latency_ratio"]
        ratio = "" if ratio is None else f"{ratio:.3f}x"
        lines.append(
            f"| {r['name']} | {r['flash'] / KB:.1f} KB | "
            f"{r['layer_stored_without_bias'] / KB:.1f} KB | "
            f"{(r['arena'] or 0) / KB:.1f} KB | {ratio} | "
            f"{r['error']:.1e} |"
        )
    lines += ["", "## Goals", ""] + [f"- {g}" for g in goals]
    text = "\n".join(lines)
    print(text)
    os.makedirs(RESULTS, exist_ok=True)
    stem = os.path.join(RESULTS, "factorized_tflm")
    with open(stem + ".json", "w") as f:
        json.dump({"rows": rows, "goals": goals}, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
