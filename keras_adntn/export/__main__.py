"""`python -m keras_adntn.export MODEL.keras OUT.tflite ...`: the subprocess
end of `export_litert`'s route for the JAX and PyTorch backends (users call
`keras-adntn export`)."""

import argparse
import json

import keras

from keras_adntn.export.api import export_model
from keras_adntn.export.options import ExportOptions
from keras_adntn.export.remote import read_samples


def main(argv=None) -> None:
    """`python -m keras_adntn.export`: the subprocess end of the route."""
    parser = argparse.ArgumentParser(
        prog="python -m keras_adntn.export",
        description="Export a saved .keras model to LiteRT (run with "
        "KERAS_BACKEND=tensorflow; `keras-adntn export` is the user CLI).",
    )
    parser.add_argument("model", help="path of a .keras model")
    parser.add_argument("output", help="path of the .tflite file to write")
    ExportOptions.add_arguments(parser)
    parser.add_argument("--report", default=None, help="JSON report path")
    args = parser.parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        parser.error("run with KERAS_BACKEND=tensorflow")
    # the TN layers are registered: `python -m keras_adntn.export`, as any
    # import of this module, has imported the `keras_adntn` package first
    model = keras.saving.load_model(args.model, compile=False)
    samples = None
    if args.representative:
        loaded = read_samples(args.representative)

        def samples():
            yield from loaded

    options = ExportOptions.from_command_line(args, samples)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # they travel in the report
        report = export_model(model, args.output, options)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report.to_dict(), f)
    print(report)


if __name__ == "__main__":
    main()
