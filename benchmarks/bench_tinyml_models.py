"""Whole TinyML models on TensorFlow Lite Micro: default exports vs int8 Dense.

The MLPerf Tiny anomaly-detection structure (a fully connected
autoencoder 640-128x4-8-128x4-640 on 640 log-mel features), trained on
generated "machine sound" features (nothing downloads: a low-rank
spectral process plus noise; anomalies add a spectral shape), once with
Dense layers (the int8 reference) and once with every Dense a `TNDense`
(`--network`, default ttn): `examples/tinyml_autoencoder.py`. Both are
exported int8 with the export's defaults (`export_litert(model, path,
quantize="int8", representative_dataset=...)`: the deployment plan, a
256 KB arena) and
run on TFLM's interpreter: flash (file), arena (smallest that runs),
latency (host reference kernels, ratio to the reference), int8 error
(max|TFLM - Keras| / max|Keras|) and the anomaly AUC from TFLM's own
outputs.

Run: `KERAS_BACKEND=tensorflow python benchmarks/bench_tinyml_models.py
[--quick] [--network mpo]` (a few minutes on 2 cores). Writes
`benchmarks/results/tinyml_models_<network>.md` and `.json`.

Goals (issue "Export for the board"), printed MET or MISSED: flash <= 40
KB, arena <= 16 KB, latency <= 1.0x and int8 error <= 1.5x the reference's.
"""

import argparse
import json
import os
import sys
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import importlib.util  # noqa: E402

import keras  # noqa: E402

KB = 1024
HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def _example():
    """`examples/tinyml_autoencoder.py`: the models, data and measurement
    (one home; this script adds the goals and the results files)."""
    path = os.path.join(HERE, os.pardir, "examples", "tinyml_autoencoder.py")
    spec = importlib.util.spec_from_file_location("tinyml_autoencoder", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs")
    parser.add_argument("--network", default="ttn")
    args = parser.parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        sys.exit("run with KERAS_BACKEND=tensorflow (in-process conversion)")
    warnings.simplefilter("ignore")
    epochs = 5 if args.quick else 30
    rows = _example().main(epochs=epochs, network=args.network)
    ref, tn = rows
    ratio = tn["latency_s"] / ref["latency_s"]
    goals = [
        (f"flash {tn['flash'] / KB:.1f} KB <= 40 KB", tn["flash"] <= 40 * KB),
        (f"arena {tn['arena'] / KB:.1f} KB <= 16 KB", tn["arena"] <= 16 * KB),
        (f"latency {ratio:.2f}x the reference <= 1.0x", ratio <= 1.0),
        (
            f"int8 error {tn['int8_error']:.3f} <= 1.5x the reference's "
            f"{ref['int8_error']:.3f}",
            tn["int8_error"] <= 1.5 * ref["int8_error"],
        ),
    ]
    lines = [
        f"# Anomaly-detection autoencoder on TFLM ({args.network}, "
        f"{epochs} epochs)",
        "",
        "| model | params | flash KB | arena KB | latency | int8 error "
        "| AUC (TFLM) | AUC (Keras) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['flash'] / KB:.1f} | "
            f"{r['arena'] / KB:.1f} | {r['latency_s'] / ref['latency_s']:.2f}x"
            f" | {r['int8_error']:.3f} | {r['auc_tflm']:.3f} | "
            f"{r['auc_keras']:.3f} |"
        )
    lines += ["", "Goals:"]
    lines += [f"- {'MET' if ok else 'MISSED'}: {text}" for text, ok in goals]
    lines += ["", "Deployment plan of the TN model:", "```"]
    lines += tn["plan"] + ["```"]
    write_results(f"tinyml_models_{args.network}", "\n".join(lines), rows)


def write_results(stem: str, text: str, rows: list) -> None:
    """Prints `text` and writes it and `rows` under `benchmarks/results/`
    as `<stem>.md` and `<stem>.json` (`bench_tinyml_conv.py` too)."""
    print(text)
    os.makedirs(RESULTS, exist_ok=True)
    stem = os.path.join(RESULTS, stem)
    with open(stem + ".md", "w") as f:
        f.write(text + "\n")
    with open(stem + ".json", "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
