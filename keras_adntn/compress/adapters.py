"""What the package knows about each Keras layer type it converts.

One adapter per teacher type (`Dense`, `Conv2D`, `MultiHeadAttention`)
holds all of it: which TN layer replaces it and through which classmethod,
when a layer of that type cannot be replaced, the replacement's arguments
and generator sizes, the teacher's kernels and biases, how its inputs are
passed and checked, and the features each of its kernels is applied to.
The rest of `keras_adntn.compress` is written once for all types.
"""

import math

import keras
import numpy as np

from keras_adntn.compress.arrays import finite
from keras_adntn.compress.arrays import subsample
from keras_adntn.compress.arrays import to_numpy
from keras_adntn.layers.tn_conv2d import TNConv2D
from keras_adntn.layers.tn_dense import TNDense
from keras_adntn.layers.tn_multi_head_attention import TNMultiHeadAttention

MAX_ROWS = 20000  # input rows (tokens, patches) kept for the statistics
BATCH = 256


class _Adapter:
    """The knowledge about one teacher type; what is written here holds
    for a layer with one input and one kernel (Dense, Conv2D)."""

    teacher: type  # the Keras layer class
    student: type  # the TN layer class replacing it
    method: str  # the TN class's classmethod doing the conversion
    # for that classmethod's docstring
    inputs_doc: str  # what the teacher's inputs `x` are
    bias_doc = "the bias absorbs"
    example: str

    # -- whether a layer can be replaced
    def unsupported(self, layer) -> str | None:
        """Why this built teacher cannot be replaced (its type's own
        reasons), or None."""
        return None

    def check(self, layer) -> None:
        """ValueError unless `layer` is a built teacher of this type that
        the TN layer can replace."""
        name = f"{self.student.__name__}.{self.method}"
        if type(layer) is not self.teacher:
            raise ValueError(
                f"`layer` must be a keras.layers.{self.teacher.__name__} for "
                f"{name}, got {type(layer).__name__}."
            )
        if not layer.built:
            raise ValueError(f"`layer` {layer.name!r} must be built.")
        reason = self.unsupported(layer)
        if reason:
            raise ValueError(
                f"`layer` {layer.name!r} cannot be converted by {name}: "
                f"{reason}."
            )

    # -- the replacement
    def own_args(self, config: dict) -> dict:
        """The TN layer's own arguments from the teacher's config."""
        raise NotImplementedError

    def student_args(self, layer, network, bond_dim, seed) -> dict:
        """All arguments of the TN layer replacing `layer`."""
        config = layer.get_config()
        return {
            **self.own_args(config),
            "network": network,
            "bond_dim": bond_dim,
            "seed": seed,
            "use_bias": config["use_bias"],
            "name": layer.name,
            "dtype": layer.dtype_policy,
            "bias_regularizer": config.get("bias_regularizer"),
            "bias_constraint": config.get("bias_constraint"),
        }

    def generator_shapes(self, layer) -> tuple:
        """Kernel shapes (per generator) the TN replacement of `layer` has,
        and the number of its other parameters (biases, qkv scale)."""
        raise NotImplementedError

    # -- the teacher's weights and inputs
    def projections(self, layer) -> dict:
        """`{projection: the layer holding its kernel and bias}`."""
        return {"kernel": layer}

    def weights(self, layer) -> dict:
        """`{projection: (kernel, bias)}` of the teacher as NumPy."""
        return {
            key: (
                to_numpy(p.kernel),
                None if p.bias is None else to_numpy(p.bias),
            )
            for key, p in self.projections(layer).items()
        }

    def call_tensors(self, args: list, kwargs: dict) -> tuple:
        """`(input tensors, other kwargs)` of a recorded call."""
        return args[:1], kwargs

    def call_inputs(self, layer, x, name: str = "x") -> list:
        """`x` as the list of arrays the layer is called with (checked)."""
        if isinstance(x, (list, tuple)):
            raise ValueError(
                f"`{name}` must be one array (the inputs of the layer), got "
                f"a {type(x).__name__}."
            )
        xs = [finite(name, x)]
        want = [_shapes(layer).get("input_shape")]
        return _check_shapes(layer, xs, want, name)

    def input_rows(self, layer, xs, call_kwargs) -> dict:
        """`{projection: (rows, features) inputs}` of the teacher's
        kernels (None where they cannot be had)."""
        x = xs[0]
        return {"kernel": subsample(x.reshape(-1, x.shape[-1]), MAX_ROWS)}


