"""Command line (also `python -m keras_adntn ...`).

- `keras-adntn demo`: the layer under test dense, generated, frozen at
  random and removed, on an image task and on the digits MLP;
- `keras-adntn summary MODEL.keras`: per-layer dense vs. stored parameters;
- `keras-adntn export MODEL.keras OUT.tflite [--mode
  factorized|on_the_fly|cached]
  [--sram 256K] [--quantize int8|float16 --data DATA.npz]`: LiteRT export,
  measured on TensorFlow Lite Micro, with every deployment mode side by
  side with the Dense twin (`--no-compare` to skip);
- `keras-adntn compress MODEL.keras DATA.npz OUT.keras [--network ttn
  --bond-dim N | --ratio R] [--layers a,b] [--epochs E]`: replaces the
  largest layers of a trained model with TN layers and fine-tunes it by
  distillation (`keras_adntn.compress.compress`).

Usage errors (missing or unreadable files, wrong formats, data that does
not fit the model) print one `error: ...` line and exit with status 2.

Keras and TensorFlow are imported only after the arguments are parsed
(`--help` and argument errors are instant through the `keras-adntn`
launcher, `keras_adntn_cli`), with TensorFlow's C++ start-up logs silenced
unless `--verbose`. When stdout is not a terminal, training prints one plain
line per epoch instead of progress bars; `--quiet` prints results only.
"""

import argparse
import contextlib
import logging
import os
import re
import sys


class CLIError(Exception):
    """A usage error reported as one line, without a traceback."""


# -- output and logging --------------------------------------------------------
VERBOSITIES = ("quiet", "normal", "verbose")


def _fit_verbose(verbosity: str) -> int:
    """Keras `verbose` for training: none when quiet, progress bars on a
    terminal, else one plain line per epoch (no carriage-return bars)."""
    if verbosity == "quiet":
        return 0
    return 1 if sys.stdout.isatty() else 2


@contextlib.contextmanager
def _stderr_silenced(enabled: bool):
    """Sends file descriptor 2 to /dev/null: TensorFlow's C++ start-up
    lines ("oneDNN custom operations are on", absl's "All log messages
    before absl::InitializeLog()") are written there directly and ignore
    `TF_CPP_MIN_LOG_LEVEL`."""
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no real descriptor 2 (e.g. captured in a test)
        yield
        return
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _import_keras_quietly(verbosity: str) -> None:
    """Imports keras_adntn (so Keras and its backend) with TensorFlow's
    logs off unless `verbosity == "verbose"`; a no-op once imported."""
    # only in a fresh process (the launcher): a caller that imported Keras
    # already (tests, `python -m keras_adntn`) keeps its environment
    quiet = verbosity != "verbose" and "keras" not in sys.modules
    if quiet:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _stderr_silenced(quiet):
        import keras_adntn  # noqa: F401  (registers the TN layers)
    if quiet:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        try:
            from absl import logging as absl_logging

            absl_logging.set_verbosity(absl_logging.ERROR)
        except ImportError:
            pass


# Python argument names in library errors -> the CLI's flags
_FLAGS = {
    "target_ratio": "--ratio",
    "bond_dim": "--bond-dim",
    "max_layers": "--max-layers",
    "layers": "--layers",
    "network": "--network",
    "epochs": "--epochs",
    "quantize": "--quantize",
    "mode": "--mode",
    "arena_budget": "--sram",
}


def _with_flags(message: str) -> str:
    """`message` with the Python argument names replaced by the flags."""
    for name, flag in _FLAGS.items():
        message = message.replace(f"`{name}`", flag)
        message = re.sub(rf"(?<![\w-]){name}=", f"{flag}=", message)
    return message


