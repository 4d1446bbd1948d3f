"""LiteRT (TFLite) export of models with generated kernels (SPEC §9).

Two deployment modes:

- `"cached"`: every generated kernel is computed once, at export time, and
  stored as a constant, so the file is an ordinary FULLY_CONNECTED /
  CONV_2D model (fastest, as large as the dense model). The kernels are
  generated eagerly rather than left to the converter's constant folding,
  which gives up on large intermediates (it then leaves generator ops, and
  even rank > 6 transposes that exist only as Flex ops, in the graph).
- `"on_the_fly"`: only the generator cores are stored; the kernels are
  generated inside the exported graph on every invocation (smallest file;
  the tensor arena must hold the generated kernel, see the report).

How on-the-fly export survives the converter: the LiteRT converter folds
every subgraph whose inputs are all constants, and a generator's inputs are
its cores, so a plain conversion turns the generator back into one big
constant. The export therefore *anchors* the generation to the model
input: `anchor = min(|x0|, 0)`, with `x0` the first entry of the first
model input, is exactly 0 for any finite input but not a constant, and
each kernel generation adds it to the first core it reads (the one its
state grows from). Everything downstream then depends on the input and
stays in the graph as BATCH_MATMUL / RESHAPE / TRANSPOSE / ELU builtins.
The anchor costs STRIDED_SLICE, ABS, MINIMUM and a RESHAPE once, plus an
ADD per generated kernel and per bias of a generating layer: biases are
anchored too (for bias-less layers, the activation input), because with a
constant zero or absent bias the converter (TF 2.21) fuses a RELU into the
FULLY_CONNECTED(x, TRANSPOSE(kernel)) and then rewrites that into a
BATCH_MATMUL, silently dropping the RELU. The very same layer code runs:
the export only switches `layers.common.generate_kernel` to
`KerasOps(max_rank=5)` (every transpose of rank <= 5, what TFLite Micro
accepts) through `_compute.generation_ops`.

TensorFlow is needed for the conversion and is imported lazily, only here.
Under another Keras backend (jax, torch) `export_litert` saves the model to
a temporary `.keras` file and converts it in a subprocess run with
`KERAS_BACKEND=tensorflow` (`python -m keras_adntn.export`); the model must
therefore be loadable with `keras.saving.load_model` (built-in and
`keras_adntn` layers are; other custom objects need registering with
`keras.saving.register_keras_serializable` in a module the subprocess
imports). Reading an exported file (the report) needs only `ai_edge_litert`.
"""

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import warnings
from collections import Counter

import keras
import numpy as np
from keras import ops

from keras_adntn import _compute
from keras_adntn._compute import KerasOps

MODES = ("cached", "on_the_fly")
QUANTIZATIONS = (None, "int8", "float16")

# Builtin operators of TensorFlow Lite Micro (its MicroMutableOpResolver).
# GELU is deliberately absent (SPEC §9).
TFLM_BUILTINS = frozenset(
    """
    ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL
    BATCH_TO_SPACE_ND BROADCAST_ARGS BROADCAST_TO CALL_ONCE CAST CEIL
    CONCATENATION CONV_2D COS CUMSUM DEPTH_TO_SPACE DEPTHWISE_CONV_2D
    DEQUANTIZE DIV ELU EMBEDDING_LOOKUP EQUAL EXP EXPAND_DIMS FILL FLOOR
    FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER GATHER_ND GREATER GREATER_EQUAL
    HARD_SWISH IF L2_NORMALIZATION L2_POOL_2D LEAKY_RELU LESS LESS_EQUAL LOG
    LOG_SOFTMAX LOGICAL_AND LOGICAL_NOT LOGICAL_OR LOGISTIC MAX_POOL_2D
    MAXIMUM MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2 PRELU
    QUANTIZE READ_VARIABLE REDUCE_MAX REDUCE_MIN RELU RELU6 RESHAPE
    RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR REVERSE_V2 ROUND RSQRT SELECT_V2
    SHAPE SIN SLICE SOFTMAX SPACE_TO_BATCH_ND SPACE_TO_DEPTH SPLIT SPLIT_V
    SQRT SQUARE SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM SVDF TANH
    TRANSPOSE TRANSPOSE_CONV UNIDIRECTIONAL_SEQUENCE_LSTM UNPACK VAR_HANDLE
    WHILE ZEROS_LIKE
    """.split()
)
# Rank limits of TFLite Micro kernels: op -> (lowest, highest) input rank.
TFLM_RANK_LIMITS = {"TRANSPOSE": (1, 5), "BATCH_MATMUL": (2, 5)}

