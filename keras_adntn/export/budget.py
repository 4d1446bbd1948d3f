"""Fitting the tensor arena into a budget: `fit`.

Each `TNDense` and `TNConv2D` gets the device schedule
(`schedule.DeviceSchedule`) its deployment plan chose (`deployment_plan`).
The model is then converted and, where TensorFlow Lite
Micro is installed, measured: blocks are added to the largest block (or a
tree's head is taken in more tiles, `HeadedSchedule.smaller`) while the
measured arena is over the budget, or removed while it stays within.
"""

from keras_adntn.export import convert as convert_module
from keras_adntn.export import tflm
from keras_adntn.export.options import ExportOptions

# Conversions tried to fit the arena budget (each is measured on TFLM).
_MAX_FITS = 8


def schedules(model, options: ExportOptions, plan=None) -> dict:
    """`{layer name: DeviceSchedule}` of the generating layers that do not
    simply generate their whole kernel (none in `"cached"` mode): the
    `TNDense` and `TNConv2D` layers as `plan` (a
    `deployment_plan.DeploymentPlan`) chose."""
    if options.model_mode == "cached" or plan is None:
        return {}
    return plan.schedules()


class Attempt:
    """One conversion with given schedules, measured where possible.

    Attributes:
        schedules: the `{layer name: DeviceSchedule}` converted.
        trace: the `tracing.Trace`.
        flatbuffer: the converted bytes.
        inputs: the check input; `want`: Keras' outputs on it.
        tflm: the `tflm.TFLMResult` once measured (else None).
        failure: why TFLM could not run the file (else None).
    """

    def __init__(self, model, options: ExportOptions, schedules: dict):
        import tensorflow as tf

        from keras_adntn.export.tracing import Trace

        self.schedules = schedules
        self.trace = Trace(
            tf, model, options.model_mode, options.batch_size, schedules
        )
        self.flatbuffer, sample = convert_module.convert(
            model,
            self.trace,
            options.model_mode,
            options.quantize,
            options.representative_dataset,
        )
        self.inputs = convert_module.check_inputs(
            model, options.batch_size, sample
        )
        self.want = convert_module.keras_outputs(model, self.inputs)
        self.tflm = None
        self.failure = None

    def measure(self) -> int | None:
        """The measured arena (bytes), or None where TFLM cannot run the
        model (`self.failure` says why)."""
        try:
            self.tflm = tflm.measure(self.flatbuffer, self.inputs)
        except RuntimeError as error:
            self.failure = str(error)
            return None
        return self.tflm.arena_bytes


def fit(model, options: ExportOptions, plan=None) -> Attempt:
    """Converts the schedules of `plan`, then, measured on TFLM, takes
    smaller schedules while the arena is over the budget (`_smaller`), or,
    for the tiled layers, faster ones while it stays within
    (`_faster`)."""
    budget = options.budget
    attempt = Attempt(model, options, schedules(model, options, plan))
    if not (options.measure and tflm.available()):
        return attempt
    arena = attempt.measure()
    if not attempt.schedules or arena is None:
        return attempt
    if arena <= budget:
        return _faster(model, options, attempt)
    return _smaller(model, options, attempt, arena)


def _faster(model, options, attempt) -> Attempt:
    """Fewer blocks while the measured arena still fits and the modeled
    time falls (`estimated_seconds`: fewer blocks are not always faster
    where the blocks' generation shrinks with them)."""
    tries = 1
    rows = options.rows
    while tries < _MAX_FITS:
        faster = {}
        for k, s in attempt.schedules.items():
            f = s.faster()
            modeled = s.estimated_seconds(rows)
            better = f is not None and (
                modeled is None or f.estimated_seconds(rows) < modeled
            )
            faster[k] = f if better else s
        if all(faster[k] is attempt.schedules[k] for k in faster):
            break
        trial = Attempt(model, options, faster)
        tries += 1
        arena = trial.measure()
        if arena is None or arena > options.budget:
            break
        attempt = trial
    return attempt


def _smaller(model, options, attempt, arena) -> Attempt:
    """Smaller schedules (`_steps`) while the measured arena is over the
    budget and a step brings it down."""
    tries = 1
    while arena > options.budget and tries < _MAX_FITS:
        better = None
        for schedules in _steps(attempt.schedules):
            trial = Attempt(model, options, schedules)
            tries += 1
            trial_arena = trial.measure()
            if trial_arena is not None and trial_arena < arena:
                better = (trial, trial_arena)
                break
            if tries >= _MAX_FITS:
                break
        if better is None:  # no step helps
            break
        attempt, arena = better
    return attempt


def _steps(schedules):
    """The next schedules to try where the arena is over the budget: more
    blocks for the tiled layer of the largest block, then the other
    layers' smaller schedules (a tree's head in more tiles,
    `HeadedSchedule.smaller`)."""
    growable = [s for s in schedules.values() if s.tiled and s.smaller()]
    if growable:
        largest = max(growable, key=lambda s: s.block_entries)
        yield {**schedules, largest.layer.name: largest.smaller()}
    smaller = {k: s.smaller() for k, s in schedules.items() if not s.tiled}
    smaller = {k: s for k, s in smaller.items() if s is not None}
    if smaller:
        yield {**schedules, **smaller}
