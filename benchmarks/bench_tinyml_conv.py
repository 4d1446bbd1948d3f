"""MLPerf Tiny conv structures on TensorFlow Lite Micro: TN vs int8 reference.

Two MLPerf Tiny reference structures, trained on generated data (nothing
downloads) once with Conv2D layers (the int8 reference) and once with
their big convolutions `TNConv2D` (`--network`, default mpo):

- image classification, ResNet-8 (32x32x3; a 3x3 16-channel stem, three
  residual stages of 16, 32 and 64 channels): the stages' 3x3
  convolutions become `TNConv2D`;
- keyword spotting, DS-CNN (49x10 MFCC; a 10x4 64-channel stem, four
  depthwise-separable blocks): the stem and the 1x1 pointwise
  convolutions become `TNConv2D`.

The images are 10 classes of oriented gratings at random phases plus
noise; the "keywords" 12 classes of time-frequency textures plus noise.
The TN model is exported twice: with the default arena (256 KB) and
with the reference's measured arena as `arena_budget`.
Both models are exported int8 with the defaults (`export_litert(model,
path, quantize="int8", representative_dataset=...)`) and run whole on
TFLM: flash, arena, latency (ratio to the reference), int8 error
(max|TFLM - Keras| / max|Keras| on the logits) and accuracy on TFLM.

Run: `KERAS_BACKEND=tensorflow python benchmarks/bench_tinyml_conv.py
[--quick] [--network mpo]`. Writes `benchmarks/results/tinyml_conv_<network>.md`
and `.json`.

Goal (issue "Export for the board"), printed MET or MISSED: flash <= 0.5x
the int8 reference at an arena <= the reference's.
"""

import argparse
import os
import sys
import tempfile
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

from keras_adntn import TNConv2D  # noqa: E402
from keras_adntn.export import export_litert  # noqa: E402
from keras_adntn.export import tflm  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_tinyml_models import write_results  # noqa: E402

KB = 1024


def gratings(n, seed=0):
    """32x32x3 images of 10 classes: a grating at the class's angle."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    u, v = np.meshgrid(np.linspace(-1, 1, 32), np.linspace(-1, 1, 32))
    angle = y[:, None, None] * np.pi / 10
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    wave = np.sin(8 * (u * np.cos(angle) + v * np.sin(angle)) + phase)
    colour = rng.uniform(0.5, 1.0, (n, 1, 1, 3))
    x = wave[..., None] * colour + 0.5 * rng.standard_normal((n, 32, 32, 3))
    return x.astype("float32"), y


def keywords(n, seed=0):
    """49x10x1 "MFCC" maps of 12 classes: a local time-frequency texture
    (a grating whose two frequencies the class sets) at a random phase
    plus noise (what global average pooling can tell apart)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 12, n)
    t = np.arange(49)[None, :, None]
    f = np.arange(10)[None, None, :]
    along_t = (0.3 + 0.35 * (y % 4))[:, None, None]
    along_f = (0.4 + 0.8 * (y // 4))[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    x = np.sin(along_t * t + along_f * f + phase)
    x = x + 0.5 * rng.standard_normal((n, 49, 10))
    return x[..., None].astype("float32"), y


def _conv(tn, network, filters, size, strides=1):
    if tn:
        return TNConv2D(
            filters, size, strides=strides, padding="same", network=network
        )
    return layers.Conv2D(filters, size, strides=strides, padding="same")


def resnet8(tn, network):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = layers.ReLU()(layers.Conv2D(16, 3, padding="same")(inputs))
    for filters, strides in ((16, 1), (32, 2), (64, 2)):
        y = layers.ReLU()(_conv(tn, network, filters, 3, strides)(x))
        y = _conv(tn, network, filters, 3)(y)
        if strides > 1:
            x = layers.Conv2D(filters, 1, strides=strides)(x)
        x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x))


