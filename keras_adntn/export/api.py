"""`export_litert`: a Keras model with TN layers to a LiteRT flatbuffer."""

import os
import warnings

import keras

from keras_adntn.export import budget as budget_module
from keras_adntn.export import convert as convert_module
from keras_adntn.export import tflm
from keras_adntn.export.analysis import analyze_flatbuffer
from keras_adntn.export.deployment_plan import plan_model
from keras_adntn.export.options import ExportOptions
from keras_adntn.export.report import ExportReport

# Plans made again where TFLM measures more arena than estimated.
_REFITS = 8
# Relative error above which the export warns (int8: no check).
_PARITY_WARNING = {None: 1e-3, "float16": 2e-2}


def export_litert(
    model: keras.Model,
    path: str,
    mode: str | dict = "auto",
    quantize: str | None = None,
    representative_dataset=None,
    *,
    arena_budget: int | str | None = None,
    flash_budget: int | str | None = None,
    batch_size: int | None = 1,
    strip_strings: bool = False,
    measure: bool = True,
) -> ExportReport:
    """Writes `model` as a LiteRT (TFLite) flatbuffer of builtin ops only.

    Args:
        model: a built Keras model with known inputs (Sequential or
            functional), possibly containing TN layers.
        path: where to write the `.tflite` file.
        mode: `"auto"` (default): each `TNDense` deployed as the plan
            chooses for the budgets (`keras_adntn.export.deployment_plan`:
            among its factorized, headed, on-the-fly and cached
            deployments, the smallest flash whose arena fits
            `arena_budget`, and within 1.5x of that flash the fastest; or
            with `flash_budget` the fastest that fits both), the other
            layers as in `"factorized"`. A dict `{layer name: mode}`
            overrides the plan for those layers. Or one mode for the
            whole model: `"factorized"` (as `"on_the_fly"`, except that a
            kernel that can be taken from its cores is never generated: an
            mpo `TNDense`, `TNConv2D` or `TNMultiHeadAttention` contracts
            its input with its cores, block by block of sites, as
            FULLY_CONNECTED ops with core-sized weights (see
            `keras_adntn.export.contraction`), and a ttn `TNDense` with a
            constant head made at export, in input tiles sized for
            `arena_budget` (64 KB by default; see
            `keras_adntn.export.headed_contraction`)), `"on_the_fly"` (only the
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
            string such as `"256K"`); every layer's deployment is chosen
            to fit it: estimated, then measured on TensorFlow Lite Micro's
            interpreter and made smaller (more blocks, more tiles) until
            the measured arena fits (when `tflite-micro` is installed).
            None: 256 KB, the SRAM of a common microcontroller class
            (Cortex-M4/M7 boards); where a layer fits no deployment
            within it, its smallest arena is taken with a warning (a
            given budget raises instead).
        flash_budget: flash for the file, in bytes or a string such as
            `"1M"`: the plan is the fastest that fits it (buying latency
            with flash). None: the export keeps the compression (the
            smallest flash, then the fastest within 1.5x of it).
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
        ValueError: for a bad `mode`, `quantize`, `batch_size`,
            `arena_budget` or `flash_budget`, for `"int8"` without
            `representative_dataset`, where a layer fits no deployment
            within a given `arena_budget` or the model none within
            `flash_budget` (naming the smallest possible, before any
            conversion), or when the converter cannot produce builtin ops
            only.

    Example:

    >>> from keras_adntn import TNDense
    >>> from keras_adntn.export import export_litert
    >>> model = keras.Sequential([keras.Input((1024,)), TNDense(1024)])
    >>> report = export_litert(model, "tn.tflite", arena_budget="64K")
    >>> report.file_bytes < 64 * 1024
    True
    >>> print(report)  # doctest: +SKIP
    """
    options = ExportOptions(
        mode=mode,
        quantize=quantize,
        representative_dataset=representative_dataset,
        arena_budget=arena_budget,
        flash_budget=flash_budget,
        batch_size=batch_size,
        strip_strings=strip_strings,
        measure=measure,
    )
    return export_model(model, path, options)


def export_model(model, path, options: ExportOptions) -> ExportReport:
    """`export_litert` with its options checked (`ExportOptions`)."""
    if not getattr(model, "inputs", None):
        raise ValueError(
            "`model` must be a built Keras model with known inputs (a "
            "Sequential or functional model called on `keras.Input`)."
        )
    path = os.fspath(path)
    plan = plan_model(model, options)  # impossible budgets raise here, fast
    if keras.backend.backend() != "tensorflow":
        from keras_adntn.export import remote

        return remote.export_in_subprocess(model, path, options)
    return _export_tensorflow(model, path, options, plan)