ANCHOR_SCOPE = "adntn_anchor"
OTHER_ROW = "(other)"
ANCHOR_ROW = "(anchor)"
METADATA_ROW = "(metadata)"
_MAX_CALIBRATION_SAMPLES = 500
# Relative error above which the export warns (int8: no check).
_PARITY_WARNING = {None: 1e-3, "float16": 2e-2}


# -- report -----------------------------------------------------------------
@dataclasses.dataclass
class LayerExport:
    """One row of an `ExportReport`.

    Attributes:
        name: the Keras layer name (or `"(anchor)"`, `"(other)"`,
            `"(metadata)"`).
        class_name: the layer's class name ("" for the pseudo rows).
        params: the layer's Keras parameter count.
        stored_bytes: bytes of the constant buffers its ops read.
        ops: op histogram `{builtin name: count}` of its ops.
    """

    name: str
    class_name: str
    params: int
    stored_bytes: int
    ops: dict


@dataclasses.dataclass
class ExportReport:
    """What an exported LiteRT flatbuffer contains and costs.

    Attributes:
        path: the written `.tflite` file.
        mode: `"cached"` or `"on_the_fly"`.
        quantize: None, `"int8"` or `"float16"`.
        route: `"in-process"`, or `"subprocess"` (non-TensorFlow backend).
        file_bytes: size of the flatbuffer.
        params: Keras parameter count of the model.
        stored_bytes: bytes of all constant buffers (weights, cores, shape
            and permutation constants).
        ops: op histogram of the whole graph.
        layers: per-layer rows (`LayerExport`), then `(anchor)` (the
            on-the-fly anchor), `(other)` (ops of no layer) and
            `(metadata)` (buffers no op reads: conversion metadata).
        tflm_unsupported: op names TFLite Micro lacks (custom and Flex ops
            included).
        tflm_rank_issues: ops outside TFLite Micro's rank limits, e.g.
            `"TRANSPOSE rank 6 x2"`.
        max_transpose_rank: highest TRANSPOSE rank in the graph (0: none).
        activation_bytes: sum of the sizes of all non-constant tensors (what
            a tensor arena without any buffer reuse would need).
        parity_rel_error: `max|LiteRT - Keras| / max|Keras|` on one check
            input (standard normal noise; for int8 the first calibration
            sample), run with `ai_edge_litert` at export time (None where
            the inputs or outputs could not be matched). The export warns
            when it exceeds 1e-3 (float32) or 2e-2 (float16).
        float_ops: histogram of the ops with a float32 output, QUANTIZE /
            DEQUANTIZE aside: in an int8 model, the ops the quantiser left
            in float (e.g. ELU, which it does not quantise).
        peak_activation_bytes: largest total size of the non-constant
            tensors alive at once when the ops run in order (inputs and
            outputs of the running op included): a lower bound on the
            tensor arena of a memory-planning runtime (TFLite Micro adds
            alignment, scratch buffers and its own bookkeeping).
    """

    path: str
    mode: str
    quantize: str | None
    route: str
    file_bytes: int
    params: int
    stored_bytes: int
    ops: dict
    layers: list
    tflm_unsupported: list
    tflm_rank_issues: list
    max_transpose_rank: int
    activation_bytes: int
    peak_activation_bytes: int
    parity_rel_error: float | None = None
    float_ops: dict = dataclasses.field(default_factory=dict)

    @property
    def tflm_compatible(self) -> bool:
        """True when every op is a TFLite Micro builtin within its limits."""
        return not self.tflm_unsupported and not self.tflm_rank_issues

    @property
    def builtin_only(self) -> bool:
        """True when the graph has no custom (or Flex) op."""
        return not any(name.startswith("CUSTOM") for name in self.ops)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ExportReport":
        """Inverse of `to_dict`."""
        data = dict(data)
        data["layers"] = [LayerExport(**row) for row in data["layers"]]
        return cls(**data)

    def __str__(self) -> str:
        head = (
            f"LiteRT export {self.path}\n"
            f"mode={self.mode} quantize={self.quantize} route={self.route} "
            f"file={self.file_bytes:,} bytes"
        )
        rows = [("layer", "class", "params", "stored bytes", "ops")]
        for row in self.layers:
            rows.append(
                (
                    row.name,
                    row.class_name,
                    f"{row.params:,}",
                    f"{row.stored_bytes:,}",
                    _format_ops(row.ops),
                )
            )
        rows.append(
            (
                "total",
                "",
                f"{self.params:,}",
                f"{self.stored_bytes:,}",
                _format_ops(self.ops),
            )
        )
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [head]
        for k, r in enumerate(rows):
            cells = [
                r[0].ljust(widths[0]),
                r[1].ljust(widths[1]),
                r[2].rjust(widths[2]),
                r[3].rjust(widths[3]),
                r[4],
            ]
            lines.append("  ".join(cells))
            if k == 0 or k == len(rows) - 2:
                lines.append("-" * (sum(widths) + 8 + 20))
        if self.tflm_compatible:
            lines.append("TFLite Micro: every op is a supported builtin.")
        else:
            issues = list(self.tflm_unsupported) + list(self.tflm_rank_issues)
            lines.append("TFLite Micro issues: " + ", ".join(issues))
        if self.quantize == "int8":
            lines.append(
                "int8 model, ops left in float32: "
                + (_format_ops(self.float_ops) or "none")
            )
        if self.parity_rel_error is not None:
            lines.append(
                f"parity vs Keras (check input): max|diff|/max|output| = "
                f"{self.parity_rel_error:.2e}"
            )
        lines.append(
            f"max TRANSPOSE rank: {self.max_transpose_rank}; activations: "
            f"{self.activation_bytes:,} bytes in all, peak live "
            f"{self.peak_activation_bytes:,} bytes (arena lower bound)"
        )
        return "\n".join(lines)


