"""Per-layer conversion: a trained Dense / Conv2D / MultiHeadAttention
becomes a TN layer (the logic behind `TNDense.from_dense`,
`TNConv2D.from_conv2d` and `TNMultiHeadAttention.from_multi_head_attention`).

Data-aware when the layer's inputs `x` are given (the generator is fitted
in the metric of those inputs, see `keras_adntn.compress.init`),
weight-only otherwise.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_adntn import networks
from keras_adntn.compress import init as tn_init
from keras_adntn.compress.select import _bond_for_ratio

INITS = ("auto", "activations", "reconstruction", "svd", "random")
MAX_ROWS = 20000  # input rows (tokens, patches) kept for the statistics
MAX_SAMPLES = 2048  # samples kept to measure output errors
BATCH = 256


def replacement_args(layer, network, bond_dim, seed) -> dict:
    """Arguments every TN replacement of `layer` shares (its own, per-type
    ones come from the TN class's `_teacher_args`)."""
    config = layer.get_config()
    return {
        "network": network,
        "bond_dim": bond_dim,
        "seed": seed,
        "use_bias": config["use_bias"],
        "name": layer.name,
        "dtype": layer.dtype_policy,
        "bias_regularizer": config.get("bias_regularizer"),
        "bias_constraint": config.get("bias_constraint"),
    }


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


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


_generated = tn_init._generated


# -- the layer's inputs
def _finite(name, array):
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"`{name}` must be numeric, got dtype {array.dtype}.")
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.sum(np.isfinite(array)))
        raise ValueError(
            f"`{name}` holds {bad} NaN or infinite values; the inputs must "
            f"be finite."
        )
    return array.astype("float32")


def _subsample(array, limit, seed=0):
    if len(array) <= limit:
        return array
    keep = np.random.default_rng(seed).choice(len(array), limit, replace=False)
    return array[np.sort(keep)]


def _call_inputs(teacher, x, name="x"):
    """`x` as the list of arrays the layer is called with (checked)."""
    shapes = getattr(teacher, "_build_shapes_dict", None) or {}
    if isinstance(teacher, keras.layers.MultiHeadAttention):
        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        if not 1 <= len(xs) <= 3:
            raise ValueError(
                f"`{name}` must be the query array, or a tuple (query, "
                f"value) or (query, value, key); got {len(xs)} arrays."
            )
        xs = [_finite(name, a) for a in xs]
        while len(xs) < 3:
            xs.append(xs[1] if len(xs) == 2 else xs[0])  # value, key
        wanted = [
            shapes.get("query_shape"),
            shapes.get("value_shape"),
            shapes.get("key_shape") or shapes.get("value_shape"),
        ]
    else:
        if isinstance(x, (list, tuple)):
            raise ValueError(
                f"`{name}` must be one array (the inputs of the layer), got "
                f"a {type(x).__name__}."
            )
        xs = [_finite(name, x)]
        wanted = [shapes.get("input_shape")]
    for array, want in zip(xs, wanted):
        if want is None:
            continue
        want = tuple(want)
        if array.ndim != len(want) or any(
            w is not None and w != g for w, g in zip(want[1:], array.shape[1:])
        ):
            raise ValueError(
                f"`{name}` has shape {array.shape}; the layer "
                f"{teacher.name!r} takes inputs of shape {want}."
            )
        if len(array) < 1 or len(array) != len(xs[0]):
            raise ValueError(
                f"`{name}`: the arrays must have the same number (>= 1) of "
                f"samples, got {[len(a) for a in xs]}."
            )
    return xs


def _apply(layer, xs, call_kwargs):
    """The layer's outputs on `xs`, batch by batch (NumPy)."""
    out = []
    for start in range(0, len(xs[0]), BATCH):
        part = [a[start : start + BATCH] for a in xs]
        y = layer(*part, **call_kwargs)
        out.append(_np(y))
    return np.concatenate(out, 0)


def _attention_context(teacher, xs, call_kwargs):
    """Inputs of the output projection of a MultiHeadAttention (NumPy),
    or None when they cannot be reproduced here (an attention mask)."""
    if set(call_kwargs) - {"use_causal_mask"}:
        return None
    causal = bool(call_kwargs.get("use_causal_mask", False))
    out = []
    for start in range(0, len(xs[0]), BATCH):
        q, v, k = (a[start : start + BATCH] for a in xs)
        query = teacher._query_dense(q)
        key = teacher._key_dense(k)
        value = teacher._value_dense(v)
        mask = teacher._compute_attention_mask(q, v, use_causal_mask=causal)
        context, _ = teacher._compute_attention(
            query, key, value, attention_mask=mask, training=False
        )
        out.append(_np(context))
    context = np.concatenate(out, 0)
    return context.reshape(-1, context.shape[-2] * context.shape[-1])


