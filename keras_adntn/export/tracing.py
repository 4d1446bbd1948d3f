"""Tracing a Keras model into the TensorFlow graph the converter reads.

The very same layer code runs; the export only chooses, through one
`keras_adntn.kernels.device_context.DeviceContext` made current for the
trace, how the kernels' products are computed:

- `"cached"`: `EagerOps` computes every generated kernel once, outside the
  trace, so it enters the graph as a constant (an ordinary FULLY_CONNECTED
  / CONV_2D model). The converter's own constant folding is not relied on:
  it gives up on large intermediates.
- `"factorized"`: as `"on_the_fly"`, except that `TNDense` layers with a
  linear generator take their product from a
  `contraction.FactorizedSchedule` (the input contracted with constant
  block matrices of the cores; no kernel is made), or for a tree from a
  `headed_contraction.HeadedSchedule`, and the other layers whose kernels
  can be contracted (`TNConv2D`, `TNMultiHeadAttention` with
  `network="mpo"`) take their own factorized path in the trace (the
  context's `read`): their block matrices depend on the cores only, so
  the converter folds them into FULLY_CONNECTED weights.
- `"on_the_fly"`: `TNDense` layers take their product from a
  `tiling.DenseTiling` (the kernel made and consumed block by block in a
  WHILE loop, its cores constants of the loop body). Other generating
  layers (`TNConv2D`, `TNMultiHeadAttention`) generate their whole kernel
  with `DeviceOps`, *anchored* to the model input: the converter folds
  every subgraph whose inputs are all constants, so `anchor = min(|x0|, 0)`
  (exactly 0 for a finite input, but not a constant) is added to the
  first core each generation reads, and to the layer's own variables
  (biases), keeping the generator in the graph as builtins.

`DeviceOps` writes every contraction the way TensorFlow Lite Micro runs it
without persistent copies. TFLM's BATCH_MATMUL keeps a persistent
transposed copy of its left input when `adj_x` is set and of its right
input unless `adj_y` is: state-sized buffers that are never freed. And
the converter fuses a TRANSPOSE feeding a matmul into those flags. So a
contraction of the leading mode (size `a`, a bond or a leaf pair: small)
is a sum of `a` broadcast MULs, a chain step is FULLY_CONNECTED with the
core as weights, and every transpose has rank <= 5.
"""

import re

import keras
import numpy as np

from keras_adntn.export.schedule import int8_scales
from keras_adntn.export.scopes import ANCHOR_SCOPE
from keras_adntn.kernels import device_context
from keras_adntn.kernels.device_context import DeviceContext
from keras_adntn.networks.executors import KerasOps


class DeviceOps(KerasOps):
    """The generation executor of on-the-fly exports (see the module doc).

    Args:
        tf: the TensorFlow module.
        anchor: None, or a scalar tensor added to the first core read (the
            anchor of an untiled generation).
        constants: read variables as constants of their current value
            (inside a loop body, so that the body captures nothing).
        reads: a dict to record `{id(variable): name scope}` of each read.
    """

    def __init__(self, tf, anchor=None, constants=False, reads=None):
        super().__init__(max_rank=5)
        self._tf = tf
        self.anchor = anchor
        self.constants = constants
        self.reads = {} if reads is None else reads

    def convert(self, x):
        tf = self._tf
        if isinstance(x, keras.Variable):
            self.reads[id(x)] = tf.get_current_name_scope()
            if self.constants:
                with tf.init_scope():  # the value now, outside the trace
                    value = np.asarray(x.value.numpy())
                x = tf.constant(value)
        x = tf.cast(x, tf.float32)
        if self.anchor is not None:
            x = x + self.anchor
            self.anchor = None
        return x

    def lead_matmul(self, x, m):
        # (g, a, rest) x (g, a, b) -> (g, rest, b) as a sum of `a` outer
        # products (MUL with broadcasting, ADD): no transpose of the state
        # for the converter to fuse into a BATCH_MATMUL `adj_x`, which
        # TFLM runs with a persistent state-sized copy.
        tf = self._tf
        g, a, rest = x.shape
        b = m.shape[2]
        out = None
        for j in range(a):
            term = tf.reshape(x[:, j], (g, rest, 1)) * tf.reshape(
                m[:, j], (g, 1, b)
            )
            out = term if out is None else out + term
        return out

    def matmul(self, x, m):
        # (g, rows, k) x (g, k, n) -> (g, rows, n): FULLY_CONNECTED per
        # group, the small core as its (n, k) weights.
        tf = self._tf
        groups = x.shape[0]
        if groups == 1:
            xs, ms = [tf.reshape(x, x.shape[1:])], [tf.reshape(m, m.shape[1:])]
        else:
            xs, ms = tf.unstack(x), tf.unstack(m)
        outs = [
            tf.matmul(a, tf.transpose(b), transpose_b=True)
            for a, b in zip(xs, ms)
        ]
        if groups == 1:
            return tf.reshape(outs[0], (1, *outs[0].shape))
        return tf.stack(outs)

    def take(self, x, index, axis):
        return self._tf.gather(x, index, axis=axis)