def _format_ops(histogram):
    return ", ".join(f"{k} x{v}" for k, v in sorted(histogram.items()))


# -- argument checks ----------------------------------------------------------
def _check_args(mode, quantize, representative_dataset, batch_size):
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


# -- public entry -------------------------------------------------------------
def export_litert(
    model: keras.Model,
    path: str,
    mode: str = "cached",
    quantize: str | None = None,
    representative_dataset=None,
    *,
    batch_size: int | None = 1,
    strip_strings: bool = False,
) -> ExportReport:
    """Writes `model` as a LiteRT (TFLite) flatbuffer of builtin ops only.

    Args:
        model: a built Keras model with known inputs (Sequential or
            functional), possibly containing TN layers.
        path: where to write the `.tflite` file.
        mode: `"cached"` (generated kernels stored as constants: an
            ordinary FULLY_CONNECTED / CONV_2D model) or `"on_the_fly"`
            (only the cores are stored; the kernels are generated in the
            graph with rank <= 5 transposes).
        quantize: None (float32), `"float16"` (float16 weights, float32
            compute) or `"int8"` (full-integer post-training quantisation
            with int8 builtins; inputs and outputs stay float32, with
            QUANTIZE / DEQUANTIZE at the edges; ops the quantiser has no
            int8 kernel for, such as the generators' ELU in on-the-fly
            mode, stay float32 and are listed in `float_ops`).
        representative_dataset: calibration data for `"int8"`: a callable
            returning an iterable of lists of input arrays (the LiteRT
            convention), or an array (single-input models) / list of arrays
            with samples along axis 0 (at most 500 are used).
        batch_size: static batch dimension of the exported inputs (1 suits
            microcontrollers), or None for a dynamic one.
        strip_strings: drop tensor names and signatures from the file
            (smaller; the report is computed before stripping).

    Returns:
        An `ExportReport`: per layer and in total the parameters, stored
        bytes and op histogram, the ops TFLite Micro lacks, transpose ranks,
        the file size and activation-memory estimates.

    Raises:
        ValueError: for a bad `mode`, `quantize` or `batch_size`, for
            `"int8"` without `representative_dataset`, or when the converter
            cannot produce builtin ops only.

    Example:

    >>> from keras_adntn import TNDense
    >>> from keras_adntn.export import export_litert
    >>> model = keras.Sequential([keras.Input((1024,)), TNDense(1024)])
    >>> report = export_litert(model, "tn.tflite", mode="on_the_fly")
    >>> report.file_bytes < 4 * model.count_params() + 32 * 1024
    True
    >>> print(report)  # doctest: +SKIP
    """
    _check_args(mode, quantize, representative_dataset, batch_size)
    if not getattr(model, "inputs", None):
        raise ValueError(
            "`model` must be a built Keras model with known inputs (a "
            "Sequential or functional model called on `keras.Input`)."
        )
    path = os.fspath(path)
    if keras.backend.backend() != "tensorflow":
        return _export_in_subprocess(
            model,
            path,
            mode,
            quantize,
            representative_dataset,
            batch_size,
            strip_strings,
        )
    return _export_tensorflow(
        model,
        path,
        mode,
        quantize,
        representative_dataset,
        batch_size,
        strip_strings,
    )


