"""`python -m keras_adntn.export MODEL.keras OUT.tflite ...`: the subprocess
end of `export_litert`'s route for the JAX and PyTorch backends (users call
`keras-adntn export`)."""

import argparse
import json

import keras
import numpy as np

from keras_adntn.export.api import MODES
from keras_adntn.export.api import QUANTIZATIONS
from keras_adntn.export.api import export_litert


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
    parser = argparse.ArgumentParser(
        prog="python -m keras_adntn.export",
        description="Export a saved .keras model to LiteRT (run with "
        "KERAS_BACKEND=tensorflow; `keras-adntn export` is the user CLI).",
    )
    parser.add_argument("model", help="path of a .keras model")
    parser.add_argument("output", help="path of the .tflite file to write")
    parser.add_argument("--mode", default="factorized", choices=MODES)
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


if __name__ == "__main__":
    main()
