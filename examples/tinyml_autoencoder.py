"""A whole TinyML model on a microcontroller: the MLPerf Tiny anomaly
detector with every Dense layer a `TNDense`, against its int8 Dense self.

The MLPerf Tiny anomaly-detection structure is a fully connected
autoencoder 640-128x4-8-128x4-640 on 640 log-mel features. Here it is
trained on generated "machine sound" features (nothing downloads: a
low-rank spectral process plus noise; anomalies add a spectral shape the
normal data never has), once with Dense layers and once with every Dense
a `TNDense`. Both are exported int8 with the export's defaults (the
deployment plan for a 256 KB arena, `export_litert(model, path,
quantize="int8", representative_dataset=...)`) and run on TensorFlow
Lite Micro's own interpreter (`pip install tflite-micro`): flash, arena,
latency, int8 error, and the anomaly AUC from the device's outputs.

Run: python examples/tinyml_autoencoder.py [--network mpo] [--epochs 30]
"""

import argparse
import os
import tempfile

import keras
import numpy as np

from keras_adntn import TNDense
from keras_adntn.export import export_litert

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
    """The model at `path` run on TFLM's interpreter, sample by sample."""
    from keras_adntn.export import tflm

    with open(path, "rb") as f:
        return tflm.predict(f.read(), x)


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


def main(
    out_dir=None, epochs=30, network="ttn", width=128, samples=2000
) -> list:
    """Trains both models, deploys them and returns one dict per model
    (the int8 Dense reference first)."""
    out_dir = out_dir or tempfile.mkdtemp(prefix="tinyml_autoencoder_")
    x_train = machine_sounds(samples, seed=0)
    normal = machine_sounds(100, seed=1)
    anomalous = machine_sounds(100, anomalous=True, seed=2)
    rows = []
    for name, tn in (("int8 Dense reference", False), (network, True)):
        model = autoencoder(tn, network, width)
        rows.append(
            measure(name, model, x_train, normal, anomalous, out_dir, epochs)
        )
    ref = rows[0]
    print("model                  flash     arena  latency  error    AUC")
    for r in rows:
        flash, arena = r["flash"] / 1024, r["arena"] / 1024
        ratio = r["latency_s"] / ref["latency_s"]
        print(
            f"{r['model']:<20} {flash:7.1f}K {arena:7.1f}K {ratio:7.2f}x "
            f"{r['int8_error']:6.3f} {r['auc_tflm']:6.3f}"
        )
    print("\n".join(rows[1]["plan"]))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="ttn")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main(epochs=args.epochs, network=args.network)