def input_rows(teacher, xs, call_kwargs=None) -> dict:
    """`{projection: (rows, features) inputs}` of the teacher's kernels.

    The features each kernel is applied to: the inputs of a Dense, the
    im2col patches of a Conv2D, the query / key / value inputs and the
    attention context of a MultiHeadAttention. A projection whose inputs
    cannot be had maps to None.
    """
    call_kwargs = call_kwargs or {}
    if isinstance(teacher, keras.layers.MultiHeadAttention):
        q, v, k = xs
        rows = {
            "query": q.reshape(-1, q.shape[-1]),
            "key": k.reshape(-1, k.shape[-1]),
            "value": v.reshape(-1, v.shape[-1]),
        }
        tokens = math.prod(q.shape[1:-1])
        sample = [_subsample(a, max(1, MAX_ROWS // tokens)) for a in xs]
        try:
            rows["output"] = _attention_context(teacher, sample, call_kwargs)
        except Exception:  # private Keras API: weight-only for this one
            rows["output"] = None
        return {
            key: None if r is None else _subsample(r, MAX_ROWS)
            for key, r in rows.items()
        }
    x = xs[0]
    if isinstance(teacher, keras.layers.Conv2D):
        if teacher.groups != 1:
            return {"kernel": None}
        pixels = math.prod(x.shape[1:-1])
        x = _subsample(x, max(1, 4 * MAX_ROWS // pixels))
        return {"kernel": _conv_patches(x, teacher, MAX_ROWS)}
    return {"kernel": _subsample(x.reshape(-1, x.shape[-1]), MAX_ROWS)}


def output_error(new, teacher, xs, call_kwargs=None) -> float:
    """`||f'(x) - f(x)|| / ||f(x) - mean f||` of a layer on its inputs.

    Args:
        new: the TN layer.
        teacher: the layer it replaces.
        xs: list of input arrays (`x`; query, value, key for attention).
        call_kwargs: extra call arguments (e.g. `use_causal_mask`).

    Returns:
        The relative output error, a float (0: the same outputs; 1: no
        better than predicting the mean output).

    Example:

    >>> output_error(student_layer, teacher_layer, [x])  # doctest: +SKIP
    0.31
    """
    call_kwargs = call_kwargs or {}
    xs = [_subsample(a, MAX_SAMPLES) for a in xs]
    want = _apply(teacher, xs, call_kwargs)
    got = _apply(new, xs, call_kwargs)
    flat = want.reshape(-1, want.shape[-1])
    spread = float(np.sum((flat - flat.mean(0)) ** 2))
    err = float(np.sum((got - want) ** 2))
    return math.sqrt(err / max(spread, 1e-30))


# -- the conversion
def _build(new, teacher):
    shapes = dict(getattr(teacher, "_build_shapes_dict", None) or {})
    if not shapes:
        raise ValueError(
            f"`layer` {teacher.name!r} must be built (its input shapes are "
            f"unknown)."
        )
    new.build(**shapes)
    return new


def resolve_init(init, network, has_data) -> str:
    """The initialisation `init` stands for (checked).

    `"auto"` is `"activations"` (data-aware) when the layer's inputs are
    given, else `"svd"` for `network="mpo"` and `"reconstruction"`
    otherwise.
    """
    if init not in INITS:
        raise ValueError(f"`init` must be one of {INITS}, got {init!r}.")
    if init == "svd" and network != "mpo":
        raise ValueError(
            f"`init`='svd' needs network='mpo' (TT-SVD is exact only for "
            f"the multilinear MPO); got network={network!r}. Use "
            f"'activations', 'reconstruction' or 'auto'."
        )
    if init == "auto":
        if has_data:
            return "activations"
        return "svd" if network == "mpo" else "reconstruction"
    if init == "activations" and not has_data:
        raise ValueError(
            "`init`='activations' needs the layer's inputs (`x`, or `data` "
            "for compress); use 'reconstruction' or 'auto' without them."
        )
    return init


def convert(
    cls: type,
    teacher: keras.layers.Layer,
    x=None,
    network: str = "ttn",
    bond_dim: int | None = None,
    target_ratio: float | None = None,
    init: str = "auto",
    steps: int = 500,
    learning_rate: float = 1e-2,
    seed: int | None = 0,
    call_kwargs: dict | None = None,
    report: dict | None = None,
):
    """A `cls` layer initialised from a trained layer (see
    `TNDense.from_dense`; `cls._teacher_args(teacher)` gives the per-type
    arguments).

    Returns:
        The new, built TN layer; `report` (a dict, if given) receives
        `bond_dim`, `init`, `note`, `fit_start`, `fit_loss` (whitened
        reconstruction losses), `error` (output error on `x`, or None) and
        `weight_error`.
    """
    networks.get(network)
    if bond_dim is not None and target_ratio is not None:
        raise ValueError(
            "Give at most one of `bond_dim` and `target_ratio`, got both "
            f"(bond_dim={bond_dim!r}, target_ratio={target_ratio!r})."
        )
    note = ""
    if target_ratio is not None:
        ok = isinstance(target_ratio, (int, float)) and not isinstance(
            target_ratio, bool
        )
        if not ok or not math.isfinite(target_ratio) or target_ratio <= 1:
            raise ValueError(
                f"`target_ratio` must be a number > 1, got {target_ratio!r}."
            )
        bond_dim, note = _bond_for_ratio(teacher, network, target_ratio)
    elif bond_dim is None:
        bond_dim = 2
    if isinstance(bond_dim, bool) or not isinstance(bond_dim, int):
        raise ValueError(f"`bond_dim` must be an int >= 1, got {bond_dim!r}.")
    if bond_dim < 1:
        raise ValueError(f"`bond_dim` must be an int >= 1, got {bond_dim!r}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"`steps` must be an int >= 0, got {steps!r}.")
    if not (
        isinstance(learning_rate, (int, float))
        and math.isfinite(learning_rate)
        and learning_rate > 0
    ):
        raise ValueError(
            f"`learning_rate` must be a number > 0, got {learning_rate!r}."
        )
    how = resolve_init(init, network, x is not None)
    call_kwargs = dict(call_kwargs or {})
    xs = None if x is None else _call_inputs(teacher, x)
    new = cls(
        **cls._teacher_args(teacher),
        **replacement_args(teacher, network, bond_dim, seed),
    )
    new = _build(new, teacher)
    weights = _teacher_weights(teacher)
    targets = {k: kernel for k, (kernel, _) in weights.items()}
    biases = {k: bias for k, (_, bias) in weights.items()}
    metrics = {k: None for k in targets}
    means = {k: None for k in targets}
    if how == "activations":
        rows = input_rows(teacher, xs, call_kwargs)
        missing = [k for k, r in rows.items() if r is None]
        for key, r in rows.items():
            if r is None:
                continue
            centered = biases.get(key) is not None
            metrics[key], mean = tn_init.whitening(r, centered)
            means[key] = mean if centered else None
        if missing:
            note = "; ".join(
                filter(None, [note, f"weight-only fit for {missing}"])
            )
    start = ""
    if how in ("svd", "activations", "reconstruction") and network == "mpo":
        if how == "activations":
            start = tn_init.best_svd_start(new, targets, metrics)
        else:
            tn_init.init_svd(new, targets)
    elif how != "random":
        tn_init.rescale_qkv(new, targets)
    fit_start = fit_loss = None
    if how in ("activations", "reconstruction"):
        fit_start, fit_loss = tn_init.fit_generators(
            new, targets, metrics, steps, learning_rate
        )
    tn_init.correct_biases(new, targets, biases, means)
    label = how if not start else f"{how} (from {start})"
    if report is not None:
        report.update(
            {
                "bond_dim": int(bond_dim),
                "init": label,
                "note": note,
                "fit_start": fit_start,
                "fit_loss": fit_loss,
                "error": None
                if xs is None
                else output_error(new, teacher, xs, call_kwargs),
                "weight_error": relative_error(new, teacher),
            }
        )
    return new


def check_teacher(layer, kind, method) -> None:
    """ValueError unless `layer` is a built `kind` (for `method`)."""
    if type(layer) is not kind:
        raise ValueError(
            f"`layer` must be a keras.layers.{kind.__name__} for {method}, "
            f"got {type(layer).__name__}."
        )
    if not layer.built:
        raise ValueError(f"`layer` {layer.name!r} must be built.")