def _load_model(path: str):
    if not os.path.exists(path):
        raise CLIError(f"model file not found: {path}")
    if not os.path.isfile(path):
        raise CLIError(f"not a file: {path}")
    if not path.endswith(".keras"):
        raise CLIError(
            f"expected a Keras v3 model file ending in '.keras', got {path}"
        )
    import zipfile

    if not zipfile.is_zipfile(path):
        raise CLIError(f"not a Keras v3 model file (no zip archive): {path}")
    import keras

    import keras_adntn  # noqa: F401  (registers the TN layers)

    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:  # any loader failure is a bad file
        message = str(e).strip().splitlines()
        reason = message[0] if message else type(e).__name__
        raise CLIError(f"cannot load {path} as a Keras model: {reason}")


def _load_data(path: str, model) -> list:
    """Calibration inputs from an `.npz`: key `x` (single-input models) or
    one array per model input, in order."""
    import numpy as np

    if not os.path.isfile(path):
        raise CLIError(f"data file not found: {path}")
    try:
        data = np.load(path, allow_pickle=False)
        if not hasattr(data, "files"):
            raise ValueError("not an .npz archive")
        arrays = {k: data[k] for k in data.files}
    except Exception as e:
        raise CLIError(f"cannot read {path} as an .npz file: {e}")
    inputs = model.inputs
    if len(inputs) == 1 and "x" in arrays:
        chosen = [arrays["x"]]
    elif len(arrays) == len(inputs):
        chosen = list(arrays.values())
    else:
        raise CLIError(
            f"{path} holds arrays {sorted(arrays)}; expected 'x' or one array "
            f"per model input ({len(inputs)})"
        )
    for k, (array, inp) in enumerate(zip(chosen, inputs)):
        want = tuple(inp.shape)[1:]
        got = tuple(array.shape)[1:]
        if array.ndim != len(want) + 1 or any(
            w is not None and w != g for w, g in zip(want, got)
        ):
            raise CLIError(
                f"data array {k} has shape {tuple(array.shape)}; the model "
                f"input needs (samples, {', '.join(map(str, want))})"
            )
        if len(array) < 1:
            raise CLIError(f"data array {k} has no samples")
        if not np.issubdtype(array.dtype, np.number):
            raise CLIError(f"data array {k} is not numeric ({array.dtype})")
    return [np.asarray(a, dtype="float32") for a in chosen]


def summary_command(path: str) -> list:
    """`keras-adntn summary MODEL.keras`: prints the summary table.

    Args:
        path: the `.keras` file.

    Returns:
        The rows of `keras_adntn.summary.summary`.

    Raises:
        CLIError: missing or unreadable model file.

    Example:

    >>> summary_command("model.keras")  # doctest: +SKIP
    """
    from keras_adntn.summary import summary

    model = _load_model(path)
    return summary(model)


def export_command(
    path: str,
    output: str,
    mode: str = "factorized",
    quantize: str | None = None,
    data: str | None = None,
    sram: str | None = None,
    compare: bool = True,
    strip_strings: bool = False,
):
    """`keras-adntn export ...`: writes the LiteRT file, prints its report
    and (with `compare`) the table of every deployment mode measured on
    TensorFlow Lite Micro.

    Args:
        path: the `.keras` file.
        output: the `.tflite` file to write.
        mode: `"factorized"`, `"on_the_fly"` or `"cached"`.
        quantize: None, `"int8"` or `"float16"`.
        data: `.npz` of calibration inputs (needed for `"int8"`): key `x`,
            or one array per model input, samples along axis 0.
        sram: the arena budget, e.g. `"256K"` (`--sram`).
        compare: also export every mode and print the comparison table.
        strip_strings: drop tensor names from the written file.

    Returns:
        The `ExportReport` of `keras_adntn.export.export_litert`.

    Raises:
        CLIError: missing files, wrong formats, data that does not fit the
            model, a bad `--sram`, or a failed conversion.

    Example:

    >>> export_command("m.keras", "m.tflite", sram="64K")  # doctest: +SKIP
    """
    import tempfile

    from keras_adntn.export import compare_deployments
    from keras_adntn.export import export_litert
    from keras_adntn.export import parse_bytes

    if quantize == "int8" and data is None:
        raise CLIError("--quantize int8 needs calibration inputs: --data X.npz")
    try:
        budget = parse_bytes(sram, "--sram")
    except ValueError as e:
        raise CLIError(str(e).replace("`--sram`", "--sram"))
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise CLIError(f"output directory does not exist: {out_dir}")
    model = _load_model(path)
    samples = None if data is None else _load_data(data, model)
    if samples is not None and len(samples) == 1:
        samples = samples[0]
    try:
        report = export_litert(
            model,
            output,
            mode=mode,
            quantize=quantize,
            representative_dataset=samples,
            arena_budget=budget,
            strip_strings=strip_strings,
        )
        print(report)
        if compare:
            with tempfile.TemporaryDirectory(prefix="adntn_compare_") as tmp:
                table = compare_deployments(
                    model,
                    tmp,
                    arena_budget=budget,
                    representative_dataset=samples,
                )
            print()
            print("Every deployment, measured on TensorFlow Lite Micro:")
            print(table)
    except (ValueError, RuntimeError, ImportError) as e:
        lines = str(e).strip().splitlines()
        raise CLIError(
            "export failed: " + (_with_flags(lines[-1]) if lines else repr(e))
        )
    return report