# -- conversion (TensorFlow backend) -----------------------------------------
class _AnchoredOps(KerasOps):
    """`KerasOps(max_rank=5)` adding the anchor to the first core it reads.

    A fresh instance serves each `generate_kernel` call, so the first core
    of every network (its latent, or the first core of its chain: the one
    the state grows from) depends on the model input, and so does every
    contraction after it.
    """

    def __init__(self, anchor):
        super().__init__(max_rank=5)
        self.anchor = anchor

    def convert(self, x):
        x = ops.cast(x, "float32")
        if self.anchor is not None:
            x = ops.add(x, self.anchor)
            self.anchor = None
        return x


class _EagerOps(KerasOps):
    """`KerasOps` whose every primitive runs eagerly, outside the trace.

    Inside the traced serving function each generated kernel is thus
    computed once at export time and enters the graph as one constant:
    the cached mode does not rely on the converter's constant folding,
    which gives up on large intermediate results (and then leaves
    generator ops, or transposes of rank > 6 that only exist as Flex ops,
    in the graph).
    """

    def __init__(self, tf):
        super().__init__(max_rank=None)
        self._tf = tf
        self.scopes = {}  # id(variable) -> graph name scope of its read

    def _eager(self, name, *args):
        with self._tf.init_scope():
            return getattr(KerasOps, name)(*args)

    def convert(self, x):
        if isinstance(x, keras.Variable):
            self.scopes[id(x)] = self._tf.get_current_name_scope()
        return self._eager("convert", x)

    def reshape(self, x, shape):
        return self._eager("reshape", x, shape)

    def transpose(self, x, axes):
        return self._eager("transpose", x, axes)

    def lead_matmul(self, x, m):
        return self._eager("lead_matmul", x, m)

    def matmul(self, x, m):
        return self._eager("matmul", x, m)

    def crop(self, x, sizes):
        return self._eager("crop", x, sizes)

    def mask(self, x, threshold, active):
        return self._eager("mask", x, threshold, active)

    def activate(self, fn, x):
        return self._eager("activate", fn, x)


def _generating_layers(model):
    """Layers (nested ones too) with a generator network as a sublayer."""
    from keras_adntn.networks.base import GeneratorNetwork

    found = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, GeneratorNetwork):
            continue
        subs = layer._flatten_layers(include_self=False, recursive=False)
        if any(isinstance(sub, GeneratorNetwork) for sub in subs):
            found.append(layer)
    return found


def _anchor_mapping(tf, model, x):
    """The anchor, and the anchored values of the generating layers' own
    variables (biases...), for `keras.StatelessScope`.

    Anchoring the bias keeps it out of the matmul that uses the generated
    kernel. Without it, a zero (or absent) bias lets the converter turn
    FULLY_CONNECTED(x, TRANSPOSE(kernel)) with a fused RELU into a
    BATCH_MATMUL and drop the RELU (a converter bug seen with TF 2.21).
    """
    from keras_adntn.networks.base import GeneratorNetwork

    with tf.name_scope(ANCHOR_SCOPE):
        first = tf.reshape(tf.cast(x, tf.float32), [-1])[:1]
        anchor = tf.minimum(tf.abs(first), 0.0)
        mapping = []
        for layer in _generating_layers(model):
            generated = {
                id(v)
                for sub in layer._flatten_layers(include_self=False)
                if isinstance(sub, GeneratorNetwork)
                for v in sub.weights
            }
            with tf.name_scope(layer.name):
                for variable in layer.weights:
                    if id(variable) in generated:
                        continue
                    if not tf.as_dtype(variable.dtype).is_floating:
                        continue
                    value = tf.convert_to_tensor(variable.value)
                    mapping.append(
                        (variable, value + tf.cast(anchor, value.dtype))
                    )
    return anchor, mapping


@contextlib.contextmanager
def _anchored_activations(model, anchor):
    """Adds the anchor before the activation of bias-less generating layers.

    The bias-less counterpart of anchoring the bias (see `_anchor_mapping`):
    an ADD between the matmul and its RELU keeps the converter from fusing
    the RELU into a FULLY_CONNECTED it then rewrites into a BATCH_MATMUL.
    """
    patched = []
    for layer in _generating_layers(model):
        activation = getattr(layer, "activation", None)
        if (
            getattr(layer, "bias", "absent") is not None
            or not callable(activation)
            or activation is keras.activations.linear
        ):
            continue

        def anchored(x, activation=activation):
            return activation(ops.add(x, ops.cast(anchor, x.dtype)))

        patched.append((layer, activation))
        layer.activation = anchored
    try:
        yield
    finally:
        for layer, activation in patched:
            layer.activation = activation