class EagerOps(KerasOps):
    """`KerasOps` whose every primitive runs eagerly, outside the trace.

    Inside the traced serving function each generated kernel is thus
    computed once at export time and enters the graph as one constant.
    """

    def __init__(self, tf):
        super().__init__(max_rank=None)
        self._tf = tf
        self.reads = {}  # id(variable) -> graph name scope of its read

    def _eager(self, name, *args):
        with self._tf.init_scope():
            return getattr(KerasOps, name)(*args)

    def convert(self, x):
        if isinstance(x, keras.Variable):
            self.reads[id(x)] = self._tf.get_current_name_scope()
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

    def take(self, x, index, axis):
        return self._eager("take", x, index, axis)


def constant_reader(tf):
    """`variable -> its current value` read eagerly (outside the trace)."""

    def read(x):
        if isinstance(x, keras.Variable):
            with tf.init_scope():
                return np.asarray(x.value.numpy())
        return np.asarray(x)

    return read


def generating_layers(model) -> list:
    """Layers (nested ones too) with a `GeneratedKernel` as a sublayer."""
    from keras_adntn.kernels import GeneratedKernel

    found = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, GeneratedKernel):
            continue
        subs = layer._flatten_layers(include_self=False, recursive=False)
        if any(isinstance(sub, GeneratedKernel) for sub in subs):
            found.append(layer)
    return found