def compress_command(
    path: str,
    data: str,
    output: str,
    network: str = "ttn",
    bond_dim: int | None = None,
    ratio: float | None = None,
    layers: str | None = None,
    epochs: int = 10,
    max_layers: int = 1,
    batch_size: int = 64,
    lr: float = 3e-3,
    init: str = "auto",
    validation: str | None = None,
    verbose: int = 1,
):
    """`keras-adntn compress ...`: compresses, saves, prints the report.

    Args:
        path: the trained `.keras` model.
        data: `.npz` with arrays `x` and `y` (optionally `x_val`, `y_val`,
            on which teacher and student are scored).
        output: the `.keras` file to write the compressed model to.
        network: generator network of the new layers.
        bond_dim: bond dimension (default 2 unless `ratio` is given).
        ratio: target compression ratio instead of `bond_dim`.
        layers: comma-separated names of the layers to replace (default:
            the `max_layers` largest).
        epochs: epochs of distillation fine-tuning.
        max_layers: how many of the largest layers to replace.
        batch_size: batch size of the fine-tuning.
        lr: learning rate of the fine-tuning.
        init: initialisation (`auto`, `activations`, `reconstruction`,
            `svd`, `random`).
        validation: None, a `.npz` with arrays `x`, `y`, or a fraction in
            (0, 1) of the data to hold out: where the best fine-tuning
            epoch is chosen and the models are scored.
        verbose: Keras verbosity of the fits (0, 1 or 2).

    Returns:
        The `CompressionReport`.

    Raises:
        CLIError: missing files, wrong formats, data that does not fit the
            model, or bad arguments.

    Example:

    >>> compress_command("m.keras", "d.npz", "small.keras")  # doctest: +SKIP
    """
    import numpy as np

    from keras_adntn.compress import compress

    if bond_dim is not None and ratio is not None:
        raise CLIError("give either --bond-dim or --ratio, not both")
    if not output.endswith(".keras"):
        raise CLIError(f"the output must end in '.keras', got {output}")
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise CLIError(f"output directory does not exist: {out_dir}")
    if not os.path.isfile(data):
        raise CLIError(f"data file not found: {data}")
    model = _load_model(path)
    try:
        archive = np.load(data, allow_pickle=False)
        if not hasattr(archive, "files"):
            raise ValueError("not an .npz archive")
        arrays = {k: archive[k] for k in archive.files}
    except Exception as e:
        raise CLIError(f"cannot read {data} as an .npz file: {e}")
    if "x" not in arrays or "y" not in arrays:
        raise CLIError(
            f"{data} holds arrays {sorted(arrays)}; expected 'x' and 'y' "
            f"(optionally 'x_val' and 'y_val')"
        )
    names = None if layers is None else [s for s in layers.split(",") if s]
    validation_data = _compress_validation(validation)
    try:
        student, report = compress(
            model,
            arrays,
            network=network,
            bond_dim=bond_dim,
            target_ratio=ratio,
            layers=names,
            max_layers=max_layers,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=lr,
            init=init,
            validation_data=validation_data,
            verbose=verbose,
        )
    except Exception as e:  # every backend's errors: one line, exit 2
        lines = str(e).strip().splitlines()
        raise CLIError(_compress_flags(lines[0] if lines else repr(e)))
    print(report.table())
    student.save(output)
    print(f"compressed model written to {output}")
    return report


