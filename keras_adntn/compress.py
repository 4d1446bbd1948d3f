"""Compress a trained Keras model (SPEC §8, paper §7.6).

`compress(model, data)` follows the pipeline of the paper on a trained
`keras.Sequential` or functional model:

1. select the largest `Dense`, `Conv2D` and `MultiHeadAttention` layers
   (or the ones named in `layers`);
2. replace each with `TNDense`, `TNConv2D` or `TNMultiHeadAttention` of
   the requested network and size (a bond dimension, or the largest bond
   dimension that still reaches a target compression ratio);
3. initialise the generator from the teacher's weight: TT-SVD of the
   tensorised kernel for `network="mpo"` (exact at full bond), gradient
   steps on `reconstruction_loss` for the nonlinear networks; biases and
   every other layer's weights are copied;
4. fine-tune the whole new model with distillation from the original.

The input model is never modified. The returned `CompressionReport` lists
each replaced layer (parameters before/after, reconstruction error after
initialisation and after fine-tuning), the layers that were left as they
were and why, and the teacher's and student's accuracy (or loss).
"""

import math
from collections.abc import Mapping

import keras
import numpy as np
from keras import ops

from keras_adntn import networks
from keras_adntn.distiller import Distiller
from keras_adntn.layers.tn_conv2d import TNConv2D
from keras_adntn.layers.tn_dense import TNDense
from keras_adntn.layers.tn_multi_head_attention import TNMultiHeadAttention
from keras_adntn.losses import reconstruction_loss
from keras_adntn.tensorize import Tensorization

INITS = ("auto", "svd", "reconstruction", "activations", "random")
TASKS = ("auto", "classification", "regression")
SUPPORTED = {
    keras.layers.Dense: "TNDense",
    keras.layers.Conv2D: "TNConv2D",
    keras.layers.MultiHeadAttention: "TNMultiHeadAttention",
}
MAX_BOND_SEARCH = 1024


# -- the report
class CompressionReport:
    """What `compress` did: replaced layers, skipped layers, scores.

    Attributes:
        layers: one dict per replaced layer: `name`, `type`, `new_type`,
            `network`, `bond_dim`, `params_before`, `params_after`,
            `ratio`, `init`, `error_init` and `error_final` (relative
            Frobenius reconstruction errors `||W - W_teacher|| /
            ||W_teacher||`, all projections together for attention),
            `note`.
        skipped: dicts `name`, `type`, `reason` of the layers that were
            considered but left as they were.
        metric: `"accuracy"` or `"loss"` (mean squared error).
        scores: the metric of `teacher`, `student_init` (after
            initialisation) and `student_final` (after fine-tuning).
        evaluated_on: `"validation_data"` or `"data"`.
        params_before: parameters of the whole input model.
        params_after: parameters of the whole compressed model.

    Example:

    >>> student, report = compress(model, (x, y))  # doctest: +SKIP
    >>> print(report)  # doctest: +SKIP
    """

    def __init__(
        self,
        layers: list,
        skipped: list,
        metric: str,
        scores: dict,
        evaluated_on: str,
        params_before: int,
        params_after: int,
    ):
        self.layers = list(layers)
        self.skipped = list(skipped)
        self.metric = metric
        self.scores = dict(scores)
        self.evaluated_on = evaluated_on
        self.params_before = int(params_before)
        self.params_after = int(params_after)

    @property
    def replaced_params_before(self) -> int:
        """Parameters of the replaced layers in the input model."""
        return sum(r["params_before"] for r in self.layers)

    @property
    def replaced_params_after(self) -> int:
        """Parameters of their replacements."""
        return sum(r["params_after"] for r in self.layers)

    def to_dict(self) -> dict:
        """The report as plain Python data (JSON-serialisable).

        Returns:
            A dict with keys `layers`, `skipped`, `metric`, `scores`,
            `evaluated_on`, `params_before`, `params_after`,
            `replaced_params_before`, `replaced_params_after`.

        Example:

        ```python
        scores = report.to_dict()["scores"]
        scores["teacher"]  # e.g. 0.975
        ```
        """
        return {
            "layers": [dict(r) for r in self.layers],
            "skipped": [dict(r) for r in self.skipped],
            "metric": self.metric,
            "scores": dict(self.scores),
            "evaluated_on": self.evaluated_on,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "replaced_params_before": self.replaced_params_before,
            "replaced_params_after": self.replaced_params_after,
        }

    def table(self) -> str:
        """A printable table of the report.

        Returns:
            The table as one string (lines joined with newlines).

        Example:

        >>> print(report.table())  # doctest: +SKIP
        """
        lines = []
        if self.layers:
            width = max([len(r["name"]) for r in self.layers] + [5])
            header = (
                f"{'layer':<{width}}  {'replaced by':<28}  "
                f"{'params':>9}  {'->':>7}  {'ratio':>8}  "
                f"{'err init':>8}  {'err tuned':>9}"
            )
            lines += [header, "-" * len(header)]
            for r in self.layers:
                new = (
                    f"{r['type']}->{r['new_type']}"
                    if len(r["type"]) + len(r["new_type"]) < 27
                    else r["new_type"]
                )
                what = f"{new}"
                lines.append(
                    f"{r['name']:<{width}}  {what:<28}  "
                    f"{r['params_before']:>9}  {r['params_after']:>7}  "
                    f"{r['ratio']:>7.1f}x  {_fmt(r['error_init']):>8}  "
                    f"{_fmt(r['error_final']):>9}"
                )
                detail = f"network={r['network']} bond_dim={r['bond_dim']}"
                detail += f" init={r['init']}"
                if r.get("note"):
                    detail += f"; {r['note']}"
                lines.append(f"{'':<{width}}  {detail}")
            lines.append("-" * len(header))
            before = self.replaced_params_before
            after = self.replaced_params_after
            lines.append(
                f"replaced layers: {before} -> {after} parameters "
                f"({before / max(after, 1):.1f}x)"
            )
        else:
            lines.append("no layer was replaced")
        lines.append(
            f"whole model: {self.params_before} -> {self.params_after} "
            f"parameters ({self.params_before / max(self.params_after, 1):.1f}"
            f"x)"
        )
        if self.skipped:
            lines.append("left as they were:")
            for r in self.skipped:
                lines.append(f"  {r['name']} ({r['type']}): {r['reason']}")
        s = self.scores
        lines.append(
            f"{self.metric} on {self.evaluated_on}: teacher "
            f"{_fmt(s.get('teacher'))}, student after init "
            f"{_fmt(s.get('student_init'))}, after fine-tuning "
            f"{_fmt(s.get('student_final'))}"
        )
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def __repr__(self):
        s = self.scores
        return (
            f"CompressionReport(replaced={[r['name'] for r in self.layers]}, "
            f"params {self.params_before} -> {self.params_after}, "
            f"{self.metric} teacher={_fmt(s.get('teacher'))} "
            f"student={_fmt(s.get('student_final'))})"
        )