def _anchor_mapping(tf, layers, x):
    """The anchor, and the anchored values of `layers`' own variables
    (biases...), for `keras.StatelessScope`.

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
        for layer in layers:
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


def input_specs(tf, model, batch_size):
    """`tf.TensorSpec`s of the model inputs with a static batch size."""
    specs = []
    for k, inp in enumerate(model.inputs):
        shape = (batch_size, *tuple(inp.shape)[1:])
        dtype = tf.as_dtype(keras.backend.standardize_dtype(inp.dtype))
        name = re.sub(r"[^A-Za-z0-9_]", "_", inp.name or f"input_{k}")
        specs.append(tf.TensorSpec(shape, dtype, name=name))
    return specs


class Trace:
    """A traced serving function and what the export needs to know of it.

    Args:
        tf: the TensorFlow module.
        model: the Keras model.
        mode: `"cached"`, `"on_the_fly"` or `"factorized"`.
        batch_size: static batch size of the inputs (None: dynamic).
        schedules: `{layer name: schedule.DeviceSchedule}` of the layers
            whose product runs by their schedule (`budget.schedules`).

    Attributes:
        concrete: the concrete function.
        scopes: `{top-level layer name: graph name scope}`.
    """

    def __init__(self, tf, model, mode, batch_size, schedules=None):
        self.schedules = dict(schedules or {})
        self._tf, self._model, self._mode = tf, model, mode
        self._reads = {}
        self._eager_ops = EagerOps(tf)
        self._scales = {
            name: int8_scales(s.layer) for name, s in self.schedules.items()
        }
        specs = input_specs(tf, model, batch_size)
        self.concrete = tf.function(
            self._call, input_signature=specs, autograph=False
        ).get_concrete_function()
        self._reads.update(self._eager_ops.reads)
        self.scopes = _layer_scopes(model, self.concrete, self._reads)

    def _call(self, *args):
        inputs = args[0] if len(args) == 1 else list(args)
        if self._mode == "cached":
            context = DeviceContext(make_ops=lambda: self._eager_ops)
            with device_context.tracing(context):
                return self._model(inputs, training=False)
        unanchored = {
            id(s.layer) for s in self.schedules.values() if not s.anchored
        }
        anchored = [
            layer
            for layer in generating_layers(self._model)
            if id(layer) not in unanchored
        ]
        anchor, mapping = _anchor_mapping(self._tf, anchored, args[0])
        with keras.StatelessScope(state_mapping=mapping):
            with device_context.tracing(self._context(anchor)):
                return self._model(inputs, training=False)

    def _context(self, anchor) -> DeviceContext:
        """The trace's `DeviceContext` (modes other than `"cached"`)."""
        tf, reads = self._tf, self._reads

        def product(schedule):
            def make_ops():
                if schedule.anchored:
                    return DeviceOps(tf, anchor=anchor, reads=reads)
                # cores: constants of the loop body
                return DeviceOps(tf, constants=True, reads=reads)

            scales = self._scales[schedule.layer.name]
            return lambda x: schedule.matmul(tf, x, make_ops, scales)

        return DeviceContext(
            make_ops=lambda: DeviceOps(tf, anchor=anchor, reads=reads),
            products={id(s.layer): product(s) for s in self.schedules.values()},
            read=constant_reader(tf) if self._mode == "factorized" else None,
        )


def _layer_scopes(model, concrete, reads):
    """Maps each top-level layer to its name scope in the traced graph.

    Keras may uniquify scope names (`tn_dense` -> `tn_dense_1`), so the
    scope is read from the ops that read the layer's variables (or, for
    cores read by an executor, from `reads`: the name scope at each read).
    A layer whose variables are all read outside its scope (an anchor, or
    constants of a factorized trace) gets the one scope of its name that
    no other layer has.
    """
    captured = {id(ext): internal for ext, internal in concrete.graph.captures}
    scopes = {}
    for layer in model.layers:
        for variable in layer.weights:
            handle = getattr(getattr(variable, "value", None), "handle", None)
            placeholder = captured.get(id(handle))
            readers = [] if placeholder is None else placeholder.consumers()
            names = [reader.name for reader in readers]
            if id(variable) in reads:
                names.append(reads[id(variable)].rstrip("/") + "/read")
            found = _scopes_of(layer.name, names)
            if found:
                scopes[layer.name] = found[0]
                break
    names = [op.name for op in concrete.graph.get_operations()]
    for layer in model.layers:
        if layer.name in scopes or not layer.weights:
            continue
        found = set(_scopes_of(layer.name, names)) - set(scopes.values())
        if len(found) == 1:
            scopes[layer.name] = found.pop()
    return scopes


def _scopes_of(layer_name, names):
    """The scopes (`.../<layer_name>` or `.../<layer_name>_<n>`) that the
    op `names` outside the anchor are under, in their order."""
    pattern = re.compile(re.escape(layer_name) + r"(_\d+)?")
    found = []
    for name in names:
        parts = name.split("/")
        if parts[0] == ANCHOR_SCOPE:
            continue
        for k, part in enumerate(parts[:-1]):
            if pattern.fullmatch(part):
                found.append("/".join(parts[: k + 1]))
                break
    return found
