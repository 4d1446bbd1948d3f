"""The work of the `keras-adntn` subcommands (`cli.py` parses them).

Imported by `cli.main` once the arguments are parsed and the package is
loaded. Each command checks its files and arguments first and reports a
usage error as a `CLIError` (one line, exit status 2); errors of the
library name the CLI's flags instead of its Python arguments
(`with_flags`).
"""

import os
import re
import tempfile
import zipfile

import keras
import numpy as np


class CLIError(Exception):
    """A usage error reported as one line, without a traceback."""


# Python argument names in library errors -> the CLI's flags and operands
FLAGS = {
    "target_ratio": "--ratio",
    "bond_dim": "--bond-dim",
    "max_layers": "--max-layers",
    "batch_size": "--batch-size",
    "learning_rate": "--lr",
    "validation_data": "--validation",
    "arena_budget": "--sram",
    "flash_budget": "--flash",
    "network": "--network",
    "layers": "--layers",
    "epochs": "--epochs",
    "init": "--init",
    "quantize": "--quantize",
    "mode": "--mode",
    "data": "DATA",
    "model": "MODEL",
}


def with_flags(message: str) -> str:
    """`message` with the Python argument names replaced by the flags."""
    for name, flag in FLAGS.items():
        message = message.replace(f"`{name}`", flag)
        message = re.sub(rf"(?<![\w-]){name}=", f"{flag}=", message)
    return message


def _read_npz(path: str, prefix: str = "") -> dict:
    """The arrays of the `.npz` file `path`; CLIError (its message after
    `prefix`) when it cannot be read as one."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not hasattr(archive, "files"):
            raise ValueError("not an .npz archive")
        return {k: archive[k] for k in archive.files}
    except Exception as e:
        raise CLIError(f"{prefix}cannot read {path} as an .npz file: {e}")


def _load_model(path: str):
    if not os.path.exists(path):
        raise CLIError(f"model file not found: {path}")
    if not os.path.isfile(path):
        raise CLIError(f"not a file: {path}")
    if not path.endswith(".keras"):
        raise CLIError(
            f"expected a Keras v3 model file ending in '.keras', got {path}"
        )
    if not zipfile.is_zipfile(path):
        raise CLIError(f"not a Keras v3 model file (no zip archive): {path}")

    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:  # any loader failure is a bad file
        message = str(e).strip().splitlines()
        reason = message[0] if message else type(e).__name__
        raise CLIError(f"cannot load {path} as a Keras model: {reason}")


def _load_data(path: str, model) -> list:
    """Calibration inputs from an `.npz`: key `x` (single-input models) or
    one array per model input, in order."""
    if not os.path.isfile(path):
        raise CLIError(f"data file not found: {path}")
    arrays = _read_npz(path)
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
    mode: str = "auto",
    quantize: str | None = None,
    data: str | None = None,
    sram: str | None = None,
    compare: bool = True,
    strip_strings: bool = False,
    flash: str | None = None,
):
    """`keras-adntn export ...`: writes the LiteRT file, prints its report
    and (with `compare`) the table of every deployment mode measured on
    TensorFlow Lite Micro.

    Args:
        path: the `.keras` file.
        output: the `.tflite` file to write.
        mode: `"auto"`, `"factorized"`, `"on_the_fly"` or `"cached"`.
        quantize: None, `"int8"` or `"float16"`.
        data: `.npz` of calibration inputs (needed for `"int8"`): key `x`,
            or one array per model input, samples along axis 0.
        sram: the arena budget, e.g. `"256K"` (`--sram`).
        flash: the flash budget, e.g. `"1M"` (`--flash`).
        compare: also export every mode and print the comparison table.
        strip_strings: drop tensor names from the written file.

    Returns:
        The `ExportReport` of `keras_adntn.export.export_litert`.

    Raises:
        CLIError: missing files, wrong formats, data that does not fit the
            model, a bad `--sram` or `--flash`, or a failed conversion
            (or no plan within the budgets).

    Example:

    >>> export_command("m.keras", "m.tflite", sram="64K")  # doctest: +SKIP
    """
    from keras_adntn.export import compare_deployments
    from keras_adntn.export import export_litert
    from keras_adntn.export import parse_bytes

    if quantize == "int8" and data is None:
        raise CLIError("--quantize int8 needs calibration inputs: --data X.npz")
    try:
        budget = parse_bytes(sram, "--sram")
        flash_budget = parse_bytes(flash, "--flash")
    except ValueError as e:
        raise CLIError(
            str(e).replace("`--sram`", "--sram").replace("`--flash`", "--flash")
        )
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
            flash_budget=flash_budget,
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
            "export failed: " + (with_flags(lines[-1]) if lines else repr(e))
        )
    return report


def compress_command(
    path: str,
    data: str,
    output: str,
    network: str = "ttn",
    bond_dim: int | None = None,
    ratio: float | None = None,
    max_loss: float | None = None,
    search_budget: int = 6,
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
        bond_dim: bond dimension (a fixed size).
        ratio: target compression ratio instead of `bond_dim`.
        max_loss: instead of a size, the loss the smallest size may cost
            on the validation data (default 0.005 when no size is given).
        search_budget: most sizes the `max_loss` search tries.
        layers: comma-separated names of the layers to replace (default:
            the `max_layers` largest).
        epochs: epochs of distillation fine-tuning.
        max_layers: how many of the largest layers to replace.
        batch_size: batch size of the fine-tuning.
        lr: learning rate of the fine-tuning.
        init: initialisation (`auto`, `activations`, `reconstruction`,
            `svd`, `random`).
        validation: None, a `.npz` with arrays `x`, `y`, or a fraction in
            (0, 1) of the data to hold out: where the size and the best
            fine-tuning epoch are chosen and the models are scored
            (default: `x_val`, `y_val` of the data, else 20% of it).
        verbose: Keras verbosity of the fits (0, 1 or 2).

    Returns:
        The `CompressionReport`.

    Raises:
        CLIError: missing files, wrong formats, data that does not fit the
            model, or bad arguments.

    Example:

    >>> compress_command("m.keras", "d.npz", "small.keras")  # doctest: +SKIP
    """
    from keras_adntn.compress import compress

    sizes = [bond_dim, ratio, max_loss]
    if sum(v is not None for v in sizes) > 1:
        raise CLIError("give at most one of --bond-dim, --ratio and --max-loss")
    if not output.endswith(".keras"):
        raise CLIError(f"the output must end in '.keras', got {output}")
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise CLIError(f"output directory does not exist: {out_dir}")
    if not os.path.isfile(data):
        raise CLIError(f"data file not found: {data}")
    model = _load_model(path)
    arrays = _read_npz(data)
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
            max_loss=max_loss,
            search_budget=search_budget,
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
        raise CLIError(with_flags(lines[0] if lines else repr(e)))
    print(report.table())
    student.save(output)
    print(f"compressed model written to {output}")
    return report


def _compress_validation(validation):
    """`--validation`: None, a fraction, or the arrays of a `.npz`."""
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
    arrays = _read_npz(validation, prefix="--validation: ")
    if "x" not in arrays or "y" not in arrays:
        raise CLIError(
            f"--validation: {validation} holds arrays {sorted(arrays)}; "
            f"expected 'x' and 'y'"
        )
    return arrays
