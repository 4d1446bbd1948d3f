"""Export from the jax and torch backends: convert in a TensorFlow process.

The LiteRT converter needs TensorFlow graphs. Under another Keras backend
`export_litert` saves the model to a temporary `.keras` file and runs
`python -m keras_adntn.export` with `KERAS_BACKEND=tensorflow`, which loads
it and exports it in-process; the report comes back as JSON. The model must
therefore be loadable with `keras.saving.load_model` (built-in and
`keras_adntn` layers are; other custom objects need registering with
`keras.saving.register_keras_serializable` in a module the subprocess
imports).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import keras
import numpy as np

from keras_adntn.export.convert import MAX_CALIBRATION_SAMPLES
from keras_adntn.export.report import ExportReport


def _materialize(representative_dataset):
    """Calibration samples as a list of lists of arrays."""
    if callable(representative_dataset):
        samples = []
        for sample in representative_dataset():
            if not isinstance(sample, (list, tuple)):
                sample = [sample]
            samples.append([np.asarray(v) for v in sample])
            if len(samples) >= MAX_CALIBRATION_SAMPLES:
                break
        return samples
    arrays = representative_dataset
    if not isinstance(arrays, (list, tuple)):
        arrays = [arrays]
    arrays = [np.asarray(a) for a in arrays]
    count = min(len(arrays[0]), MAX_CALIBRATION_SAMPLES)
    return [[a[i : i + 1] for a in arrays] for i in range(count)]


def export_in_subprocess(
    model,
    path,
    *,
    mode,
    quantize,
    representative_dataset,
    arena_budget,
    batch_size,
    strip_strings,
    measure,
) -> ExportReport:
    """`export_litert` run in a TensorFlow subprocess (same arguments)."""
    import keras_adntn

    with tempfile.TemporaryDirectory(prefix="adntn_export_") as tmp:
        model_path = os.path.join(tmp, "model.keras")
        report_path = os.path.join(tmp, "report.json")
        model.save(model_path)
        command = [
            sys.executable,
            "-m",
            "keras_adntn.export",
            model_path,
            os.path.abspath(path),
            "--mode",
            mode,
            "--report",
            report_path,
            "--batch-size",
            "none" if batch_size is None else str(batch_size),
        ]
        if quantize is not None:
            command += ["--quantize", quantize]
        if arena_budget is not None:
            command += ["--arena-budget", str(arena_budget)]
        if strip_strings:
            command.append("--strip-strings")
        if not measure:
            command.append("--no-measure")
        if representative_dataset is not None:
            samples = _materialize(representative_dataset)
            data_path = os.path.join(tmp, "representative.npz")
            np.savez(
                data_path,
                **{
                    f"s{i}_{j}": v
                    for i, sample in enumerate(samples)
                    for j, v in enumerate(sample)
                },
            )
            command += ["--representative", data_path]
        env = dict(os.environ)
        env["KERAS_BACKEND"] = "tensorflow"
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        root = os.path.dirname(os.path.dirname(keras_adntn.__file__))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (root, env.get("PYTHONPATH")) if p
        )
        result = subprocess.run(
            command, env=env, capture_output=True, text=True
        )
        if result.returncode != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-15:])
            if "ValueError" in tail:
                raise ValueError(
                    f"LiteRT export in the TensorFlow subprocess failed:\n"
                    f"{tail}"
                )
            raise RuntimeError(
                f"LiteRT export in the TensorFlow subprocess failed "
                f"(exit {result.returncode}):\n{tail}"
            )
        with open(report_path) as f:
            data = json.load(f)
    data["path"] = path
    data["route"] = "subprocess"
    report = ExportReport.from_dict(data)
    import warnings

    for message in report.warnings:
        warnings.warn(message, stacklevel=3)
    return report


def _load_samples(data_path):
    data = np.load(data_path)
    samples = {}
    for key in data.files:
        i, j = (int(v) for v in key[1:].split("_"))
        samples.setdefault(i, {})[j] = data[key]
    return [
        [samples[i][j] for j in sorted(samples[i])] for i in sorted(samples)
    ]


def main(argv=None) -> None:
    """`python -m keras_adntn.export`: the subprocess end of the route."""
    from keras_adntn.export.api import MODES
    from keras_adntn.export.api import QUANTIZATIONS
    from keras_adntn.export.api import export_litert

    parser = argparse.ArgumentParser(
        prog="python -m keras_adntn.export",
        description="Export a saved .keras model to LiteRT (run with "
        "KERAS_BACKEND=tensorflow; `keras-adntn export` is the user CLI).",
    )
    parser.add_argument("model", help="path of a .keras model")
    parser.add_argument("output", help="path of the .tflite file to write")
    parser.add_argument("--mode", default="on_the_fly", choices=MODES)
    parser.add_argument(
        "--quantize", default=None, choices=[q for q in QUANTIZATIONS if q]
    )
    parser.add_argument("--representative", default=None, help=".npz file")
    parser.add_argument("--arena-budget", default=None)
    parser.add_argument("--batch-size", default="1")
    parser.add_argument("--strip-strings", action="store_true")
    parser.add_argument("--no-measure", action="store_true")
    parser.add_argument("--report", default=None, help="JSON report path")
    args = parser.parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        parser.error("run with KERAS_BACKEND=tensorflow")
    import keras_adntn  # noqa: F401  (registers the TN layers)

    model = keras.saving.load_model(args.model, compile=False)
    samples = None
    if args.representative:
        loaded = _load_samples(args.representative)

        def samples():
            yield from loaded

    batch = None if args.batch_size.lower() == "none" else int(args.batch_size)
    budget = None if args.arena_budget is None else int(args.arena_budget)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # they travel in the report
        report = export_litert(
            model,
            args.output,
            mode=args.mode,
            quantize=args.quantize,
            representative_dataset=samples,
            arena_budget=budget,
            batch_size=batch,
            strip_strings=args.strip_strings,
            measure=not args.no_measure,
        )
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report.to_dict(), f)
    print(report)
