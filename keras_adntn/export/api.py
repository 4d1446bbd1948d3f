"""`export_litert`: a Keras model with TN layers to a LiteRT flatbuffer."""

import os
import re
import warnings

import keras

from keras_adntn.export import convert as convert_module
from keras_adntn.export import tflm
from keras_adntn.export.report import ExportReport
from keras_adntn.export.report import analyze_flatbuffer

MODES = ("factorized", "on_the_fly", "cached")
QUANTIZATIONS = (None, "int8", "float16")
# Relative error above which the export warns (int8: no check).
_PARITY_WARNING = {None: 1e-3, "float16": 2e-2}
# Conversions tried to fit the arena budget (each is measured on TFLM).
_MAX_FITS = 8
_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024}
_UNITS.update({"M": 1024**2, "MB": 1024**2, "MIB": 1024**2})


def parse_bytes(value, name: str = "arena_budget") -> int | None:
    """`256K`, `"1M"`, `65536` -> bytes (K = 1024); None stays None.

    Raises:
        ValueError: naming `name` for anything else.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        value = "bad"
    if isinstance(value, int) and value > 0:
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _UNITS or float(match.group(1)) <= 0:
        raise ValueError(
            f"`{name}` must be a positive number of bytes, as an int or a "
            f"string such as '256K' or '1M' (K = 1024), got {value!r}."
        )
    return int(float(match.group(1)) * _UNITS[unit])


def check_args(mode, quantize, representative_dataset, batch_size):
    """Raises ValueError for arguments `export_litert` does not accept."""
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}.")
    if quantize not in QUANTIZATIONS:
        raise ValueError(
            f"`quantize` must be one of {QUANTIZATIONS}, got {quantize!r}."
        )
    if quantize == "int8" and representative_dataset is None:
        raise ValueError(
            "`quantize='int8'` (full-integer quantisation) needs a "
            "`representative_dataset` to calibrate the activation ranges: a "
            "callable returning an iterable of input lists (the LiteRT "
            "convention) or an array of input samples."
        )
    if batch_size is not None and (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or batch_size < 1
    ):
        raise ValueError(
            f"`batch_size` must be a positive int or None, got {batch_size!r}."
        )


def export_litert(
    model: keras.Model,
    path: str,
    mode: str = "factorized",
    quantize: str | None = None,
    representative_dataset=None,
    *,
    arena_budget: int | str | None = None,
    batch_size: int | None = 1,
    strip_strings: bool = False,
    measure: bool = True,
) -> ExportReport:
    """Writes `model` as a LiteRT (TFLite) flatbuffer of builtin ops only.

    Args:
        model: a built Keras model with known inputs (Sequential or
            functional), possibly containing TN layers.
        path: where to write the `.tflite` file.
        mode: `"factorized"` (default: as `"on_the_fly"`, except that a
            `TNDense` with a linear generator (`network="mpo"`) is never
            generated: its input is contracted with its cores, block by
            block of sites, as FULLY_CONNECTED ops with core-sized weights;
            see `keras_adntn.export.contraction`), `"on_the_fly"` (only the
            generator cores are stored and the kernels are generated on the
            device; each `TNDense` kernel is made and consumed block by
            block, so the tensor arena holds one block at a time) or
            `"cached"` (the generated kernels stored as constants: an
            ordinary FULLY_CONNECTED / CONV_2D model, as large in flash as
            the dense model).
        quantize: None (float32), `"float16"` (float16 weights, float32
            compute) or `"int8"` (int8 builtins with a calibration; inputs
            and outputs stay float32. On the fly the generating layers stay
            float32: see `keras_adntn.export.convert`).
        representative_dataset: calibration data for `"int8"`: a callable
            returning an iterable of lists of input arrays (the LiteRT
            convention), or an array (single-input models) / list of arrays
            with samples along axis 0 (at most 500 are used).
        arena_budget: SRAM for the tensor arena, in bytes (an int, or a
            string such as `"256K"`); on the fly, the number of blocks of
            every `TNDense` is chosen to fit it: estimated, then measured on
            TensorFlow Lite Micro's interpreter and raised until the
            measured arena fits (when `tflite-micro` is installed). The
            export warns when it cannot fit. None: two blocks per layer
            (the fastest tiled schedule).
        batch_size: static batch dimension of the exported inputs (1 suits
            microcontrollers), or None for a dynamic one.
        strip_strings: drop tensor names and signatures from the file
            (smaller; the report is computed before stripping).
        measure: run the file on the TFLite Micro interpreter (when
            installed) to measure its arena, latency and parity.

    Returns:
        An `ExportReport`: flash (file) bytes, the measured TFLM arena and
        latency, per layer the parameters, stored bytes and op histogram,
        the ops TFLite Micro lacks, transpose ranks and parity with Keras.

    Raises:
        ValueError: for a bad `mode`, `quantize`, `batch_size` or
            `arena_budget`, for `"int8"` without `representative_dataset`,
            or when the converter cannot produce builtin ops only.

    Example:

    >>> from keras_adntn import TNDense
    >>> from keras_adntn.export import export_litert
    >>> model = keras.Sequential([keras.Input((1024,)), TNDense(1024)])
    >>> report = export_litert(model, "tn.tflite", arena_budget="64K")
    >>> report.file_bytes < 64 * 1024
    True
    >>> print(report)  # doctest: +SKIP
    """
    check_args(mode, quantize, representative_dataset, batch_size)
    budget = parse_bytes(arena_budget)
    if not getattr(model, "inputs", None):
        raise ValueError(
            "`model` must be a built Keras model with known inputs (a "
            "Sequential or functional model called on `keras.Input`)."
        )
    path = os.fspath(path)
    if keras.backend.backend() != "tensorflow":
        from keras_adntn.export import remote

        return remote.export_in_subprocess(
            model,
            path,
            mode=mode,
            quantize=quantize,
            representative_dataset=representative_dataset,
            arena_budget=budget,
            batch_size=batch_size,
            strip_strings=strip_strings,
            measure=measure,
        )
    return _export_tensorflow(
        model,
        path,
        mode,
        quantize,
        representative_dataset,
        budget,
        batch_size,
        strip_strings,
        measure,
    )


def _tilings(model, mode, budget, batch_size):
    from keras_adntn.export.contraction import FactorizedSchedule
    from keras_adntn.export.tiling import ConvTiling
    from keras_adntn.export.tiling import DenseTiling
    from keras_adntn.export.tracing import generating_layers
    from keras_adntn.layers.tn_conv2d import TNConv2D
    from keras_adntn.layers.tn_dense import TNDense

    if mode == "cached":
        return {}
    tilings = {}
    for layer in generating_layers(model):
        if (
            mode == "factorized"
            and type(layer) is TNDense
            and FactorizedSchedule.applies(layer)
        ):
            tilings[layer.name] = FactorizedSchedule(layer, batch_size or 1)
        elif type(layer) is TNDense:
            tilings[layer.name] = DenseTiling.for_budget(
                layer, budget, batch_size or 1
            )
        elif type(layer) is TNConv2D and mode == "factorized" and (
            FactorizedSchedule.contracts_in_trace(layer)
        ):
            continue  # its own factorized path runs in the trace
        elif type(layer) is TNConv2D and ConvTiling.applies(layer):
            tilings[layer.name] = ConvTiling.for_budget(
                layer, budget, batch_size or 1
            )
    return tilings


class _Attempt:
    """One conversion with given tilings, measured where possible."""

    def __init__(self, model, mode, quantize, data, batch_size, tilings):
        import tensorflow as tf

        from keras_adntn.export.tracing import Trace

        self.tilings = tilings
        self.trace = Trace(tf, model, mode, batch_size, tilings)
        self.flatbuffer, sample = convert_module.convert(
            model, self.trace, mode, quantize, data
        )
        self.inputs = convert_module.check_inputs(model, batch_size, sample)
        self.want = convert_module.keras_outputs(model, self.inputs)
        self.tflm = None
        self.failure = None

    def measure(self):
        """The measured arena (bytes), or None where TFLM cannot run the
        model (`self.failure` says why)."""
        try:
            self.tflm = tflm.measure(self.flatbuffer, self.inputs)
        except RuntimeError as error:
            self.failure = str(error)
            return None
        return self.tflm.arena_bytes


def _fit(model, mode, quantize, data, budget, batch_size, measure):
    """Converts, raising block counts until the measured arena fits."""
    tilings = _tilings(model, mode, budget, batch_size)
    attempt = _Attempt(model, mode, quantize, data, batch_size, tilings)
    can_measure = measure and tflm.available()
    if not can_measure:
        return attempt
    arena = attempt.measure()
    if budget is None or not tilings or arena is None:
        return attempt
    tries = 1
    if arena <= budget:  # fewer blocks (faster) while it still fits
        while tries < _MAX_FITS:
            smaller = {
                k: type(t)(t.layer, t.fixed - 1) if t.fixed > 1 else t
                for k, t in attempt.tilings.items()
            }  # (never down to 0: untiled needs the anchor)
            if all(smaller[k] is attempt.tilings[k] for k in smaller):
                break
            trial = _Attempt(model, mode, quantize, data, batch_size, smaller)
            tries += 1
            smaller_arena = trial.measure()
            if smaller_arena is None or smaller_arena > budget:
                break
            attempt = trial
        return attempt
    while arena > budget and tries < _MAX_FITS:
        growable = [
            t
            for t in attempt.tilings.values()
            if t.tiled and t.fixed < t.max_fixed
        ]
        if not growable:
            break
        largest = max(growable, key=lambda t: t.block_entries)
        tilings = dict(attempt.tilings)
        tilings[largest.layer.name] = type(largest)(
            largest.layer, largest.fixed + 1
        )
        trial = _Attempt(model, mode, quantize, data, batch_size, tilings)
        tries += 1
        trial_arena = trial.measure()
        if trial_arena is None or trial_arena >= arena:  # no better
            break
        attempt, arena = trial, trial_arena
    return attempt


def _export_tensorflow(
    model,
    path,
    mode,
    quantize,
    representative_dataset,
    budget,
    batch_size,
    strip_strings,
    measure,
    route="in-process",
):
    attempt = _fit(
        model,
        mode,
        quantize,
        representative_dataset,
        budget,
        batch_size,
        measure,
    )
    flatbuffer = attempt.flatbuffer
    layers = [
        (layer.name, type(layer).__name__, int(layer.count_params()))
        for layer in model.layers
    ]
    report = analyze_flatbuffer(flatbuffer, layers, attempt.trace.scopes)
    got = convert_module.litert_outputs(flatbuffer, attempt.inputs)
    parity = (
        None
        if got is None
        else convert_module.relative_error(got, attempt.want)
    )
    messages = []
    tolerance = _PARITY_WARNING.get(quantize)
    if parity is not None and tolerance is not None and parity > tolerance:
        messages.append(
            f"The exported LiteRT model (mode={mode!r}, quantize="
            f"{quantize!r}) departs from the Keras model: max|diff| / "
            f"max|output| = {parity:.3g} on a check input (expected <= "
            f"{tolerance:g}). Check the ops in the report."
        )
    measured = {}
    if attempt.tflm is None and attempt.failure is None and measure:
        if tflm.available():
            attempt.measure()
    if attempt.failure is not None:
        messages.append(
            f"TensorFlow Lite Micro could not run the exported model "
            f"(mode={mode!r}, quantize={quantize!r}), so its arena is not "
            f"measured: {attempt.failure}"
        )
    if attempt.tflm is not None:
        measured = dict(
            tflm_arena_bytes=attempt.tflm.arena_bytes,
            tflm_latency_s=attempt.tflm.latency_s,
            tflm_parity_rel_error=convert_module.relative_error(
                attempt.tflm.outputs, attempt.want
            ),
        )
        if budget is not None and attempt.tflm.arena_bytes > budget:
            messages.append(
                f"The tensor arena measured on TensorFlow Lite Micro, "
                f"{attempt.tflm.arena_bytes:,} bytes, exceeds "
                f"arena_budget={budget:,} bytes even at the most blocks "
                f"tried ({_describe(attempt.tilings)}). Generation keeps "
                f"whole kernels in the arena for networks or layers that "
                f"cannot be tiled (see keras_adntn.export.tiling)."
            )
    for message in messages:
        warnings.warn(message, stacklevel=3)
    if strip_strings:
        flatbuffer = convert_module.strip_strings(flatbuffer)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "wb") as f:
        f.write(flatbuffer)
    return ExportReport(
        path=path,
        mode=mode,
        quantize=quantize,
        route=route,
        file_bytes=len(flatbuffer),
        params=int(model.count_params()),
        parity_rel_error=parity,
        arena_budget=budget,
        tiles={k: t.blocks for k, t in attempt.tilings.items() if t.tiled},
        warnings=messages,
        **measured,
        **report,
    )


def _describe(tilings):
    tiled = {k: t for k, t in tilings.items() if t.tiled}
    if not tiled:
        return "no tiled layer"
    return ", ".join(f"{k}: {t.blocks} blocks" for k, t in tiled.items())
