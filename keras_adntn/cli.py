"""Command line (also `python -m keras_adntn ...`).

- `keras-adntn demo`: the layer under test dense, generated, frozen at
  random and removed, on an image task and on the digits MLP;
- `keras-adntn summary MODEL.keras`: per-layer dense vs. stored parameters;
- `keras-adntn export MODEL.keras OUT.tflite [--flash 1M] [--mode
  auto|factorized|on_the_fly|cached]
  [--sram 256K] [--quantize int8|float16 --data DATA.npz]`: LiteRT export,
  measured on TensorFlow Lite Micro, with every deployment mode side by
  side with the Dense twin (`--no-compare` to skip);
- `keras-adntn compress MODEL.keras DATA.npz OUT.keras [--network ttn
  --bond-dim N | --ratio R | --max-loss L] [--layers a,b] [--epochs E]`:
  replaces the largest layers of a trained model with TN layers and
  fine-tunes it by distillation (`keras_adntn.compress.compress`); without
  a size, the smallest that loses at most 0.005 on held-out data.

Usage errors (missing or unreadable files, wrong formats, data that does
not fit the model) print one `error: ...` line and exit with status 2.

This file parses the arguments and imports only the standard library at
the top (the launcher loads it on its own); the subcommands' work is in
`keras_adntn.cli_commands`. Keras and TensorFlow are imported only after
the arguments are parsed
(`--help` and argument errors are instant through the `keras-adntn`
launcher, `keras_adntn_cli`), with TensorFlow's C++ start-up logs silenced
unless `--verbose`. When stdout is not a terminal, training prints one plain
line per epoch instead of progress bars; `--quiet` prints results only.
"""

import argparse
import os
import runpy
import sys

# -- output and logging --------------------------------------------------------
VERBOSITIES = ("quiet", "normal", "verbose")


def _fit_verbose(verbosity: str) -> int:
    """Keras `verbose` for training: none when quiet, progress bars on a
    terminal, else one plain line per epoch (no carriage-return bars)."""
    if verbosity == "quiet":
        return 0
    return 1 if sys.stdout.isatty() else 2


def _import_keras_quietly(verbosity: str) -> None:
    """Imports keras_adntn (so Keras and its backend) with TensorFlow's
    logs off unless `verbosity == "verbose"`; a no-op once imported."""
    # only in a fresh process (the launcher): a caller that imported Keras
    # already (tests, `python -m keras_adntn`) keeps its environment
    quiet = verbosity != "verbose" and "keras" not in sys.modules
    # `_quiet.py` on its own: `keras_adntn._quiet` would import the package
    here = os.path.dirname(os.path.abspath(__file__))
    helpers = runpy.run_path(os.path.join(here, "_quiet.py"))
    with helpers["quiet_start"](quiet):
        import keras_adntn  # noqa: F401  (registers the TN layers)


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


