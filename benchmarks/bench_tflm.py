"""On the microcontroller: flash, arena and latency on TensorFlow Lite Micro.

Every number comes from running the exported file on TFLite Micro's own
interpreter (`pip install tflite-micro`): flash = the file's size, arena =
the smallest `arena_size` with which the interpreter allocates and runs the
model, latency = host time per invoke with TFLM's reference kernels, as a
ratio to the Dense twin (the same model exported cached int8: what Dense /
Conv2D layers of the same shapes cost). Error = max|TFLM - Keras| /
max|Keras| on one input.

Run: `KERAS_BACKEND=tensorflow python benchmarks/bench_tflm.py [--quick]`
(a few minutes on 2 CPU cores; `--quick` skips the 4096 layer). Writes
`benchmarks/results/tflm.md` and `.json`.

Goals (issue "On the microcontroller"), each printed MET or MISSED:
- `1024 -> TNDense(1024)`: flash <= 64 KB, arena <= 64 KB, error <= 1e-4;
- `4096 -> TNDense(4096)`: flash <= 128 KB, arena <= 256 KB, error <= 1e-4;
- a TNConv2D and a TNMultiHeadAttention model within budgets stated here.
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

from keras_adntn import TNConv2D  # noqa: E402
from keras_adntn import TNDense  # noqa: E402
from keras_adntn import TNMultiHeadAttention  # noqa: E402
from keras_adntn.export import compare_deployments  # noqa: E402
from keras_adntn.export import export_litert  # noqa: E402

KB = 1024
RESULTS = os.path.join(os.path.dirname(__file__), "results")


def dense_model(width, out=None, **kwargs):
    layers = [keras.Input((width,)), TNDense(width, seed=0, **kwargs)]
    if out:
        layers.append(keras.layers.Dense(out))
    return keras.Sequential(layers)


def conv_model():
    return keras.Sequential(
        [
            keras.Input((16, 16, 32)),
            TNConv2D(64, 3, padding="same", activation="relu", seed=0),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ]
    )


def attention_model():
    inputs = keras.Input((16, 64))
    x = TNMultiHeadAttention(4, 16, seed=0)(inputs, inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def goal(name, report, flash, arena, error=1e-4):
    checks = [
        ("flash", report.file_bytes, flash),
        ("arena", report.tflm_arena_bytes, arena),
    ]
    parts, met = [], True
    for what, value, bound in checks:
        ok = value is not None and value <= bound
        met &= ok
        parts.append(f"{what} {value / KB:,.1f} KB (<= {bound / KB:,.0f} KB)")
    err = report.tflm_parity_rel_error
    ok = err is not None and err <= error
    met &= ok
    parts.append(f"error {err:.1e} (<= {error:g})")
    verdict = "MET" if met else "MISSED"
    line = f"{verdict:<6} {name}: " + ", ".join(parts)
    if report.tiles:
        line += f"; tiles {report.tiles}"
    print(line, flush=True)
    return dict(
        name=name,
        verdict=verdict,
        flash=report.file_bytes,
        arena=report.tflm_arena_bytes,
        error=err,
        latency_s=report.tflm_latency_s,
        tiles=report.tiles,
        flash_goal=flash,
        arena_goal=arena,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip 4096")
    args = parser.parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        sys.exit("run with KERAS_BACKEND=tensorflow (in-process conversion)")
    warnings.simplefilter("ignore")
    keras.utils.set_random_seed(0)
    tmp = tempfile.mkdtemp(prefix="bench_tflm_")
    tables, goals = {}, []

    print("== every deployment mode, measured on TFLite Micro", flush=True)
    for name, model, budget in [
        ("64 -> TNDense(256, relu) -> Dense(10)", None, "32K"),
        ("1024 -> TNDense(1024, relu) -> Dense(10)", None, "128K"),
    ]:
        width_in = 64 if name.startswith("64") else 1024
        width = 256 if width_in == 64 else 1024
        model = keras.Sequential(
            [
                keras.Input((width_in,)),
                TNDense(width, activation="relu", seed=0),
                keras.layers.Dense(10),
            ]
        )
        table = compare_deployments(
            model, os.path.join(tmp, str(width)), arena_budget=budget
        )
        print(f"\n{name}\n{table}\n", flush=True)
        tables[name] = table.to_dict()

    print("== goals", flush=True)
    cases = [
        ("1024 -> TNDense(1024)", dense_model(1024), "64K", 64, 64),
        (
            "1024 -> TNDense(1024, latent_order='legacy') (0.1.0 default "
            "tree, roots of 7/7/6 leaves)",
            dense_model(1024, latent_order="legacy"),
            "64K",
            64,
            64,
        ),
        (
            "1024 -> TNDense(1024, network='mpo')",
            dense_model(1024, network="mpo"),
            "64K",
            64,
            64,
        ),
    ]
    if not args.quick:
        cases.append(
            ("4096 -> TNDense(4096)", dense_model(4096), "256K", 128, 256)
        )
    cases += [
        (
            "16x16x32 -> TNConv2D(64, 3x3) -> pool -> Dense(10)",
            conv_model(),
            "256K",
            64,
            256,
        ),
        (
            "16x64 -> TNMultiHeadAttention(4 heads x 16) -> pool -> Dense",
            attention_model(),
            "256K",
            128,
            256,
        ),
    ]
    for name, model, budget, flash_kb, arena_kb in cases:
        report = export_litert(
            model,
            os.path.join(tmp, f"goal{len(goals)}.tflite"),
            mode="on_the_fly",
            arena_budget=budget,
        )
        row = goal(name, report, flash_kb * KB, arena_kb * KB)
        row["dense_params"] = int(
            sum(getattr(layer, "dense_params", 0) for layer in model.layers)
        )
        goals.append(row)

    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "tflm.json"), "w") as f:
        json.dump({"tables": tables, "goals": goals}, f, indent=1)
    with open(os.path.join(RESULTS, "tflm.md"), "w") as f:
        f.write(_markdown(tables, goals))
    print(f"\nwrote {os.path.join(RESULTS, 'tflm.md')}")


def _markdown(tables, goals):
    lines = ["# TensorFlow Lite Micro: measured", ""]
    for name, table in tables.items():
        lines += [
            f"## {name}",
            "",
            "| deployment | flash | arena (TFLM) | latency vs twin | error |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in table["rows"]:
            ratio = row["latency_ratio"]
            lines.append(
                f"| {row['label']} | {row['flash_bytes'] / KB:,.1f} KB | "
                f"{row['arena_bytes'] / KB:,.1f} KB | "
                f"{'-' if ratio is None else f'{ratio:.2f}x'} | "
                f"{row['parity_rel_error']:.1e} |"
            )
        budget = table["arena_budget"]
        lines += ["", f"On-the-fly arena budget: {budget / KB:.0f} KB.", ""]
    lines += [
        "## Goals (on the fly)",
        "",
        "| model | flash | arena | error | tiles | verdict |",
        "|---|---:|---:|---:|---|---|",
    ]
    for row in goals:
        lines.append(
            f"| {row['name']} | {row['flash'] / KB:,.1f} KB "
            f"(<= {row['flash_goal'] / KB:.0f}) | "
            f"{row['arena'] / KB:,.1f} KB (<= {row['arena_goal'] / KB:.0f}) "
            f"| {row['error']:.1e} | {row['tiles'] or 'untiled'} | "
            f"{row['verdict']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