def _fmt(value):
    if value is None:
        return "-"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.3g}"


# -- argument checks
def _is_functional(model) -> bool:
    from keras.src.models.functional import Functional

    return isinstance(model, (keras.Sequential, Functional))


def _check_int(name, value, minimum):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < minimum
    ):
        raise ValueError(
            f"`{name}` must be an int >= {minimum}, got {value!r}."
        )
    return int(value)


def _check_number(name, value, low, high=None, low_open=False):
    ok = isinstance(value, (int, float, np.number)) and not isinstance(
        value, bool
    )
    if ok:
        value = float(value)
        ok = math.isfinite(value) and (
            value > low if low_open else value >= low
        )
        ok = ok and (high is None or value <= high)
    if not ok:
        bound = f"> {low}" if low_open else f">= {low}"
        if high is not None:
            bound += f" and <= {high}"
        raise ValueError(f"`{name}` must be a number {bound}, got {value!r}.")
    return float(value)


def _split_data(name, data):
    """`(x, y, x_val, y_val)` from a tuple or a mapping / npz."""
    if isinstance(data, Mapping) or hasattr(data, "files"):
        keys = list(data.files if hasattr(data, "files") else data.keys())
        if "x" not in keys or "y" not in keys:
            raise ValueError(
                f"`{name}` as a mapping must hold arrays 'x' and 'y' "
                f"(optionally 'x_val', 'y_val'); got keys {sorted(keys)}."
            )
        val = None
        if "x_val" in keys and "y_val" in keys:
            val = (data["x_val"], data["y_val"])
        return data["x"], data["y"], val
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1], None
    raise ValueError(
        f"`{name}` must be a tuple (x, y) or a mapping / .npz with arrays "
        f"'x' and 'y'; got {type(data).__name__}."
    )


def _check_xy(name, x, y, model):
    inputs = model.inputs
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    if len(xs) != len(inputs):
        raise ValueError(
            f"`{name}`: the model has {len(inputs)} inputs, got {len(xs)} "
            f"input arrays."
        )
    xs = [np.asarray(a) for a in xs]
    y = np.asarray(y)
    for k, (array, inp) in enumerate(zip(xs, inputs)):
        want = tuple(inp.shape)[1:]
        got = array.shape[1:]
        if not np.issubdtype(array.dtype, np.number):
            raise ValueError(
                f"`{name}`: input array {k} is not numeric ({array.dtype})."
            )
        if array.ndim != len(want) + 1 or any(
            w is not None and w != g for w, g in zip(want, got)
        ):
            raise ValueError(
                f"`{name}`: input array {k} has shape {array.shape}; the "
                f"model input needs (samples, {', '.join(map(str, want))})."
            )
        if len(array) != len(y) or len(array) < 1:
            raise ValueError(
                f"`{name}`: x has {len(array)} samples and y {len(y)}; they "
                f"must match and be >= 1."
            )
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"`{name}`: y is not numeric ({y.dtype}).")
    xs = [a.astype("float32") for a in xs]
    return (xs[0] if len(xs) == 1 else xs), y


# -- which layers
def _kind(layer):
    return SUPPORTED.get(type(layer))


def _calls(model) -> dict:
    """`{id(layer): number of calls}` in the model's own graph."""
    graph = getattr(model, "_functional", None) or model
    counts = {}
    for nodes in getattr(graph, "_nodes_by_depth", {}).values():
        for node in nodes:
            key = id(node.operation)
            counts[key] = counts.get(key, 0) + 1
    return counts