def _input_specs(tf, model, batch_size):
    specs = []
    for k, inp in enumerate(model.inputs):
        shape = (batch_size, *tuple(inp.shape)[1:])
        dtype = tf.as_dtype(keras.backend.standardize_dtype(inp.dtype))
        name = re.sub(r"[^A-Za-z0-9_]", "_", inp.name or f"input_{k}")
        specs.append(tf.TensorSpec(shape, dtype, name=name))
    return specs


def _serving_function(tf, model, mode, batch_size):
    specs = _input_specs(tf, model, batch_size)

    def call(*args):
        inputs = args[0] if len(args) == 1 else list(args)
        if mode == "on_the_fly":
            anchor, mapping = _anchor_mapping(tf, model, args[0])
            with keras.StatelessScope(state_mapping=mapping):
                with _compute.generation_ops(lambda: _AnchoredOps(anchor)):
                    with _anchored_activations(model, anchor):
                        return model(inputs, training=False)
        with _compute.generation_ops(eager_ops):
            return model(inputs, training=False)

    eager_ops = _EagerOps(tf)
    concrete = tf.function(
        call, input_signature=specs, autograph=False
    ).get_concrete_function()
    return concrete, eager_ops.scopes


def _layer_scopes(model, concrete, eager_reads):
    """Maps each top-level layer to its name scope in the traced graph.

    Keras may uniquify scope names (`tn_dense` -> `tn_dense_1`), so the
    scope is read from the ops that read the layer's variables (or, for
    the cores read eagerly in cached mode, from `eager_reads`: the name
    scope at each read).
    """
    captured = {id(ext): internal for ext, internal in concrete.graph.captures}
    scopes = {}
    for layer in model.layers:
        pattern = re.compile(re.escape(layer.name) + r"(_\d+)?")
        for variable in layer.weights:
            handle = getattr(getattr(variable, "value", None), "handle", None)
            placeholder = captured.get(id(handle))
            readers = [] if placeholder is None else placeholder.consumers()
            names = [reader.name for reader in readers]
            if id(variable) in eager_reads:
                names.append(eager_reads[id(variable)].rstrip("/") + "/read")
            for name in names:
                if name.startswith(ANCHOR_SCOPE + "/"):
                    continue
                parts = name.split("/")
                for k, part in enumerate(parts[:-1]):
                    if pattern.fullmatch(part):
                        scopes[layer.name] = "/".join(parts[: k + 1])
                        break
                if layer.name in scopes:
                    break
            if layer.name in scopes:
                break
    return scopes


def _representative(tf, data, specs):
    if callable(data):
        source = data
    else:
        arrays = data if isinstance(data, (list, tuple)) else [data]
        arrays = [np.asarray(a) for a in arrays]
        count = min(len(arrays[0]), _MAX_CALIBRATION_SAMPLES)

        def source():
            for i in range(count):
                yield [a[i : i + 1] for a in arrays]

    def generator():
        for sample in source():
            if not isinstance(sample, (list, tuple)):
                sample = [sample]
            out = []
            for value, spec in zip(sample, specs):
                value = np.asarray(value)
                if value.ndim == len(spec.shape) - 1:
                    value = value[None]
                out.append(value.astype(spec.dtype.as_numpy_dtype))
            yield out

    return generator


def _convert(model, mode, quantize, representative_dataset, batch_size):
    """Returns `(flatbuffer bytes, layer scopes, check sample or None)`."""
    import tensorflow as tf
    from tensorflow.python.framework import convert_to_constants

    concrete, eager_reads = _serving_function(tf, model, mode, batch_size)
    scopes = _layer_scopes(model, concrete, eager_reads)
    frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
    # A frozen function needs no trackable object (passing the model takes
    # a slower saved-model path); silence the converter's note about it.
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    finally:
        absl_logger.setLevel(level)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    sample = None
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(
            tf, representative_dataset, concrete.structured_input_signature[0]
        )
        sample = next(iter(converter.representative_dataset()), None)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
        ]
        # Per-tensor FULLY_CONNECTED weights: what every TFLite Micro
        # version runs, and per-channel scales and int64 zero points of a
        # small layer cost more bytes than its int8 weights save.
        flag = "_experimental_disable_per_channel_quantization_for_dense_layers"
        setattr(converter, flag, True)
    try:
        with warnings.catch_warnings():
            # float32 model inputs of an int8 model: expected, not an issue
            warnings.filterwarnings(
                "ignore", message="Statistics for quantized inputs"
            )
            flatbuffer = converter.convert()
    except Exception as error:  # the converter raises ConverterError
        lines = [line.strip() for line in str(error).splitlines()]
        keep = [
            line
            for line in lines
            if "error:" in line or line.startswith(("TF Select ops", "tf."))
        ]
        detail = " | ".join(dict.fromkeys(keep or lines[-2:]))[:800]
        raise ValueError(
            f"LiteRT conversion with mode={mode!r}, quantize={quantize!r} "
            f"failed with builtin ops only (no Flex / custom ops): {detail}"
        ) from error
    return flatbuffer, scopes, sample