def _export_tensorflow(model, path, options, plan):
    """The export in this (TensorFlow) process, of `plan` (the model's
    `deployment_plan.DeploymentPlan`)."""
    mode, quantize = options.mode_text, options.quantize
    budget = options.budget
    attempt = budget_module.fit(model, options, plan)
    plan, attempt = _refit(model, options, plan, attempt)
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
    messages = [p.note for p in plan.layers.values() if p.note]
    tolerance = _PARITY_WARNING.get(quantize)
    if parity is not None and tolerance is not None and parity > tolerance:
        messages.append(
            f"The exported LiteRT model (mode={mode!r}, quantize="
            f"{quantize!r}) departs from the Keras model: max|diff| / "
            f"max|output| = {parity:.3g} on a check input (expected <= "
            f"{tolerance:g}). Check the ops in the report."
        )
    measured = _measured(attempt, options, messages)
    flash = options.flash_budget
    if flash is not None and len(flatbuffer) > flash:
        messages.append(
            f"The file, {len(flatbuffer):,} bytes, exceeds flash_budget="
            f"{flash:,} bytes (the plan's estimate was within it)."
        )
    for message in messages:
        warnings.warn(message, stacklevel=3)
    if options.strip_strings:
        flatbuffer = convert_module.strip_strings(flatbuffer)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "wb") as f:
        f.write(flatbuffer)
    return ExportReport(
        path=path,
        mode=mode,
        quantize=quantize,
        route="in-process",
        file_bytes=len(flatbuffer),
        params=int(model.count_params()),
        parity_rel_error=parity,
        arena_budget=budget,
        flash_budget=flash,
        deployment=plan.to_dicts(),
        deployment_lines=plan.lines(),
        tiles={k: t.blocks for k, t in attempt.schedules.items() if t.tiled},
        warnings=messages,
        **measured,
        **report,
    )


def _refit(model, options, plan, attempt):
    """Where TFLM measured an arena over the budget that the estimates
    said fits (the model's live set holds more than its largest layer:
    skip connections, conversions), the layer of the largest estimated
    arena is planned again below it, and the new plan kept where it
    measures smaller (at most `_REFITS` times)."""
    caps = {}
    for _ in range(_REFITS):
        if attempt.tflm is None or attempt.tflm.arena_bytes <= options.budget:
            break
        largest = max(
            (
                p.chosen
                for p in plan.layers.values()
                if p.chosen.layer not in caps
            ),
            key=lambda c: c.arena_bytes,
            default=None,
        )
        if largest is None:
            break
        caps[largest.layer] = largest.arena_bytes - 1
        tighter = plan_model(model, options, caps, plan.candidates)
        if tighter.to_dicts() == plan.to_dicts():
            continue
        trial = budget_module.fit(model, options, tighter)
        if trial.tflm is None or (
            trial.tflm.arena_bytes >= attempt.tflm.arena_bytes
        ):
            break
        plan, attempt = tighter, trial
    return plan, attempt


def _measured(attempt, options, messages) -> dict:
    """The TFLM fields of the report (measured now where not yet), and
    the warnings about them appended to `messages`."""
    mode, quantize, budget = options.mode_text, options.quantize, options.budget
    if attempt.tflm is None and attempt.failure is None and options.measure:
        if tflm.available():
            attempt.measure()
    if attempt.failure is not None:
        messages.append(
            f"TensorFlow Lite Micro could not run the exported model "
            f"(mode={mode!r}, quantize={quantize!r}), so its arena is not "
            f"measured: {attempt.failure}"
        )
    if attempt.tflm is None:
        return {}
    if attempt.tflm.arena_bytes > budget:
        messages.append(
            f"The tensor arena measured on TensorFlow Lite Micro, "
            f"{attempt.tflm.arena_bytes:,} bytes, exceeds "
            f"arena_budget={budget:,} bytes even at the most blocks "
            f"tried ({_describe(attempt.schedules)}). Generation keeps "
            f"whole kernels in the arena for networks or layers that "
            f"cannot be tiled (see keras_adntn.export.tiling)."
        )
    return dict(
        tflm_arena_bytes=attempt.tflm.arena_bytes,
        tflm_latency_s=attempt.tflm.latency_s,
        tflm_parity_rel_error=convert_module.relative_error(
            attempt.tflm.outputs, attempt.want
        ),
    )


def _describe(tilings):
    tiled = {k: t for k, t in tilings.items() if t.tiled}
    if not tiled:
        return "no tiled layer"
    return ", ".join(f"{k}: {t.blocks} blocks" for k, t in tiled.items())