def _unsupported_reason(layer, model):
    """Why `layer` cannot be replaced, or None."""
    if not layer.built or not layer.weights:
        return "not built (its input size is unknown)"
    calls = _calls(model).get(id(layer), 1)
    if calls > 1:
        return f"shared layer (called at {calls} places in the graph)"
    policy = getattr(layer, "dtype_policy", None)
    if getattr(policy, "quantization_mode", None):
        return "quantized layer"
    if getattr(layer, "lora_enabled", False):
        return "LoRA-enabled layer"
    if isinstance(layer, keras.layers.MultiHeadAttention):
        config = layer.get_config()
        if config.get("use_gate"):
            return "use_gate=True is not supported by TNMultiHeadAttention"
        if config.get("sliding_window") is not None:
            return "sliding_window is not supported by TNMultiHeadAttention"
        if getattr(layer, "_query_dense", None) is None:
            return "not built (its input sizes are unknown)"
    if isinstance(layer, keras.layers.Dense) and len(layer.kernel.shape) != 2:
        return f"kernel of shape {tuple(layer.kernel.shape)}"
    return None


def _nested(model, prefix=""):
    """`(path, layer)` of supported layers inside nested models."""
    found = []
    for layer in model.layers:
        inner = getattr(layer, "layers", None)
        if isinstance(layer, keras.Model) and inner:
            path = f"{prefix}{layer.name}/"
            found += [(path + x.name, x) for x in inner if _kind(x)]
            found += _nested(layer, path)
    return found


def _select(model, layers, max_layers, min_params, new_params):
    """`(chosen layers, skipped rows)`; `new_params(layer)` is the size of
    the replacement (automatic selection skips layers it would not
    shrink)."""
    skipped = []
    by_name = {layer.name: layer for layer in model.layers}
    if layers is not None:
        chosen = []
        for name in layers:
            layer = by_name[name]
            reason = _unsupported_reason(layer, model)
            if reason:
                skipped.append(
                    {
                        "name": name,
                        "type": type(layer).__name__,
                        "reason": reason,
                    }
                )
            else:
                chosen.append(layer)
        return chosen, skipped
    candidates = [
        layer
        for layer in model.layers
        if _kind(layer) and layer.count_params() >= min_params
    ]
    candidates.sort(key=lambda layer: -layer.count_params())
    chosen = []
    for layer in candidates:
        reason = _unsupported_reason(layer, model)
        if not reason and new_params(layer) >= layer.count_params():
            reason = (
                f"the replacement would not be smaller ("
                f"{new_params(layer)} vs {layer.count_params()} parameters)"
            )
        if reason:
            skipped.append(
                {
                    "name": layer.name,
                    "type": type(layer).__name__,
                    "reason": reason,
                }
            )
        elif len(chosen) < max_layers:
            chosen.append(layer)
    for path, layer in _nested(model):
        if layer.count_params() >= min_params:
            skipped.append(
                {
                    "name": path,
                    "type": type(layer).__name__,
                    "reason": "inside a nested model (only top-level layers "
                    "are replaced)",
                }
            )
    return chosen, skipped


# -- sizes
def _mha_dims(layer):
    q = layer._query_dense.kernel.shape
    k = layer._key_dense.kernel.shape
    v = layer._value_dense.kernel.shape
    o = layer._output_dense.kernel.shape
    return {
        "query": int(q[0]),
        "key": int(k[0]),
        "value": int(v[0]),
        "heads": int(q[1]),
        "key_dim": int(q[2]),
        "value_dim": int(v[2]),
        "out": math.prod(int(d) for d in o[2:]),
    }


def _generator_shapes(layer):
    """Kernel shapes (per generator) the TN replacement of `layer` has, and
    the number of its other parameters (biases, qkv scale)."""
    if isinstance(layer, keras.layers.Dense):
        d_in, units = (int(s) for s in layer.kernel.shape)
        return [(d_in, units)], units if layer.use_bias else 0
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, cin, filters = (int(s) for s in layer.kernel.shape)
        return [(kh, kw, cin, filters)], filters if layer.use_bias else 0
    d = _mha_dims(layer)
    nq = d["heads"] * d["key_dim"]
    nv = d["heads"] * d["value_dim"]
    rows = max(d["query"], d["key"], d["value"])
    extra = 3 + (2 * nq + nv + d["out"] if layer.use_bias else 0)
    return [(rows, 2 * nq + nv), (nv, d["out"])], extra


def _tn_params(shapes, extra, network, bond_dim):
    cls = networks.get(network)
    total = extra
    for dims in shapes:
        t = Tensorization(dims)
        net = cls(num_modes=t.num_modes, radix=2, bond_dim=bond_dim)
        total += net.num_params
    return total


def _bond_for_ratio(layer, network, ratio):
    """Largest bond dim whose replacement is >= `ratio` times smaller."""
    shapes, extra = _generator_shapes(layer)
    dense = layer.count_params()
    best, previous = None, None
    for chi in range(1, MAX_BOND_SEARCH + 1):
        params = _tn_params(shapes, extra, network, chi)
        if dense / params < ratio or params == previous:
            break  # too big, or saturated: larger bonds change nothing
        best, previous = chi, params
    if best is None:
        return 1, (
            f"target_ratio {ratio:g} not reachable (bond_dim=1 gives "
            f"{dense / _bond1_params(shapes, extra, network):.1f}x)"
        )
    return best, ""


def _bond1_params(shapes, extra, network):
    return _tn_params(shapes, extra, network, 1)


