"""Whole TinyML models on TensorFlow Lite Micro: default exports vs int8 Dense.

The MLPerf Tiny anomaly-detection structure (a fully connected
autoencoder 640-128x4-8-128x4-640 on 640 log-mel features), trained on
generated "machine sound" features (nothing downloads: a low-rank
spectral process plus noise; anomalies shift its spectrum), once with
Dense layers (the int8 reference) and once with every Dense a `TNDense`
(`--network`, default ttn). Both are exported int8 with the export's
defaults (`export_litert(model, path, quantize="int8",
representative_dataset=...)`: the deployment plan, a 256 KB arena) and
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
import tempfile
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_adntn import TNDense  # noqa: E402
from keras_adntn.export import export_litert  # noqa: E402

KB = 1024
RESULTS = os.path.join(os.path.dirname(__file__), "results")
FEATURES = 640


def machine_sounds(n, anomalous=False, seed=0):
    """Log-mel-like feature vectors: 8 spectral shapes mixed at random,
    plus noise; anomalies add a shape the normal data never has."""
    rng = np.random.default_rng(seed)
    bins = np.linspace(0.0, 1.0, FEATURES)
    centres = np.random.default_rng(123).uniform(0.05, 0.95, 8)
    shapes = np.exp(-((bins[None] - centres[:, None]) ** 2) / 0.004)
    x = rng.gamma(2.0, 0.5, (n, 8)) @ shapes
    if anomalous:
        extra = np.exp(-((bins - rng.uniform(0.1, 0.9)) ** 2) / 0.002)
        x = x + rng.uniform(0.5, 1.5, (n, 1)) * extra[None]
    x = x + 0.05 * rng.standard_normal((n, FEATURES))
    return np.log1p(np.maximum(x, 0.0)).astype("float32")


def autoencoder(tn, network="ttn", width=128):
    keras.utils.set_random_seed(0)

    def dense(units, activation="relu"):
        if tn:
            return TNDense(units, activation=activation, network=network)
        return keras.layers.Dense(units, activation=activation)

    layers = [keras.Input((FEATURES,))]
    layers += [dense(width) for _ in range(4)] + [dense(8)]
    layers += [dense(width) for _ in range(4)] + [dense(FEATURES, None)]
    return keras.Sequential(layers)


def auc(normal, anomalous):
    """Area under the ROC curve of the anomaly scores."""
    scores = np.concatenate([normal, anomalous])
    labels = np.concatenate([np.zeros(len(normal)), np.ones(len(anomalous))])
    ranks = np.argsort(np.argsort(scores)) + 1.0
    positives = labels.sum()
    negatives = len(labels) - positives
    total = ranks[labels == 1].sum() - positives * (positives + 1) / 2
    return float(total / (positives * negatives))


def tflm_outputs(path, x):
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_file(path, arena_size=4 * 1024**2)
    out = []
    for row in x:
        interpreter.set_input(row[None], 0)
        interpreter.invoke()
        out.append(np.array(interpreter.get_output(0))[0])
    return np.stack(out)


def measure(name, model, x_train, normal, anomalous, tmp, epochs):
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    model.fit(x_train, x_train, epochs=epochs, batch_size=64, verbose=0)
    path = os.path.join(tmp, f"{name}.tflite")
    report = export_litert(
        model, path, quantize="int8", representative_dataset=x_train[:200]
    )
    got_n, got_a = tflm_outputs(path, normal), tflm_outputs(path, anomalous)
    want = model.predict(normal, verbose=0)
    error = float(np.abs(got_n - want).max() / np.abs(want).max())
    score = auc(
        ((got_n - normal) ** 2).mean(1), ((got_a - anomalous) ** 2).mean(1)
    )
    keras_auc = auc(
        ((want - normal) ** 2).mean(1),
        ((model.predict(anomalous, verbose=0) - anomalous) ** 2).mean(1),
    )
    return {
        "model": name,
        "params": int(model.count_params()),
        "flash": report.file_bytes,
        "arena": report.tflm_arena_bytes,
        "latency_s": report.tflm_latency_s,
        "int8_error": error,
        "auc_tflm": score,
        "auc_keras": keras_auc,
        "plan": report.deployment_lines,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs")
    parser.add_argument("--network", default="ttn")
    args = parser.parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        sys.exit("run with KERAS_BACKEND=tensorflow (in-process conversion)")
    warnings.simplefilter("ignore")
    epochs = 5 if args.quick else 30
    x_train = machine_sounds(2000, seed=0)
    normal = machine_sounds(100, seed=1)
    anomalous = machine_sounds(100, anomalous=True, seed=2)
    tmp = tempfile.mkdtemp(prefix="bench_tinyml_")
    rows = []
    for name, tn in (("int8 Dense reference", False), (args.network, True)):
        model = autoencoder(tn, args.network)
        rows.append(
            measure(name, model, x_train, normal, anomalous, tmp, epochs)
        )
        print({k: v for k, v in rows[-1].items() if k != "plan"}, flush=True)
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
    text = "\n".join(lines)
    print(text)
    os.makedirs(RESULTS, exist_ok=True)
    stem = os.path.join(RESULTS, f"tinyml_models_{args.network}")
    with open(stem + ".md", "w") as f:
        f.write(text + "\n")
    with open(stem + ".json", "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