# the compress arguments as the CLI spells them
_COMPRESS_FLAGS = {
    "target_ratio": "--ratio",
    "bond_dim": "--bond-dim",
    "max_layers": "--max-layers",
    "batch_size": "--batch-size",
    "learning_rate": "--lr",
    "validation_data": "--validation",
    "network": "--network",
    "layers": "--layers",
    "epochs": "--epochs",
    "init": "--init",
    "data": "DATA",
    "model": "MODEL",
}


def _compress_flags(message: str) -> str:
    """A compress error with Python argument names turned into flags."""
    for name, flag in _COMPRESS_FLAGS.items():
        message = message.replace(f"`{name}`", f"`{flag}`")
        message = message.replace(f"{name}=", f"{flag}=")
    return message


def _compress_validation(validation):
    """`--validation`: None, a fraction, or the arrays of a `.npz`."""
    import numpy as np

    if validation is None:
        return None
    try:
        fraction = float(validation)
    except ValueError:
        fraction = None
    if fraction is not None:
        if not 0.0 < fraction < 1.0:
            raise CLIError(
                f"--validation must be a fraction in (0, 1) or a .npz file, "
                f"got {validation}"
            )
        return fraction
    if not os.path.isfile(validation):
        raise CLIError(f"--validation: file not found: {validation}")
    try:
        archive = np.load(validation, allow_pickle=False)
        arrays = {k: archive[k] for k in archive.files}
    except Exception as e:
        raise CLIError(f"--validation: cannot read {validation} as .npz: {e}")
    if "x" not in arrays or "y" not in arrays:
        raise CLIError(
            f"--validation: {validation} holds arrays {sorted(arrays)}; "
            f"expected 'x' and 'y'"
        )
    return arrays


def _add_verbosity_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--verbose",
        dest="verbosity",
        action="store_const",
        const="verbose",
        default="normal",
        help="also show TensorFlow's and Keras's own log lines",
    )
    group.add_argument(
        "--quiet",
        dest="verbosity",
        action="store_const",
        const="quiet",
        help="print results only (no training progress)",
    )