def ds_cnn(tn, network):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((49, 10, 1))
    x = _conv(tn, network, 64, (10, 4), 2)(inputs)
    x = layers.ReLU()(x)
    for _ in range(4):
        x = layers.ReLU()(layers.DepthwiseConv2D(3, padding="same")(x))
        x = layers.ReLU()(_conv(tn, network, 64, 1)(x))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(12)(x))


def train(model, data, epochs):
    (x, y), _ = data
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def measure(name, model, data, tmp, arena_budget=None):
    (x, _), (x_test, y_test) = data
    path = os.path.join(tmp, f"{name}.tflite")
    report = export_litert(
        model,
        path,
        quantize="int8",
        representative_dataset=x[:200],
        arena_budget=arena_budget,
    )
    with open(path, "rb") as f:
        got = tflm.predict(f.read(), x_test)
    want = model.predict(x_test, verbose=0)
    return {
        "model": name,
        "params": int(model.count_params()),
        "flash": report.file_bytes,
        "arena": report.tflm_arena_bytes,
        "latency_s": report.tflm_latency_s,
        "int8_error": float(np.abs(got - want).max() / np.abs(want).max()),
        "accuracy_tflm": float((got.argmax(1) == y_test).mean()),
        "accuracy_keras": float((want.argmax(1) == y_test).mean()),
        "plan": report.deployment_lines,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs")
    parser.add_argument("--network", default="mpo")
    args = parser.parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        sys.exit("run with KERAS_BACKEND=tensorflow (in-process conversion)")
    warnings.simplefilter("ignore")
    epochs = 2 if args.quick else 8
    tmp = tempfile.mkdtemp(prefix="bench_tinyml_conv_")
    structures = (
        ("ResNet-8", resnet8, gratings, 2000),
        ("DS-CNN", ds_cnn, keywords, 2000),
    )
    lines = [
        f"# MLPerf Tiny conv structures on TFLM ({args.network}, {epochs} "
        f"epochs, int8, export defaults)",
        "",
        "| structure | model | params | flash KB | arena KB | latency "
        "| int8 error | accuracy TFLM (Keras) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    goals, results = [], []
    for label, build, make, n in structures:
        data = (make(n, seed=0), make(500, seed=1))
        ref = measure(
            f"{label} int8 reference",
            train(build(False, None), data, epochs),
            data,
            tmp,
        )
        model = train(build(True, args.network), data, epochs)
        tn = measure(f"{label} {args.network}", model, data, tmp)
        fit = measure(
            f"{label} {args.network}, arena_budget = the reference's",
            model,
            data,
            tmp,
            arena_budget=ref["arena"],
        )
        rows = [ref, tn, fit]
        results += rows
        for r in rows:
            print({k: v for k, v in r.items() if k != "plan"}, flush=True)
            lines.append(
                f"| {label} | {r['model']} | {r['params']:,} | "
                f"{r['flash'] / KB:.1f} | {r['arena'] / KB:.1f} | "
                f"{r['latency_s'] / ref['latency_s']:.2f}x | "
                f"{r['int8_error']:.3f} | {r['accuracy_tflm']:.3f} "
                f"({r['accuracy_keras']:.3f}) |"
            )
        for r in (tn, fit):
            ok = r["flash"] <= 0.5 * ref["flash"] and r["arena"] <= ref["arena"]
            goals.append(
                f"- {'MET' if ok else 'MISSED'}: {r['model']}: flash "
                f"{r['flash'] / ref['flash']:.2f}x the reference (<= 0.5x), "
                f"arena {r['arena'] / KB:.1f} KB (reference "
                f"{ref['arena'] / KB:.1f} KB)"
            )
    lines += ["", "Goals:"] + goals
    for r in results[1::3] + results[2::3]:
        lines += ["", f"Deployment plan of {r['model']}:", "```"]
        lines += r["plan"] + ["```"]
    write_results(f"tinyml_conv_{args.network}", "\n".join(lines), results)


if __name__ == "__main__":
    main()