# -- building the replacement
def _replacement(layer, network, bond_dim, seed):
    config = layer.get_config()
    common = {
        "network": network,
        "bond_dim": bond_dim,
        "seed": seed,
        "use_bias": config["use_bias"],
        "name": layer.name,
        "dtype": layer.dtype_policy,
        "bias_regularizer": config.get("bias_regularizer"),
        "bias_constraint": config.get("bias_constraint"),
    }
    if isinstance(layer, keras.layers.Dense):
        return TNDense(
            config["units"], activation=config["activation"], **common
        )
    if isinstance(layer, keras.layers.Conv2D):
        return TNConv2D(
            config["filters"],
            config["kernel_size"],
            strides=config["strides"],
            padding=config["padding"],
            data_format=config["data_format"],
            dilation_rate=config["dilation_rate"],
            groups=config["groups"],
            activation=config["activation"],
            **common,
        )
    return TNMultiHeadAttention(
        num_heads=config["num_heads"],
        key_dim=config["key_dim"],
        value_dim=config["value_dim"],
        dropout=config["dropout"],
        output_shape=config["output_shape"],
        attention_axes=config["attention_axes"],
        **common,
    )


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


def _teacher_weights(layer):
    """`{projection: (kernel, bias)}` of a teacher layer as NumPy."""
    if isinstance(layer, keras.layers.MultiHeadAttention):
        parts = {
            "query": layer._query_dense,
            "key": layer._key_dense,
            "value": layer._value_dense,
            "output": layer._output_dense,
        }
        return {
            k: (_np(d.kernel), None if d.bias is None else _np(d.bias))
            for k, d in parts.items()
        }
    bias = None if layer.bias is None else _np(layer.bias)
    return {"kernel": (_np(layer.kernel), bias)}


def _generated(new):
    """`{projection: generated kernel tensor}` of a TN layer."""
    if isinstance(new, TNMultiHeadAttention):
        return new.kernels
    return {"kernel": new.kernel}


def relative_error(
    new: keras.layers.Layer, teacher: keras.layers.Layer
) -> float:
    """`||W - W_teacher||_F / ||W_teacher||_F` over all kernels.

    Args:
        new: a built `TNDense`, `TNConv2D` or `TNMultiHeadAttention`.
        teacher: the `Dense`, `Conv2D` or `MultiHeadAttention` it replaces.

    Returns:
        The relative Frobenius error (all projections of attention
        together), a float.

    Example:

    >>> relative_error(student.layers[1], teacher.layers[1])  # doctest: +SKIP
    0.93
    """
    target = _teacher_weights(teacher)
    got = _generated(new)
    num = den = 0.0
    for key, (kernel, _) in target.items():
        num += float(np.sum((_np(got[key]) - kernel) ** 2))
        den += float(np.sum(kernel**2))
    return math.sqrt(num / den) if den > 0 else math.sqrt(num)


def _copy_biases(new, teacher):
    if not new.use_bias:
        return
    target = _teacher_weights(teacher)
    if isinstance(new, TNMultiHeadAttention):
        for key, (_, bias) in target.items():
            new.biases[key].assign(bias.reshape(new.biases[key].shape))
    else:
        new.bias.assign(target["kernel"][1])


# -- initialisation
def tt_svd_cores(network: networks.MPO, tensor: np.ndarray) -> dict:
    """MPO cores that reproduce `tensor` by TT-SVD (exact at full bond).

    Args:
        network: a built `keras_adntn.networks.MPO` with `groups=1`.
        tensor: `(radix**num_modes,)` or `(1, radix**num_modes)` values in
            the network's leaf order (`Tensorization.fold`).

    Returns:
        `{core name: (1, b_in, q, b_out) float32 array}`: left-orthogonal
        cores, truncated to the network's bond dimensions (the best
        approximation of each unfolding in turn).

    Example:

    >>> t = Tensorization((16, 8))
    >>> net = networks.MPO(num_modes=t.num_modes, bond_dim=8)
    >>> net.build()
    >>> cores = tt_svd_cores(net, t.fold(np.ones((1, 16, 8))))
    """
    if network.groups != 1:
        raise ValueError(f"`network` must have groups=1, got {network.groups}.")
    rest = np.asarray(tensor, dtype=np.float64).reshape(1, -1)
    cores = {}
    specs = network.cores
    for k, spec in enumerate(specs):
        b_in, q, b_out = spec.shape
        mat = rest.reshape(b_in * q, -1)
        if k == len(specs) - 1:
            cores[spec.name] = mat.reshape(1, b_in, q, b_out)
            break
        u, s, vt = np.linalg.svd(mat, full_matrices=False)
        r = min(b_out, len(s))
        core = np.zeros((b_in * q, b_out))
        core[:, :r] = u[:, :r]
        rest = np.zeros((b_out, vt.shape[1]))
        rest[:r] = s[:r, None] * vt[:r]
        cores[spec.name] = core.reshape(1, b_in, q, b_out)
    return {k: v.astype("float32") for k, v in cores.items()}


