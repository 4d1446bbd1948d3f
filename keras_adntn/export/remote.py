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
            samples = itertools.islice(
                calibration_samples(options.representative_dataset),
                MAX_CALIBRATION_SAMPLES,
            )
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