def main(argv=None) -> int:
    """Entry point of `keras-adntn`; returns the exit status.

    Args:
        argv: arguments (default `sys.argv[1:]`).

    Returns:
        0 on success, 2 on a usage error (reported on stderr).

    Example:

    >>> main(["summary", "model.keras"])  # doctest: +SKIP
    0
    """
    parser = argparse.ArgumentParser(
        prog="keras-adntn",
        description="Keras layers with tensor-network-generated weights.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "demo",
        help="dense vs generated layers against honest controls",
        description="Trains the layer under test dense, generated, frozen "
        "at random and removed, on a generated image task (where the "
        "generated layer pays) and on the digits MLP (where it does not), "
        "prints both tables with a verdict, exports the image model to "
        "LiteRT and writes a plot.",
    )
    run.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs of every model (default: 12 image task, 30 digits)",
    )
    run.add_argument(
        "--width", type=int, default=256, help="digits hidden width"
    )
    run.add_argument(
        "--samples",
        type=int,
        default=4000,
        help="training images of the image task",
    )
    run.add_argument("--out", default="adntn_demo", help="output folder")
    show = sub.add_parser(
        "summary", help="dense vs stored parameters of a .keras model"
    )
    show.add_argument("model", help="path of a .keras model")
    export = sub.add_parser(
        "export",
        help="export a .keras model to LiteRT (TFLite / TFLite Micro)",
        description="Writes a LiteRT flatbuffer, runs it on TensorFlow Lite "
        "Micro's interpreter (flash = file size, arena = the smallest SRAM "
        "it runs with), and prints every deployment mode side by side with "
        "the Dense twin (the cached int8 export).",
    )
    export.add_argument("model", help="path of a .keras model")
    export.add_argument("output", help="path of the .tflite file to write")
    export.add_argument(
        "--mode",
        default="factorized",
        choices=["factorized", "on_the_fly", "cached"],
        help="factorized (default): as on_the_fly, but a TNDense with a "
        "linear generator (mpo) contracts its input with its cores, never "
        "making its kernel; on_the_fly: only the generator cores are stored "
        "and the kernels are generated on the device, block by block within "
        "--sram; cached: the generated kernels are stored as ordinary "
        "weights (fastest, as large as the dense model)",
    )
    export.add_argument(
        "--sram",
        default=None,
        help="tensor-arena budget, e.g. 256K or 1M (K = 1024 bytes): "
        "on_the_fly exports generate in as many blocks as it takes",
    )
    export.add_argument(
        "--quantize",
        default=None,
        choices=["int8", "float16"],
        help="int8 needs --data; on the fly the generators stay float32",
    )
    export.add_argument(
        "--data", default=None, help=".npz of calibration inputs (int8)"
    )
    export.add_argument(
        "--no-compare",
        action="store_true",
        help="skip the table of every deployment mode",
    )
    export.add_argument(
        "--strip-strings",
        action="store_true",
        help="drop tensor names from the file (less flash)",
    )
    small = sub.add_parser(
        "compress", help="replace the largest layers of a trained model"
    )
    small.add_argument("model", help="path of a trained .keras model")
    small.add_argument("data", help=".npz with arrays x, y [x_val, y_val]")
    small.add_argument("output", help="path of the .keras file to write")
    small.add_argument(
        "--network", default="ttn", help="ttn, attn, mera, brickwall or mpo"
    )
    small.add_argument(
        "--bond-dim", type=int, default=None, help="bond dim (default 2)"
    )
    small.add_argument(
        "--ratio", type=float, default=None, help="target compression ratio"
    )
    small.add_argument(
        "--layers", default=None, help="comma-separated layer names"
    )
    small.add_argument(
        "--max-layers", type=int, default=1, help="largest layers to replace"
    )
    small.add_argument(
        "--epochs", type=int, default=10, help="distillation epochs"
    )
    small.add_argument(
        "--batch-size", type=int, default=64, help="fine-tuning batch size"
    )
    small.add_argument(
        "--lr", type=float, default=3e-3, help="fine-tuning learning rate"
    )
    small.add_argument(
        "--init",
        default="auto",
        help="auto, activations, reconstruction, svd (mpo) or random",
    )
    small.add_argument(
        "--validation",
        default=None,
        help="validation .npz (x, y) or a fraction of the data to hold out",
    )
    for command in sub.choices.values():
        _add_verbosity_flags(command)
    args = parser.parse_args(argv)
    verbosity = getattr(args, "verbosity", "normal")
    _import_keras_quietly(verbosity)
    try:
        if args.command == "demo":
            if (args.epochs is not None and args.epochs < 1) or min(
                args.width, args.samples
            ) < 1:
                parser.error("--epochs, --width and --samples must be >= 1")
            from keras_adntn.demo import demo

            demo(
                args.epochs,
                args.width,
                args.out,
                args.samples,
                verbose=verbosity == "verbose",
            )
        elif args.command == "summary":
            summary_command(args.model)
        elif args.command == "export":
            export_command(
                args.model,
                args.output,
                args.mode,
                args.quantize,
                args.data,
                sram=args.sram,
                compare=not args.no_compare,
                strip_strings=args.strip_strings,
            )
        elif args.command == "compress":
            compress_command(
                args.model,
                args.data,
                args.output,
                network=args.network,
                bond_dim=args.bond_dim,
                ratio=args.ratio,
                layers=args.layers,
                epochs=args.epochs,
                max_layers=args.max_layers,
                batch_size=args.batch_size,
                lr=args.lr,
                init=args.init,
                validation=args.validation,
                verbose=_fit_verbose(verbosity),
            )
    except CLIError as e:
        print(f"keras-adntn {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