class _DenseAdapter(_Adapter):
    teacher = keras.layers.Dense
    student = TNDense
    method = "from_dense"
    inputs_doc = "any shape ending in its input size"
    example = (
        ">>> dense = keras.layers.Dense(64)\n"
        ">>> dense.build((None, 128))\n"
        ">>> small = TNDense.from_dense(dense, bond_dim=2)\n"
        ">>> small.units\n"
        "64"
    )

    def unsupported(self, layer) -> str | None:
        if len(layer.kernel.shape) != 2:
            return f"kernel of shape {tuple(layer.kernel.shape)}"
        return None

    def own_args(self, config: dict) -> dict:
        return {"units": config["units"], "activation": config["activation"]}

    def generator_shapes(self, layer) -> tuple:
        d_in, units = (int(s) for s in layer.kernel.shape)
        return [(d_in, units)], units if layer.use_bias else 0


class _Conv2DAdapter(_Adapter):
    teacher = keras.layers.Conv2D
    student = TNConv2D
    method = "from_conv2d"
    inputs_doc = "images; their im2col patches are used"
    example = (
        ">>> conv = keras.layers.Conv2D(32, 3)\n"
        ">>> conv.build((None, 16, 16, 16))\n"
        ">>> small = TNConv2D.from_conv2d(conv, bond_dim=2)\n"
        ">>> small.filters\n"
        "32"
    )

    def own_args(self, config: dict) -> dict:
        keys = ("kernel_size", "strides", "padding", "data_format")
        keys += ("dilation_rate", "groups", "activation")
        return {"filters": config["filters"], **{k: config[k] for k in keys}}

    def generator_shapes(self, layer) -> tuple:
        kh, kw, cin, filters = (int(s) for s in layer.kernel.shape)
        return [(kh, kw, cin, filters)], filters if layer.use_bias else 0

    def input_rows(self, layer, xs, call_kwargs) -> dict:
        if layer.groups != 1:
            return {"kernel": None}
        x = xs[0]
        pixels = math.prod(x.shape[1:-1])
        x = subsample(x, max(1, 4 * MAX_ROWS // pixels))
        return {"kernel": conv_patches(x, layer, MAX_ROWS)}


class _MultiHeadAttentionAdapter(_Adapter):
    teacher = keras.layers.MultiHeadAttention
    student = TNMultiHeadAttention
    method = "from_multi_head_attention"
    inputs_doc = (
        "the query array, or a tuple (query, value) or (query, value, key)"
    )
    bias_doc = "the biases absorb"
    example = (
        ">>> mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)\n"
        ">>> mha.build((None, 4, 16), (None, 4, 16))\n"
        ">>> small = TNMultiHeadAttention.from_multi_head_attention(mha)\n"
        ">>> small.num_heads\n"
        "2"
    )
    names = ("query", "value", "key")  # the call's inputs, in order

    def unsupported(self, layer) -> str | None:
        config = layer.get_config()
        if config.get("use_gate"):
            return "use_gate=True is not supported by TNMultiHeadAttention"
        if config.get("sliding_window") is not None:
            return "sliding_window is not supported by TNMultiHeadAttention"
        if getattr(layer, "_query_dense", None) is None:
            return "not built (its input sizes are unknown)"
        return None

    def own_args(self, config: dict) -> dict:
        keys = ("num_heads", "key_dim", "value_dim", "dropout")
        keys += ("output_shape", "attention_axes")
        return {k: config[k] for k in keys}

    def generator_shapes(self, layer) -> tuple:
        d = _attention_dims(layer)
        nq = d["heads"] * d["key_dim"]
        nv = d["heads"] * d["value_dim"]
        rows = max(d["query"], d["key"], d["value"])
        extra = 3 + (2 * nq + nv + d["out"] if layer.use_bias else 0)
        return [(rows, 2 * nq + nv), (nv, d["out"])], extra

    def projections(self, layer) -> dict:
        return {
            "query": layer._query_dense,
            "key": layer._key_dense,
            "value": layer._value_dense,
            "output": layer._output_dense,
        }

    def call_tensors(self, args: list, kwargs: dict) -> tuple:
        tensors = args[:3]
        for key in self.names[len(tensors) :]:
            if kwargs.get(key) is not None:
                tensors.append(kwargs[key])
        kwargs = {k: v for k, v in kwargs.items() if k not in self.names}
        return tensors, kwargs

    def call_inputs(self, layer, x, name: str = "x") -> list:
        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        if not 1 <= len(xs) <= 3:
            raise ValueError(
                f"`{name}` must be the query array, or a tuple (query, "
                f"value) or (query, value, key); got {len(xs)} arrays."
            )
        xs = [finite(name, a) for a in xs]
        while len(xs) < 3:
            xs.append(xs[1] if len(xs) == 2 else xs[0])  # value, key
        shapes = _shapes(layer)
        wanted = [
            shapes.get("query_shape"),
            shapes.get("value_shape"),
            shapes.get("key_shape") or shapes.get("value_shape"),
        ]
        return _check_shapes(layer, xs, wanted, name)

    def input_rows(self, layer, xs, call_kwargs) -> dict:
        q, v, k = xs
        rows = {
            "query": q.reshape(-1, q.shape[-1]),
            "key": k.reshape(-1, k.shape[-1]),
            "value": v.reshape(-1, v.shape[-1]),
        }
        tokens = math.prod(q.shape[1:-1])
        sample = [subsample(a, max(1, MAX_ROWS // tokens)) for a in xs]
        try:
            rows["output"] = _attention_context(layer, sample, call_kwargs)
        except Exception:  # private Keras API: weight-only for this one
            rows["output"] = None
        return {
            key: None if r is None else subsample(r, MAX_ROWS)
            for key, r in rows.items()
        }


ADAPTERS = {
    adapter.teacher: adapter
    for adapter in (
        _DenseAdapter(),
        _Conv2DAdapter(),
        _MultiHeadAttentionAdapter(),
    )
}


def adapter_for(layer) -> _Adapter | None:
    """The adapter of `layer`'s type (exactly), or None: not convertible."""
    return ADAPTERS.get(type(layer))


# -- helpers of the adapters
def _shapes(layer) -> dict:
    return getattr(layer, "_build_shapes_dict", None) or {}


def _check_shapes(layer, xs, wanted, name) -> list:
    for array, want in zip(xs, wanted):
        if want is None:
            continue
        want = tuple(want)
        if array.ndim != len(want) or any(
            w is not None and w != g for w, g in zip(want[1:], array.shape[1:])
        ):
            raise ValueError(
                f"`{name}` has shape {array.shape}; the layer "
                f"{layer.name!r} takes inputs of shape {want}."
            )
        if len(array) < 1 or len(array) != len(xs[0]):
            raise ValueError(
                f"`{name}`: the arrays must have the same number (>= 1) of "
                f"samples, got {[len(a) for a in xs]}."
            )
    return xs


def conv_patches(x, layer, limit) -> np.ndarray:
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


def _attention_dims(layer) -> dict:
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


def _attention_context(layer, xs, call_kwargs):
    """Inputs of the output projection of a MultiHeadAttention (NumPy),
    or None when they cannot be reproduced here (an attention mask)."""
    if set(call_kwargs) - {"use_causal_mask"}:
        return None
    causal = bool(call_kwargs.get("use_causal_mask", False))
    out = []
    for start in range(0, len(xs[0]), BATCH):
        q, v, k = (a[start : start + BATCH] for a in xs)
        query = layer._query_dense(q)
        key = layer._key_dense(k)
        value = layer._value_dense(v)
        mask = layer._compute_attention_mask(q, v, use_causal_mask=causal)
        context, _ = layer._compute_attention(
            query, key, value, attention_mask=mask, training=False
        )
        out.append(to_numpy(context))
    context = np.concatenate(out, 0)
    return context.reshape(-1, context.shape[-2] * context.shape[-1])