def _targets(new, teacher):
    """`[(tensorization, network, target (1, size) in leaf order)]`."""
    weights = _teacher_weights(teacher)
    if isinstance(new, TNDense):
        return [(new.tensorization, new.generator, weights["kernel"][0])]
    if isinstance(new, TNConv2D):
        return [(new.tensorization, new.generator, weights["kernel"][0])]
    out = weights["output"][0]
    pairs = [
        (
            new.output_tensorization,
            new.output_generator,
            out.reshape(out.shape[0] * out.shape[1], -1),
        )
    ]
    if not new.joint_qkv:
        return pairs
    rows = new.qkv_tensorization.dims[0]
    blocks = []
    for key in ("query", "key", "value"):
        kernel = weights[key][0]
        kernel = kernel.reshape(kernel.shape[0], -1)
        blocks.append(np.pad(kernel, ((0, rows - kernel.shape[0]), (0, 0))))
    return [
        (new.qkv_tensorization, new.qkv_generator, np.concatenate(blocks, 1))
    ] + pairs


def _init_svd(new, teacher):
    if isinstance(new, TNMultiHeadAttention):
        new.qkv_scale.assign(np.ones(new.qkv_scale.shape, "float32"))
    for tensorization, network, target in _targets(new, teacher):
        folded = tensorization.fold(target[None])
        for name, value in tt_svd_cores(network, folded).items():
            network._vars[name].assign(value)


def _rescale_qkv(new, teacher):
    """Sets `qkv_scale` so each of Wq, Wk, Wv starts at the teacher's RMS."""
    weights = _teacher_weights(teacher)
    got = new.kernels
    scale = _np(new.qkv_scale)
    for i, key in enumerate(("query", "key", "value")):
        have = math.sqrt(float(np.mean(_np(got[key]) ** 2)))
        want = math.sqrt(float(np.mean(weights[key][0] ** 2)))
        if have > 0 and want > 0:
            scale[:, i] *= want / have
    new.qkv_scale.assign(scale.astype("float32"))


class _ReconstructionFit(keras.Model):
    """Minimises the relative reconstruction error of a TN layer's kernels.

    Only the generator networks are tracked, so only their cores train;
    `call` returns the loss (`reconstruction_loss` of every projection,
    divided by the target's mean square) broadcast to the batch. With
    `metric` (a `(rows, rows)` matrix `R` with `R^T R` the covariance of
    the layer's inputs) the kernels are compared as `R @ W` (activation
    matching: `||X W - X W_teacher||^2` over the inputs `X`).
    """

    def __init__(self, new, teacher, metric=None, **kwargs):
        super().__init__(**kwargs)
        self.generators = [net for _, net, _ in _targets(new, teacher)]
        weights = _teacher_weights(teacher)
        self._layer_fn = lambda: new
        self._metric = None
        targets = {key: kernel for key, (kernel, _) in weights.items()}
        if metric is not None:
            kernel = targets["kernel"]
            self._shape = (metric.shape[0], -1)
            targets["kernel"] = metric @ kernel.reshape(self._shape)
            self._metric = metric.astype("float32")
        self._targets = {k: t.astype("float32") for k, t in targets.items()}
        self._scales = {
            key: 1.0 / max(float(np.mean(t**2)), 1e-12)
            for key, t in targets.items()
        }

    def call(self, x):
        got = _generated(self._layer_fn())
        if self._metric is not None:
            got = {
                "kernel": ops.matmul(
                    self._metric, ops.reshape(got["kernel"], self._shape)
                )
            }
        total = 0.0
        for key, target in self._targets.items():
            loss = reconstruction_loss(got[key], target)
            total = total + loss * self._scales[key]
        total = total / len(self._targets)
        return ops.zeros_like(x) + total


def _jit():
    """XLA for the fits on JAX (eager JAX is slow); plain graphs on
    TensorFlow (compiling costs more than it saves on these small fits)."""
    return "auto" if keras.backend.backend() == "jax" else False


def _mean_prediction(y_true, y_pred):
    return ops.mean(y_pred)


