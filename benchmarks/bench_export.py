"""LiteRT export benchmark: file size and interpreter latency (SPEC §9).

Two workloads:

- digits: sklearn `load_digits` (8x8 images, 64 features), an MLP
  `Input(64) -> TNDense(256, relu, bond_dim=4) -> Dense(10)` against the
  same MLP with a `keras.layers.Dense(256)`; accuracy on a held-out 30 %.
  A third MLP trains the TNDense with `kernel_quantization="int8"`
  (quantisation-aware training) for the "cached int8 (QAT)" row.
- 4096: one `TNDense(4096)` on a 4096-dim input (176 core parameters plus
  the 4096 bias) against `keras.layers.Dense(4096)`.

Every model is exported with `keras_adntn.export.export_litert` and run with
`ai_edge_litert`'s interpreter (batch 1, `--threads` threads, median of
`--repeats` invocations after one warm-up). Columns: file size, the size
relative to the dense float export, accuracy (digits), the arena lower
bound of the report (peak live activations), latency, and whether every op
is a TFLite Micro builtin within its rank limits.

Run: `KERAS_BACKEND=tensorflow python benchmarks/bench_export.py`
(`--skip-4096` for the quick part only).
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from keras_adntn import TNDense  # noqa: E402
from keras_adntn.export import export_litert  # noqa: E402


def latency_ms(path, x, repeats, threads):
    interpreter = Interpreter(model_path=path, num_threads=threads)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def accuracy(path, x, y, threads):
    interpreter = Interpreter(model_path=path, num_threads=threads)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    out = interpreter.get_output_details()[0]["index"]
    return float(np.mean(np.argmax(interpreter.get_tensor(out), -1) == y))


def digits_models(epochs):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=0
    )
    models = {}
    for name, hidden in [
        ("dense", keras.layers.Dense(256, activation="relu")),
        ("tn", TNDense(256, activation="relu", bond_dim=4, seed=0)),
        (
            "tn_qat",
            TNDense(
                256,
                activation="relu",
                bond_dim=4,
                seed=0,
                kernel_quantization="int8",
            ),
        ),
    ]:
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((64,)), hidden, keras.layers.Dense(10)]
        )
        model.compile(
            keras.optimizers.Adam(1e-3 if name == "dense" else 1e-2),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
        acc = float(
            np.mean(np.argmax(model.predict(x_test, verbose=0), -1) == y_test)
        )
        models[name] = (model, acc)
    return models, x_train, x_test, y_test


def run_case(rows, label, model, path, x1, args, extra=None, **kwargs):
    start = time.perf_counter()
    report = export_litert(model, path, **kwargs)
    export_s = time.perf_counter() - start
    row = {
        "workload": label,
        "variant": extra or kwargs.get("mode", "cached"),
        "bytes": report.file_bytes,
        "params": report.params,
        "peak_act": report.peak_activation_bytes,
        "tflm": "yes" if report.tflm_compatible else "NO",
        "latency_ms": latency_ms(path, x1, args.repeats, args.threads),
        "export_s": export_s,
        "report": report,
    }
    rows.append(row)
    print(
        f"  {label:7s} {row['variant']:22s} {row['bytes']:>12,d} bytes  "
        f"{row['latency_ms']:10.4f} ms  (export {export_s:.1f} s)",
        flush=True,
    )
    return row


def print_table(rows):
    base = {}
    for row in rows:
        if row["variant"] == "dense":
            base[row["workload"]] = row["bytes"]
    header = (
        f"{'workload':8s} {'variant':22s} {'params':>10s} {'file bytes':>12s} "
        f"{'x dense':>8s} {'acc':>6s} {'peak act B':>12s} {'lat ms':>9s} "
        f"{'TFLM':>5s}"
    )
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        ratio = row["bytes"] / base.get(row["workload"], row["bytes"])
        acc = row.get("acc")
        acc = f"{100 * acc:5.1f}%" if acc is not None else "     -"
        print(
            f"{row['workload']:8s} {row['variant']:22s} {row['params']:>10,d} "
            f"{row['bytes']:>12,d} {ratio:8.4f} {acc:>6s} "
            f"{row['peak_act']:>12,d} {row['latency_ms']:9.4f} "
            f"{row['tflm']:>5s}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-4096", action="store_true")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        print("digits: training the dense and the TN MLP ...", flush=True)
        models, x_train, x_test, y_test = digits_models(args.epochs)
        x1 = x_test[:1]
        calib = x_train[:200]
        dense, dense_acc = models["dense"]
        tn, tn_acc = models["tn"]
        qat, qat_acc = models["tn_qat"]
        cases = [
            (dense, "dense", {"mode": "cached"}, dense_acc),
            (dense, "dense int8", {"quantize": "int8"}, dense_acc),
            (tn, "cached", {"mode": "cached"}, tn_acc),
            (tn, "cached float16", {"quantize": "float16"}, tn_acc),
            (tn, "cached int8", {"quantize": "int8"}, tn_acc),
            (qat, "cached int8 (QAT)", {"quantize": "int8"}, qat_acc),
            (tn, "on_the_fly", {"mode": "on_the_fly"}, tn_acc),
            (
                tn,
                "on_the_fly int8",
                {"mode": "on_the_fly", "quantize": "int8"},
                tn_acc,
            ),
        ]
        print(
            f"  Keras accuracy: dense {dense_acc:.4f}, TN {tn_acc:.4f}, "
            f"TN trained with kernel_quantization='int8' {qat_acc:.4f}"
        )
        for k, (model, variant, kwargs, keras_acc) in enumerate(cases):
            if kwargs.get("quantize") == "int8":
                kwargs["representative_dataset"] = calib
            path = os.path.join(tmp, f"digits_{k}.tflite")
            row = run_case(
                rows, "digits", model, path, x1, args, variant, **kwargs
            )
            row["acc"] = accuracy(path, x_test, y_test, args.threads)
            row["keras_acc"] = keras_acc
        if not args.skip_4096:
            print("4096: exports (the cached / dense ones take a while) ...")
            keras.utils.set_random_seed(0)
            tn = keras.Sequential([keras.Input((4096,)), TNDense(4096, seed=0)])
            dense = keras.Sequential(
                [keras.Input((4096,)), keras.layers.Dense(4096)]
            )
            rng = np.random.default_rng(0)
            x1 = rng.standard_normal((1, 4096)).astype("float32")
            calib = rng.standard_normal((32, 4096)).astype("float32")
            cases = [
                (dense, "dense", {"mode": "cached"}),
                (tn, "cached", {"mode": "cached"}),
                (tn, "cached int8", {"quantize": "int8"}),
                (tn, "on_the_fly", {"mode": "on_the_fly"}),
                (
                    tn,
                    "on_the_fly stripped",
                    {"mode": "on_the_fly", "strip_strings": True},
                ),
                (
                    tn,
                    "on_the_fly int8",
                    {"mode": "on_the_fly", "quantize": "int8"},
                ),
            ]
            for k, (model, variant, kwargs) in enumerate(cases):
                if kwargs.get("quantize") == "int8":
                    kwargs["representative_dataset"] = calib
                path = os.path.join(tmp, f"big_{k}.tflite")
                run_case(rows, "4096", model, path, x1, args, variant, **kwargs)
                os.remove(path)
    print_table(rows)
    print(
        "\nacc: accuracy of the exported model on the digits test split "
        "(Keras: dense "
        f"{dense_acc:.4f}, TN {tn_acc:.4f}). peak act B: the report's arena "
        "lower bound (largest total of live activations).\n"
        f"latency: median of {args.repeats} interpreter invocations, batch "
        f"1, {args.threads} thread(s)."
    )
    bound = [r for r in rows if r["workload"] == "4096"]
    for row in bound:
        if row["variant"] == "on_the_fly":
            limit = 4 * row["params"] + 32 * 1024
            print(
                f"4096 on_the_fly: {row['bytes']:,} bytes <= 4 x "
                f"{row['params']:,} params + 32 KiB = {limit:,}: "
                f"{row['bytes'] <= limit}"
            )
    for row in rows:
        if row["variant"] in ("on_the_fly int8", "cached int8"):
            print(f"\n{row['workload']} {row['variant']}:\n{row['report']}")


if __name__ == "__main__":
    main()
