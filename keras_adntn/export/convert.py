"""From a traced model to flatbuffer bytes (TensorFlow's LiteRT converter).

Quantisation:
- `"float16"`: float16 weights, float32 compute.
- `"int8"`, cached mode: full-integer post-training quantisation with int8
  builtins (per-tensor FULLY_CONNECTED weights, which every TFLite Micro
  version runs); float32 inputs and outputs with QUANTIZE / DEQUANTIZE at
  the edges.
- `"int8"`, other modes: the same, except that every generating layer
  (its generator, its matmul or conv, its bias) stays float32. A
  generator cannot run on per-tensor int8: its intermediates span ranges
  that rounding destroys (measured: output error 0.15 to 1.0 relative).
  The model is calibrated first, then quantised with those layers' ops
  denylisted. A `TNDense` whose schedule is `integer` (a contraction with
  constant blocks, or its stored kernel: no generation) is quantized in
  full, each contraction step calibrated (measured at 1024 and 4096 mpo:
  errors 0.049 and 0.028 against the int8 twin's 0.060). A layer trained
  with `kernel_quantization="int8"` still rounds its generated blocks to
  its int8 grid (scales fixed at export).
"""

import logging
import warnings

import keras
import numpy as np
from keras import ops

from keras_adntn._quiet import quiet_fd
from keras_adntn.export.flatbuffer import op_names_of
from keras_adntn.export.scopes import ANCHOR_ROW

MAX_CALIBRATION_SAMPLES = 500


def calibration_samples(data):
    """The samples of a `representative_dataset`, each a list of arrays
    (one per model input): what a callable yields, or the first
    `MAX_CALIBRATION_SAMPLES` rows of an array (list of arrays)."""
    if callable(data):
        for sample in data():
            if not isinstance(sample, (list, tuple)):
                sample = [sample]
            yield [np.asarray(v) for v in sample]
        return
    arrays = data if isinstance(data, (list, tuple)) else [data]
    arrays = [np.asarray(a) for a in arrays]
    for i in range(min(len(arrays[0]), MAX_CALIBRATION_SAMPLES)):
        yield [a[i : i + 1] for a in arrays]


def _representative(data, specs):
    def generator():
        for sample in calibration_samples(data):
            out = []
            for value, spec in zip(sample, specs):
                if value.ndim == len(spec.shape) - 1:
                    value = value[None]
                out.append(value.astype(spec.dtype.as_numpy_dtype))
            yield out

    return generator


def _converter(tf, trace):
    from tensorflow.python.framework import convert_to_constants

    frozen = convert_to_constants.convert_variables_to_constants_v2(
        trace.concrete
    )
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
    return converter


def convert(model, trace, mode, quantize, representative_dataset):
    """Converts a `tracing.Trace`.

    Returns:
        `(flatbuffer bytes, check sample or None)`: the sample is the first
        calibration sample of an int8 conversion (a list of arrays).

    Raises:
        ValueError: when the converter cannot produce builtin ops only.
    """
    import tensorflow as tf

    converter = _converter(tf, trace)
    sample = None
    denylist = False
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(
            representative_dataset,
            trace.concrete.structured_input_signature[0],
        )
        sample = next(iter(converter.representative_dataset()), None)
        # Per-tensor FULLY_CONNECTED weights: what every TFLite Micro
        # version runs, and per-channel scales and int64 zero points of a
        # small layer cost more bytes than its int8 weights save.
        flag = "_experimental_disable_per_channel_quantization_for_dense_layers"
        setattr(converter, flag, True)
        denylist = mode in ("on_the_fly", "factorized")
        if denylist:
            converter._experimental_calibrate_only = True
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                tf.lite.OpsSet.TFLITE_BUILTINS,
            ]
        else:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS_INT8
            ]
    try:
        with warnings.catch_warnings():
            # float32 model inputs of an int8 model: expected, not an issue
            warnings.filterwarnings(
                "ignore", message="Statistics for quantized inputs"
            )
            flatbuffer = converter.convert()
            if denylist:
                flatbuffer = _quantize_keeping_generators_float(
                    model, trace, flatbuffer
                )
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
    return bytes(flatbuffer), sample


def _quantize_keeping_generators_float(model, trace, calibrated):
    """int8 quantisation of a calibrated model, the generating layers'
    ops (loop bodies included) left in float32."""
    from tensorflow.lite.python import convert as lite_convert

    from keras_adntn.export.tracing import generating_layers

    generating = {layer.name for layer in generating_layers(model)}
    # contractions with constant weights are quantized in full
    generating -= {name for name, s in trace.schedules.items() if s.integer}
    rows = generating | {ANCHOR_ROW}
    names = op_names_of(
        calibrated, rows, [layer.name for layer in model.layers], trace.scopes
    )
    with quiet_fd(1):  # the quantiser prints its settings to stdout
        return lite_convert.mlir_quantize(
            calibrated,
            fully_quantize=False,
            disable_per_channel_for_dense_layers=True,
            denylisted_nodes=names,
        )


def check_inputs(model, batch_size, sample=None) -> list:
    """The check input: `sample` where given (int8: the first calibration
    sample), else standard normal noise (zeros for integer inputs), with
    the exported batch size."""
    if sample is not None:
        return [np.asarray(v) for v in sample]
    rng = np.random.default_rng(0)
    values = []
    for inp in model.inputs:
        shape = (batch_size or 1, *tuple(inp.shape)[1:])
        dtype = keras.backend.standardize_dtype(inp.dtype)
        if np.issubdtype(np.dtype(dtype), np.floating):
            values.append(rng.standard_normal(shape).astype(dtype))
        else:
            values.append(np.zeros(shape, dtype))
    return values


def keras_outputs(model, values) -> list:
    """The Keras model's outputs on `values`, as float arrays."""
    want = model(values[0] if len(values) == 1 else values, training=False)
    return [
        np.asarray(ops.convert_to_numpy(w)) for w in keras.tree.flatten(want)
    ]


def relative_error(got, want) -> float | None:
    """`max|got - want| / max|want|` over all outputs (None: mismatch)."""
    if len(got) != len(want) or any(
        np.shape(g) != np.shape(w) for g, w in zip(got, want)
    ):
        return None
    diff = max(float(np.max(np.abs(g - w))) for g, w in zip(got, want))
    scale = max(float(np.max(np.abs(w))) for w in want)
    return diff / scale if scale > 0 else diff


def litert_outputs(flatbuffer, values) -> list | None:
    """Runs the file with `ai_edge_litert`'s interpreter (None: inputs do
    not match)."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.interpreter import OpResolverType

    # the built-in kernels only: no XNNPACK delegate (nor its log line)
    interpreter = Interpreter(
        model_content=flatbuffer,
        experimental_op_resolver_type=(
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        ),
    )
    details = interpreter.get_input_details()
    if len(details) != len(values):
        return None
    for detail, value in zip(details, values):
        if tuple(value.shape) != tuple(detail["shape"]):
            interpreter.resize_tensor_input(detail["index"], value.shape)
    interpreter.allocate_tensors()
    for detail, value in zip(details, values):
        interpreter.set_tensor(detail["index"], value.astype(detail["dtype"]))
    interpreter.invoke()
    return [
        interpreter.get_tensor(d["index"])
        for d in interpreter.get_output_details()
    ]


def strip_strings(flatbuffer: bytes) -> bytes:
    """The flatbuffer without tensor names and signatures."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(flatbuffer)
    flatbuffer_utils.strip_strings(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