def _export_tensorflow(
    model,
    path,
    mode,
    quantize,
    representative_dataset,
    batch_size,
    strip_strings,
    route="in-process",
):
    flatbuffer, scopes, sample = _convert(
        model, mode, quantize, representative_dataset, batch_size
    )
    layers = [
        (layer.name, type(layer).__name__, int(layer.count_params()))
        for layer in model.layers
    ]
    report = analyze_flatbuffer(flatbuffer, layers, scopes)
    parity = _parity(model, flatbuffer, sample)
    tolerance = _PARITY_WARNING.get(quantize)
    if parity is not None and tolerance is not None and parity > tolerance:
        warnings.warn(
            f"The exported LiteRT model (mode={mode!r}, quantize="
            f"{quantize!r}) departs from the Keras model: max|diff| / "
            f"max|output| = {parity:.3g} on a check input (expected <= "
            f"{tolerance:g}). Check the ops in the report.",
            stacklevel=3,
        )
    if strip_strings:
        flatbuffer = _strip_strings(flatbuffer)
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
        **report,
    )


def _parity(model, flatbuffer, sample=None):
    """max|LiteRT - Keras| / max|Keras| on one input, or None.

    The input is `sample` (a list of arrays) where given, else standard
    normal noise (zeros for integer inputs).
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()
    if len(details) != len(model.inputs):
        return None
    rng = np.random.default_rng(0)
    values = []
    for k, detail in enumerate(details):
        shape = tuple(int(d) for d in detail["shape"])
        if sample is not None:
            value = np.asarray(sample[k]).astype(detail["dtype"])
        elif np.issubdtype(detail["dtype"], np.floating):
            value = rng.standard_normal(shape).astype(detail["dtype"])
        else:
            value = np.zeros(shape, detail["dtype"])
        if value.shape != shape:
            interpreter.resize_tensor_input(detail["index"], value.shape)
        values.append(value)
    interpreter.allocate_tensors()
    for detail, value in zip(details, values):
        interpreter.set_tensor(detail["index"], value)
    interpreter.invoke()
    got = [
        interpreter.get_tensor(d["index"])
        for d in interpreter.get_output_details()
    ]
    want = model(values[0] if len(values) == 1 else values, training=False)
    want = [
        np.asarray(ops.convert_to_numpy(w)) for w in keras.tree.flatten(want)
    ]
    if len(got) != len(want) or any(
        g.shape != w.shape for g, w in zip(got, want)
    ):
        return None
    diff = max(float(np.max(np.abs(g - w))) for g, w in zip(got, want))
    scale = max(float(np.max(np.abs(w))) for w in want)
    return diff / scale if scale > 0 else diff


def _strip_strings(flatbuffer):
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(flatbuffer)
    flatbuffer_utils.strip_strings(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


# -- flatbuffer analysis (no TensorFlow needed) -------------------------------
_TYPE_BYTES = {
    "FLOAT32": 4,
    "FLOAT16": 2,
    "INT32": 4,
    "UINT8": 1,
    "INT64": 8,
    "BOOL": 1,
    "INT16": 2,
    "INT8": 1,
    "FLOAT64": 8,
    "UINT32": 4,
    "UINT16": 2,
    "INT4": 1,
    "BFLOAT16": 2,
    "COMPLEX64": 8,
}


def _enum_names(enum):
    return {
        v: k
        for k, v in vars(enum).items()
        if not k.startswith("_") and isinstance(v, int)
    }


def _buffer_bytes(buffer):
    if buffer is None:
        return 0
    if buffer.Offset() > 1:
        return int(buffer.Size())
    return int(buffer.DataLength())


def analyze_flatbuffer(
    flatbuffer: bytes, layers=(), scopes: dict | None = None
) -> dict:
    """Op histograms, constant bytes and memory estimates of a flatbuffer.

    Args:
        flatbuffer: the `.tflite` bytes.
        layers: `(name, class_name, params)` of the model's top-level layers.
        scopes: `{layer name: graph name scope}` used to attribute ops (by
            their output tensor names) to layers; ops of no layer go to the
            `(anchor)` / `(other)` rows, constants to the layer of their
            first reader.

    Returns:
        A dict with the `ExportReport` fields `stored_bytes`, `ops`,
        `layers`, `tflm_unsupported`, `tflm_rank_issues`,
        `max_transpose_rank`, `activation_bytes`, `peak_activation_bytes`.
    """
    from ai_edge_litert import schema_py_generated as schema

    scopes = dict(scopes or {})
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    buffers = [model.Buffers(i) for i in range(model.BuffersLength())]
    layer_rows = {name: (cls, params) for name, cls, params in layers}
    histograms = {name: Counter() for name in layer_rows}
    for name in (ANCHOR_ROW, OTHER_ROW, METADATA_ROW):
        histograms[name] = Counter()
    stored, float_ops = Counter(), Counter()
    seen_buffers = set()
    unsupported, rank_issues = set(), Counter()
    max_transpose_rank = 0
    activation_bytes = peak = 0

    def owner(name):
        for piece in name.split(";"):
            if piece.startswith(ANCHOR_SCOPE + "/"):
                parts = piece.split("/")
                if len(parts) > 2 and parts[1] in histograms:
                    return parts[1]
                return ANCHOR_ROW
            best = None
            for layer, scope in scopes.items():
                if piece == scope or piece.startswith(scope + "/"):
                    if best is None or len(scope) > len(scopes[best]):
                        best = layer
            if best is not None:
                return best
        return OTHER_ROW

    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        tensors = [graph.Tensors(i) for i in range(graph.TensorsLength())]

        def is_constant(t):
            b = tensors[t].Buffer()
            return 0 < b < len(buffers) and _buffer_bytes(buffers[b]) > 0

        def nbytes(t):
            tensor = tensors[t]
            shape = tensor.ShapeAsNumpy() if tensor.ShapeLength() else []
            size = int(np.prod([max(int(d), 1) for d in shape]))
            type_name = type_names.get(tensor.Type(), "FLOAT32")
            return size * _TYPE_BYTES.get(type_name, 4)

        def tensor_name(t):
            name = tensors[t].Name()
            return name.decode() if name else ""

        producer = {}
        operators = [graph.Operators(i) for i in range(graph.OperatorsLength())]
        last_use = {}
        for k, op in enumerate(operators):
            for t in op.InputsAsNumpy() if op.InputsLength() else []:
                last_use[int(t)] = k
        for t in graph.OutputsAsNumpy() if graph.OutputsLength() else []:
            last_use[int(t)] = len(operators)
        live = {
            int(t): nbytes(int(t))
            for t in (graph.InputsAsNumpy() if graph.InputsLength() else [])
        }
        activation_bytes += sum(live.values())
        for k, op in enumerate(operators):
            code = model.OperatorCodes(op.OpcodeIndex())
            number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = op_names.get(number, f"BUILTIN_{number}")
            if name == "CUSTOM":
                custom = code.CustomCode()
                custom = custom.decode() if custom else "?"
                name = f"CUSTOM({custom})"
            inputs = op.InputsAsNumpy() if op.InputsLength() else []
            inputs = [int(t) for t in inputs if t >= 0]
            outputs = [
                int(t)
                for t in (op.OutputsAsNumpy() if op.OutputsLength() else [])
            ]
            # Outputs carry the op's scope, except the graph outputs, which
            # are renamed: fall back on the names of the constants read.
            # Last resort: the layer that produced an input.
            row = OTHER_ROW
            for t in outputs + [t for t in inputs if is_constant(t)]:
                row = owner(tensor_name(t))
                if row != OTHER_ROW:
                    break
            if row == OTHER_ROW:
                for t in inputs:
                    if producer.get(t) in layer_rows:
                        row = producer[t]
                        break
            for t in outputs:
                producer[t] = row
            histograms[row][name] += 1
            if name not in ("QUANTIZE", "DEQUANTIZE") and any(
                type_names.get(tensors[t].Type()) == "FLOAT32" for t in outputs
            ):
                float_ops[name] += 1
            for t in inputs:
                b = tensors[t].Buffer()
                if is_constant(t) and b not in seen_buffers:
                    seen_buffers.add(b)
                    stored[row] += _buffer_bytes(buffers[b])
            if name not in TFLM_BUILTINS:
                unsupported.add(name)
            rank = max(
                (tensors[t].ShapeLength() for t in inputs[:2]), default=0
            )
            if name == "TRANSPOSE":
                max_transpose_rank = max(max_transpose_rank, rank)
            if name in TFLM_RANK_LIMITS:
                low, high = TFLM_RANK_LIMITS[name]
                if not low <= rank <= high:
                    rank_issues[f"{name} rank {rank}"] += 1
                if name == "TRANSPOSE" and len(inputs) > 1:
                    if not is_constant(inputs[1]):
                        rank_issues["TRANSPOSE non-constant perm"] += 1
            for t in outputs:
                live[t] = nbytes(t)
                activation_bytes += live[t]
            peak = max(peak, sum(live.values()))
            for t in list(live):
                if last_use.get(t, -1) <= k:
                    del live[t]
    # every buffer, also those no op reads
    total_stored = sum(_buffer_bytes(b) for i, b in enumerate(buffers) if i > 0)
    unread = total_stored - sum(stored.values())
    if unread > 0:
        stored[METADATA_ROW] += unread
    rows = []
    for name, (cls, params) in layer_rows.items():
        rows.append(
            dict(
                name=name,
                class_name=cls,
                params=params,
                stored_bytes=int(stored[name]),
                ops=dict(histograms[name]),
            )
        )
    for name in (ANCHOR_ROW, OTHER_ROW, METADATA_ROW):
        if histograms[name] or stored[name]:
            rows.append(
                dict(
                    name=name,
                    class_name="",
                    params=0,
                    stored_bytes=int(stored[name]),
                    ops=dict(histograms[name]),
                )
            )
    total_ops = Counter()
    for h in histograms.values():
        total_ops.update(h)
    return dict(
        stored_bytes=int(total_stored),
        ops=dict(total_ops),
        layers=[LayerExport(**r) for r in rows],
        tflm_unsupported=sorted(unsupported),
        tflm_rank_issues=[f"{k} x{v}" for k, v in sorted(rank_issues.items())],
        max_transpose_rank=int(max_transpose_rank),
        activation_bytes=int(activation_bytes),
        peak_activation_bytes=int(peak),
        float_ops=dict(float_ops),
    )


# -- other backends: convert in a TensorFlow subprocess -----------------------
def _materialize(representative_dataset):
    """Calibration samples as a list of lists of arrays."""
    if callable(representative_dataset):
        samples = []
        for sample in representative_dataset():
            if not isinstance(sample, (list, tuple)):
                sample = [sample]
            samples.append([np.asarray(v) for v in sample])
            if len(samples) >= _MAX_CALIBRATION_SAMPLES:
                break
        return samples
    arrays = representative_dataset
    if not isinstance(arrays, (list, tuple)):
        arrays = [arrays]
    arrays = [np.asarray(a) for a in arrays]
    count = min(len(arrays[0]), _MAX_CALIBRATION_SAMPLES)
    return [[a[i : i + 1] for a in arrays] for i in range(count)]


def _export_in_subprocess(
    model,
    path,
    mode,
    quantize,
    representative_dataset,
    batch_size,
    strip_strings,
):
    import keras_adntn

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
            "--mode",
            mode,
            "--report",
            report_path,
            "--batch-size",
            "none" if batch_size is None else str(batch_size),
        ]
        if quantize is not None:
            command += ["--quantize", quantize]
        if strip_strings:
            command.append("--strip-strings")
        if representative_dataset is not None:
            samples = _materialize(representative_dataset)
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
        root = os.path.dirname(os.path.dirname(keras_adntn.__file__))
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
    return ExportReport.from_dict(data)


def _load_samples(data_path):
    data = np.load(data_path)
    samples = {}
    for key in data.files:
        i, j = (int(v) for v in key[1:].split("_"))
        samples.setdefault(i, {})[j] = data[key]
    return [
        [samples[i][j] for j in sorted(samples[i])] for i in sorted(samples)
    ]


def _main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m keras_adntn.export",
        description="Export a saved .keras model to LiteRT (run with "
        "KERAS_BACKEND=tensorflow).",
    )
    parser.add_argument("model", help="path of a .keras model")
    parser.add_argument("output", help="path of the .tflite file to write")
    parser.add_argument("--mode", default="cached", choices=MODES)
    parser.add_argument(
        "--quantize", default=None, choices=[q for q in QUANTIZATIONS if q]
    )
    parser.add_argument("--representative", default=None, help=".npz file")
    parser.add_argument("--batch-size", default="1")
    parser.add_argument("--strip-strings", action="store_true")
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
    report = export_litert(
        model,
        args.output,
        mode=args.mode,
        quantize=args.quantize,
        representative_dataset=samples,
        batch_size=batch,
        strip_strings=args.strip_strings,
    )
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report.to_dict(), f)
    print(report)


if __name__ == "__main__":
    _main()