def _parser() -> argparse.ArgumentParser:
    """The argument parser of `keras-adntn` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="keras-adntn",
        description="Keras layers with tensor-network-generated weights.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_demo(sub)
    _add_summary(sub)
    _add_export(sub)
    _add_compress(sub)
    for command in sub.choices.values():
        _add_verbosity_flags(command)
    return parser


def _add_demo(sub: argparse._SubParsersAction) -> None:
    """The `demo` subcommand and its options."""
    command = sub.add_parser(
        "demo",
        help="dense vs generated layers against honest controls",
        description="Trains the layer under test dense, generated, frozen "
        "at random and removed, on a generated image task (where the "
        "generated layer pays) and on the digits MLP (where it does not), "
        "prints both tables with a verdict, exports the image model to "
        "LiteRT and writes a plot.",
    )
    command.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs of every model (default: 12 image task, 30 digits)",
    )
    command.add_argument(
        "--width", type=int, default=256, help="digits hidden width"
    )
    command.add_argument(
        "--samples",
        type=int,
        default=4000,
        help="training images of the image task",
    )
    command.add_argument("--out", default="adntn_demo", help="output folder")


def _add_summary(sub: argparse._SubParsersAction) -> None:
    """The `summary` subcommand and its argument."""
    command = sub.add_parser(
        "summary", help="dense vs stored parameters of a .keras model"
    )
    command.add_argument("model", help="path of a .keras model")


def _add_export(sub: argparse._SubParsersAction) -> None:
    """The `export` subcommand and its options."""
    command = sub.add_parser(
        "export",
        help="export a .keras model to LiteRT (TFLite / TFLite Micro)",
        description="Writes a LiteRT flatbuffer, runs it on TensorFlow Lite "
        "Micro's interpreter (flash = file size, arena = the smallest SRAM "
        "it runs with), and prints every deployment mode side by side with "
        "the Dense twin (the cached int8 export).",
    )
    command.add_argument("model", help="path of a .keras model")
    command.add_argument("output", help="path of the .tflite file to write")
    command.add_argument(
        "--mode",
        default="auto",
        choices=["auto", "factorized", "on_the_fly", "cached"],
        help="auto (default): each TNDense deployed as the plan chooses "
        "for --sram and --flash (factorized, headed, on the fly or "
        "cached: the smallest flash whose arena fits, then the fastest "
        "within 1.5x of it; the report says why); factorized: a TNDense "
        "with a linear generator (mpo) contracts its input with its cores, "
        "a tree with its last level and a head; on_the_fly: only the "
        "generator cores are stored and the kernels are generated on the "
        "device, block by block within --sram; cached: the generated "
        "kernels are stored as ordinary weights (fastest, as large as the "
        "dense model)",
    )
    command.add_argument(
        "--sram",
        default=None,
        help="tensor-arena budget, e.g. 256K or 1M (K = 1024 bytes; "
        "default 256K): every layer's deployment is chosen to fit it",
    )
    command.add_argument(
        "--flash",
        default=None,
        help="flash budget for the file, e.g. 1M: the fastest plan that "
        "fits it (default: the smallest flash, then the fastest within "
        "1.5x of it)",
    )
    command.add_argument(
        "--quantize",
        default=None,
        choices=["int8", "float16"],
        help="int8 needs --data; on the fly the generators stay float32",
    )
    command.add_argument(
        "--data", default=None, help=".npz of calibration inputs (int8)"
    )
    command.add_argument(
        "--no-compare",
        action="store_true",
        help="skip the table of every deployment mode",
    )
    command.add_argument(
        "--strip-strings",
        action="store_true",
        help="drop tensor names from the file (less flash)",
    )


def _add_compress(sub: argparse._SubParsersAction) -> None:
    """The `compress` subcommand and its options."""
    command = sub.add_parser(
        "compress", help="replace the largest layers of a trained model"
    )
    command.add_argument("model", help="path of a trained .keras model")
    command.add_argument("data", help=".npz with arrays x, y [x_val, y_val]")
    command.add_argument("output", help="path of the .keras file to write")
    command.add_argument(
        "--network", default="ttn", help="ttn, attn, mera, brickwall or mpo"
    )
    command.add_argument(
        "--bond-dim", type=int, default=None, help="bond dim (a fixed size)"
    )
    command.add_argument(
        "--ratio", type=float, default=None, help="target compression ratio"
    )
    command.add_argument(
        "--max-loss",
        type=float,
        default=None,
        help="the smallest size losing at most this on the validation data "
        "(accuracy points as a fraction, or relative MSE; the default, "
        "0.005, when no size is given)",
    )
    command.add_argument(
        "--search-budget",
        type=int,
        default=6,
        help="most sizes the --max-loss search tries (default 6)",
    )
    command.add_argument(
        "--layers", default=None, help="comma-separated layer names"
    )
    command.add_argument(
        "--max-layers", type=int, default=1, help="largest layers to replace"
    )
    command.add_argument(
        "--epochs", type=int, default=10, help="distillation epochs"
    )
    command.add_argument(
        "--batch-size", type=int, default=64, help="fine-tuning batch size"
    )
    command.add_argument(
        "--lr", type=float, default=3e-3, help="fine-tuning learning rate"
    )
    command.add_argument(
        "--init",
        default="auto",
        help="auto, activations, reconstruction, svd (mpo) or random",
    )
    command.add_argument(
        "--validation",
        default=None,
        help="validation .npz (x, y) or a fraction of the data to hold out "
        "(default: x_val, y_val of the data, else 20%% of it)",
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
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo" and (
        (args.epochs is not None and args.epochs < 1)
        or min(args.width, args.samples) < 1
    ):
        parser.error("--epochs, --width and --samples must be >= 1")
    verbosity = getattr(args, "verbosity", "normal")
    _import_keras_quietly(verbosity)
    from keras_adntn import cli_commands

    try:
        if args.command == "demo":
            from keras_adntn.demo import demo

            demo(
                args.epochs,
                args.width,
                args.out,
                args.samples,
                verbose=verbosity == "verbose",
            )
        elif args.command == "summary":
            cli_commands.summary_command(args.model)
        elif args.command == "export":
            cli_commands.export_command(
                args.model,
                args.output,
                args.mode,
                args.quantize,
                args.data,
                sram=args.sram,
                flash=args.flash,
                compare=not args.no_compare,
                strip_strings=args.strip_strings,
            )
        elif args.command == "compress":
            cli_commands.compress_command(
                args.model,
                args.data,
                args.output,
                network=args.network,
                bond_dim=args.bond_dim,
                ratio=args.ratio,
                max_loss=args.max_loss,
                search_budget=args.search_budget,
                layers=args.layers,
                epochs=args.epochs,
                max_layers=args.max_layers,
                batch_size=args.batch_size,
                lr=args.lr,
                init=args.init,
                validation=args.validation,
                verbose=_fit_verbose(verbosity),
            )
    except cli_commands.CLIError as e:
        print(f"keras-adntn {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