def _conv_patches(x, layer, limit):
    """`(samples, kh * kw * c_in)` input patches of a Conv2D (NumPy)."""
    if layer.data_format == "channels_first":
        x = np.transpose(x, (0, 2, 3, 1))
    (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
    dh, dw = layer.dilation_rate
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if layer.padding == "same":
        pads = []
        for size, s, span in zip(x.shape[1:3], (sh, sw), (span_h, span_w)):
            out = -(-size // s)
            total = max((out - 1) * s + span - size, 0)
            pads.append((total // 2, total - total // 2))
        x = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    out_h = (x.shape[1] - span_h) // sh + 1
    out_w = (x.shape[2] - span_w) // sw + 1
    windows = [
        x[
            :,
            i * dh : i * dh + (out_h - 1) * sh + 1 : sh,
            j * dw : j * dw + (out_w - 1) * sw + 1 : sw,
            :,
        ]
        for i in range(kh)
        for j in range(kw)
    ]
    patches = np.stack(windows, axis=3)  # (n, oh, ow, kh * kw, c)
    patches = patches.reshape(-1, kh * kw * x.shape[-1])
    if len(patches) > limit:
        rng = np.random.default_rng(0)
        patches = patches[rng.choice(len(patches), limit, replace=False)]
    return patches


def _input_metric(model, teacher, x, batch_size, max_samples=4096):
    """`R` with `R^T R = X^T X / n` over the layer's inputs, or None.

    Only for `Dense` and ungrouped `Conv2D` layers (their kernel is a
    matrix applied to the input features or patches).
    """
    if isinstance(teacher, keras.layers.Conv2D) and teacher.groups != 1:
        return None
    if not isinstance(teacher, (keras.layers.Dense, keras.layers.Conv2D)):
        return None
    features = keras.Model(model.inputs, teacher.input)
    xs = x if isinstance(x, list) else [x]
    n = len(xs[0])
    if n > max_samples:
        keep = np.random.default_rng(0).choice(n, max_samples, replace=False)
        xs = [a[np.sort(keep)] for a in xs]
    inputs = np.asarray(
        features.predict(
            xs if len(xs) > 1 else xs[0], batch_size=batch_size, verbose=0
        ),
        dtype=np.float64,
    )
    if isinstance(teacher, keras.layers.Conv2D):
        inputs = _conv_patches(inputs, teacher, 20000)
    else:
        inputs = inputs.reshape(-1, inputs.shape[-1])
    cov = inputs.T @ inputs / len(inputs)
    values, vectors = np.linalg.eigh(cov)
    values = np.maximum(values, 0.0)
    # A little of the identity keeps directions the data never visits
    # from drifting arbitrarily.
    values += 1e-3 * max(float(values.mean()), 1e-12)
    return np.sqrt(values)[:, None] * vectors.T


def _init_reconstruction(
    new, teacher, steps, learning_rate, verbose, metric=None
):
    if isinstance(new, TNMultiHeadAttention) and new.joint_qkv:
        _rescale_qkv(new, teacher)
    if steps == 0:
        return
    fit = _ReconstructionFit(
        new, teacher, metric=metric, name="reconstruction_fit"
    )
    fit.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=_mean_prediction,
        jit_compile=_jit(),
    )
    dummy = np.zeros((steps, 1), "float32")
    fit.fit(dummy, dummy, batch_size=1, epochs=1, verbose=verbose)


# -- distillation
class _Log(keras.layers.Layer):
    """Log of probabilities: turns a softmax output into logits."""

    def call(self, x):
        return ops.log(ops.maximum(x, 1e-7))


def _outputs_probabilities(pred) -> bool:
    pred = np.asarray(pred)
    if pred.ndim < 2 or pred.shape[-1] < 2:
        return False
    return bool(
        np.all(pred >= 0)
        and np.all(pred <= 1)
        and np.allclose(pred.sum(-1), 1.0, atol=1e-3)
    )


def _task(y, pred, task):
    """`"classification"` (labels or one-hot) or `"regression"`."""
    if task != "auto":
        return task
    pred = np.asarray(pred)
    if pred.ndim < 2 or pred.shape[-1] < 2:
        return "regression"
    y = np.asarray(y)
    if y.shape == pred.shape[:-1] and np.allclose(y, np.round(y)):
        return "classification"
    if y.shape == pred.shape and set(np.unique(y)) <= {0, 1}:
        return "classification"
    return "regression"


def _score(model, x, y, task, batch_size, pred=None):
    if pred is None:
        pred = model.predict(x, batch_size=batch_size, verbose=0)
    pred = np.asarray(pred)
    y = np.asarray(y)
    if task == "classification":
        labels = y if y.shape == pred.shape[:-1] else np.argmax(y, -1)
        return float(np.mean(np.argmax(pred, -1) == labels))
    return float(np.mean((pred.reshape(y.shape) - y) ** 2))


def _logits_model(model, probabilities):
    if not probabilities:
        return model
    return keras.Model(model.inputs, _Log(name="log_probs")(model.outputs[0]))


def _fine_tune(
    student,
    teacher,
    x,
    y,
    task,
    probabilities,
    epochs,
    batch_size,
    learning_rate,
    temperature,
    alpha,
    verbose,
):
    optimizer = keras.optimizers.Adam(learning_rate)
    if task == "regression":
        target = alpha * np.asarray(y, "float32").reshape(
            -1, *student.outputs[0].shape[1:]
        ) + (1.0 - alpha) * teacher.predict(x, batch_size=256, verbose=0)
        student.compile(optimizer=optimizer, loss="mse", jit_compile=_jit())
        student.fit(
            x, target, epochs=epochs, batch_size=batch_size, verbose=verbose
        )
        return
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[-1] > 1:
        loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    distiller = Distiller(
        _logits_model(student, probabilities),
        _logits_model(teacher, probabilities),
        alpha=alpha,
        temperature=temperature,
    )
    distiller.compile(optimizer=optimizer, loss=loss, jit_compile=_jit())
    distiller.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=verbose)


def _copy_model(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


# -- the entry point
def compress(
    model: keras.Model,
    data: tuple | Mapping,
    network: str = "ttn",
    bond_dim: int | None = None,
    target_ratio: float | None = None,
    layers: list | None = None,
    max_layers: int = 1,
    min_params: int = 1024,
    init: str = "auto",
    reconstruction_steps: int = 300,
    epochs: int = 10,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    temperature: float = 2.0,
    alpha: float = 0.1,
    task: str = "auto",
    validation_data: tuple | Mapping | None = None,
    verbose: int = 1,
    seed: int = 0,
) -> tuple:
    """Replaces the largest layers of a trained model with TN layers.

    The pipeline of the paper (§7.6): select the largest `Dense`, `Conv2D`
    and `MultiHeadAttention` layers, replace each with `TNDense`,
    `TNConv2D` or `TNMultiHeadAttention`, initialise the generators from
    the teacher's weights, copy the biases and every other weight, and
    fine-tune the new model by distillation from the original (task loss
    and soft labels, `Distiller`). The input model is not modified.

    Initialisation (`init`): `"svd"` (only for `network="mpo"`) writes the
    TT-SVD of the tensorised teacher kernel into the MPO cores (exact when
    `bond_dim` is full); `"reconstruction"` takes `reconstruction_steps`
    Adam steps on the generator cores minimising the relative
    `reconstruction_loss` to the teacher kernel (all four projections of
    attention; the Q/K/V scale `qkv_scale` is first set to the teacher's
    RMS); `"random"` keeps the layers' calibrated random initialisation;
    `"auto"` is `"svd"` for `"mpo"` and `"reconstruction"` otherwise.

    Classification (integer labels or one-hot targets with a multi-class
    output) is fine-tuned with `Distiller` (the output can be logits or a
    softmax: probabilities are turned into log-probabilities for the
    distillation) and scored by accuracy; anything else is regression,
    fine-tuned on the MSE to `alpha * y + (1 - alpha) * teacher(x)` and
    scored by mean squared error (`metric="loss"`).

    Layers that cannot be replaced (shared layers, unbuilt ones, quantized
    or LoRA layers, attention with `use_gate` or `sliding_window`, layers
    inside nested models) are left as they were and listed in the report.

    Args:
        model: a trained, built `keras.Sequential` or functional
            `keras.Model` with one output (subclassed models cannot be
            cloned layer by layer and are refused).
        data: training data, a tuple `(x, y)` or a mapping / `.npz` with
            arrays `"x"` and `"y"` (and optionally `"x_val"`, `"y_val"`,
            used when `validation_data` is None).
        network: generator network, one of `"ttn"`, `"attn"`, `"mera"`,
            `"brickwall"`, `"mpo"`.
        bond_dim: bond dimension of the new layers (default 2 when
            `target_ratio` is not given either).
        target_ratio: instead of `bond_dim`: per layer, the largest bond
            dimension whose compression ratio (dense / stored parameters,
            bias included) is still >= this number (> 1).
        layers: names of the layers to replace (default: the largest).
        max_layers: how many of the largest layers to replace when
            `layers` is None, int >= 1.
        min_params: layers with fewer parameters are not considered when
            `layers` is None, int >= 0.
        init: `"auto"`, `"svd"`, `"reconstruction"` or `"random"`.
        reconstruction_steps: Adam steps of the reconstruction fit per
            layer, int >= 0.
        epochs: epochs of distillation fine-tuning, int >= 0.
        batch_size: batch size of fine-tuning and evaluation, int >= 1.
        learning_rate: Adam learning rate of the fine-tuning and of the
            reconstruction fit (which uses 3x this), > 0.
        temperature: distillation temperature, > 0.
        alpha: weight of the task loss against the teacher's soft labels,
            in [0, 1].
        task: `"auto"`, `"classification"` or `"regression"`.
        validation_data: `(x, y)` or a mapping with `"x"`, `"y"` on which
            the report scores teacher and student (default: `data`).
        verbose: 0 (silent), 1 (progress bars) or 2 (one line per epoch).
        seed: seed of the new layers' initialisation (layer `k` uses
            `seed + k`).

    Returns:
        `(compressed_model, report)`: a new model of the same kind as
        `model` (compile it before training it further) and a
        `CompressionReport`.

    Raises:
        ValueError: a bad argument (named in the message), raised before
            any work.

    Example:

    >>> student, report = compress(
    ...     model, (x_train, y_train), network="ttn", bond_dim=2,
    ...     validation_data=(x_test, y_test), epochs=5,
    ... )  # doctest: +SKIP
    >>> print(report)  # doctest: +SKIP
    """
    # -- checks (nothing is built or trained before all of them pass) --
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`model` must be a keras.Sequential or functional keras.Model, "
            f"got {type(model).__name__}."
        )
    if not _is_functional(model):
        raise ValueError(
            f"`model` must be a keras.Sequential or functional keras.Model; "
            f"{type(model).__name__} is a subclassed model, which cannot be "
            f"cloned layer by layer."
        )
    if not model.built or not model.inputs:
        raise ValueError(
            "`model` must be built with known inputs (e.g. start it with "
            "keras.Input)."
        )
    if len(model.outputs) != 1:
        raise ValueError(
            f"`model` must have one output, got {len(model.outputs)}."
        )
    networks.get(network)
    if bond_dim is not None and target_ratio is not None:
        raise ValueError(
            "Give at most one of `bond_dim` and `target_ratio`, got both "
            f"(bond_dim={bond_dim!r}, target_ratio={target_ratio!r})."
        )
    if target_ratio is None:
        bond_dim = _check_int(
            "bond_dim", 2 if bond_dim is None else bond_dim, 1
        )
    else:
        target_ratio = _check_number(
            "target_ratio", target_ratio, 1.0, low_open=True
        )
    if layers is not None:
        if isinstance(layers, str):
            layers = [s for s in layers.split(",") if s]
        if not isinstance(layers, (list, tuple)) or not layers:
            raise ValueError(
                f"`layers` must be None or a non-empty list of layer names, "
                f"got {layers!r}."
            )
        names = [layer.name for layer in model.layers]
        for name in layers:
            if name not in names:
                raise ValueError(
                    f"`layers`: no layer named {name!r} at the top level of "
                    f"the model; layers: {names}."
                )
            layer = model.get_layer(name)
            if not _kind(layer):
                raise ValueError(
                    f"`layers`: {name!r} is a {type(layer).__name__}; "
                    f"compress replaces Dense, Conv2D and MultiHeadAttention "
                    f"layers."
                )
        layers = list(dict.fromkeys(layers))
    max_layers = _check_int("max_layers", max_layers, 1)
    min_params = _check_int("min_params", min_params, 0)
    if init not in INITS:
        raise ValueError(f"`init` must be one of {INITS}, got {init!r}.")
    if init == "svd" and network != "mpo":
        raise ValueError(
            f"`init`='svd' needs network='mpo' (TT-SVD is exact only for "
            f"the multilinear MPO); got network={network!r}. Use "
            f"'reconstruction' or 'auto'."
        )
    if init == "auto":
        init = "svd" if network == "mpo" else "activations"
    reconstruction_steps = _check_int(
        "reconstruction_steps", reconstruction_steps, 0
    )
    epochs = _check_int("epochs", epochs, 0)
    batch_size = _check_int("batch_size", batch_size, 1)
    learning_rate = _check_number(
        "learning_rate", learning_rate, 0.0, low_open=True
    )
    temperature = _check_number("temperature", temperature, 0.0, low_open=True)
    alpha = _check_number("alpha", alpha, 0.0, 1.0)
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}, got {task!r}.")
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ValueError(f"`verbose` must be 0, 1 or 2, got {verbose!r}.")
    seed = _check_int("seed", seed, 0)
    x, y, val = _split_data("data", data)
    x, y = _check_xy("data", x, y, model)
    if validation_data is not None:
        vx, vy, _ = _split_data("validation_data", validation_data)
        val = (vx, vy)
    if val is not None:
        val = _check_xy("validation_data", val[0], val[1], model)
    evaluated_on = "validation_data" if val is not None else "data"
    vx, vy = val if val is not None else (x, y)

    # -- selection and sizes --
    def size(layer):
        chi, note = bond_dim, ""
        if target_ratio is not None:
            chi, note = _bond_for_ratio(layer, network, target_ratio)
        return chi, note

    def new_params(layer):
        shapes, extra = _generator_shapes(layer)
        return _tn_params(shapes, extra, network, size(layer)[0])

    chosen, skipped = _select(model, layers, max_layers, min_params, new_params)
    plan = {}
    for k, layer in enumerate(chosen):
        chi, note = size(layer)
        plan[layer.name] = (chi, note, seed + k)

    # -- clone with replacements --
    def clone_function(layer):
        if layer.name in plan:
            chi, _, layer_seed = plan[layer.name]
            return _replacement(layer, network, chi, layer_seed)
        return layer.__class__.from_config(layer.get_config())

    if verbose:
        print(
            f"compress: replacing {list(plan) or 'no layer'} with "
            f"network={network!r}",
            flush=True,
        )
    student = keras.models.clone_model(model, clone_function=clone_function)
    for old in model.layers:
        if old.name not in plan and old.weights:
            student.get_layer(old.name).set_weights(old.get_weights())

    # -- initialisation --
    rows = []
    for old in chosen:
        new = student.get_layer(old.name)
        chi, note, _ = plan[old.name]
        _copy_biases(new, old)
        if verbose:
            print(f"initialising {old.name} ({init})", flush=True)
        how = init
        if init == "svd":
            _init_svd(new, old)
        elif init in ("reconstruction", "activations"):
            metric = None
            if init == "activations":
                metric = _input_metric(model, old, x, batch_size)
                if metric is None:
                    how = "reconstruction"
                    note = "; ".join(
                        filter(None, [note, "no activation matching here"])
                    )
            _init_reconstruction(
                new,
                old,
                reconstruction_steps,
                3 * learning_rate,
                verbose,
                metric,
            )
        rows.append(
            {
                "name": old.name,
                "type": type(old).__name__,
                "new_type": type(new).__name__,
                "network": network,
                "bond_dim": chi,
                "params_before": int(old.count_params()),
                "params_after": int(new.count_params()),
                "ratio": old.count_params() / new.count_params(),
                "init": how,
                "error_init": relative_error(new, old),
                "error_final": None,
                "note": note,
            }
        )

    # -- fine-tuning --
    pred = model.predict(vx, batch_size=batch_size, verbose=0)
    task = _task(vy, pred, task)
    metric = "accuracy" if task == "classification" else "loss"
    probabilities = _outputs_probabilities(pred)
    scores = {
        "teacher": _score(model, vx, vy, task, batch_size, pred),
        "student_init": _score(student, vx, vy, task, batch_size),
    }
    if epochs and plan:
        if verbose:
            print(f"fine-tuning by distillation ({epochs} epochs)", flush=True)
        _fine_tune(
            student,
            _copy_model(model),
            x,
            y,
            task,
            probabilities,
            epochs,
            batch_size,
            learning_rate,
            temperature,
            alpha,
            verbose,
        )
    scores["student_final"] = (
        _score(student, vx, vy, task, batch_size)
        if epochs and plan
        else scores["student_init"]
    )
    for row, old in zip(rows, chosen):
        row["error_final"] = relative_error(student.get_layer(old.name), old)
    report = CompressionReport(
        rows,
        skipped,
        metric,
        scores,
        evaluated_on,
        model.count_params(),
        student.count_params(),
    )
    return student, report


__all__ = ["CompressionReport", "compress", "relative_error", "tt_svd_cores"]
