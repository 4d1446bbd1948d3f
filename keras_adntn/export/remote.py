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

import itertools
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from keras_adntn.export.convert import MAX_CALIBRATION_SAMPLES
from keras_adntn.export.convert import calibration_samples
from keras_adntn.export.options import ExportOptions
from keras_adntn.export.report import ExportReport


def write_samples(representative_dataset, path: str) -> int:
    """Writes the first `MAX_CALIBRATION_SAMPLES` calibration samples of
    `representative_dataset` (see `convert.calibration_samples`) to the
    `.npz` file `path`, keyed `s{sample}_{input}`; returns how many.
    `read_samples` reads them back in their order."""
    samples = list(
        itertools.islice(
            calibration_samples(representative_dataset),
            MAX_CALIBRATION_SAMPLES,
        )
    )
    np.savez(
        path,
        **{
            f"s{i}_{j}": np.asarray(v)
            for i, sample in enumerate(samples)
            for j, v in enumerate(sample)
        },
    )
    return len(samples)


def read_samples(path: str) -> list:
    """The samples `write_samples` wrote, in their order: a list of
    samples, each the list of its input arrays."""
    data = np.load(path)
    samples = {}
    for key in data.files:
        i, j = (int(v) for v in key[1:].split("_"))
        samples.setdefault(i, {})[j] = data[key]
    return [
        [samples[i][j] for j in sorted(samples[i])] for i in sorted(samples)
    ]


def export_in_subprocess(
    model, path: str, options: ExportOptions
) -> ExportReport:
    """`export_litert` run in a TensorFlow subprocess."""
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
            "--report",
            report_path,
            *options.command_line(),
        ]
        if options.representative_dataset is not None:
            data_path = os.path.join(tmp, "representative.npz")
            write_samples(options.representative_dataset, data_path)
            command += ["--representative", data_path]
        env = dict(os.environ)
        env["KERAS_BACKEND"] = "tensorflow"
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # the directory holding the `keras_adntn` package
        root = os.path.dirname(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        )
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
