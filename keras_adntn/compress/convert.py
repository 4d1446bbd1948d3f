"""Per-layer conversion: a trained Dense / Conv2D / MultiHeadAttention
becomes a TN layer (`convert_layer`, behind `TNDense.from_dense`,
`TNConv2D.from_conv2d`, `TNMultiHeadAttention.from_multi_head_attention`
and `compress`), and the errors that measure it.

Data-aware when the layer's inputs `x` are given (the generator is fitted
in the metric of those inputs, see `keras_adntn.compress.init`),
weight-only otherwise. What differs between the layer types comes from
their adapter (`keras_adntn.compress.adapters`).
"""

import math

import keras
import numpy as np

from keras_adntn import networks
from keras_adntn.compress import init as tn_init
from keras_adntn.compress.adapters import BATCH
from keras_adntn.compress.adapters import adapter_for
from keras_adntn.compress.arrays import subsample
from keras_adntn.compress.arrays import to_numpy
from keras_adntn.compress.checks import check_int
from keras_adntn.compress.checks import check_number
from keras_adntn.compress.checks import check_size
from keras_adntn.compress.checks import resolve_init
from keras_adntn.compress.conversion_result import ConversionResult
from keras_adntn.compress.select import bond_for_ratio

MAX_SAMPLES = 2048  # samples kept to measure output errors


def convert_layer(
    layer: keras.layers.Layer,
    x=None,
    network: str = "ttn",
    bond_dim: int | None = None,
    target_ratio: float | None = None,
    init: str = "auto",
    steps: int = 500,
    learning_rate: float = 1e-2,
    seed: int | None = 0,
    call_kwargs: dict | None = None,
    student: type | None = None,
) -> ConversionResult:
    """A TN layer initialised from a trained layer, with what was done.

    The arguments are those of `TNDense.from_dense` (which documents
    them), for a `Dense`, `Conv2D` or `MultiHeadAttention` alike.

    Args:
        layer: the trained, built `keras.layers.Dense`, `Conv2D` or
            `MultiHeadAttention`.
        x: None (weight-only) or real inputs of that layer.
        network: generator network.
        bond_dim: bond dimension (default 2), or
        target_ratio: instead of `bond_dim`, a compression ratio (> 1).
        init: `"auto"`, `"activations"`, `"reconstruction"`, `"svd"` or
            `"random"`.
        steps: Adam steps of the fit, int >= 0.
        learning_rate: learning rate of the fit, > 0.
        seed: seed of the new layer's initialisation.
        call_kwargs: extra call arguments the layer is used with.
        student: the TN class to build (default: `TNDense`, `TNConv2D`
            or `TNMultiHeadAttention`, after the layer's type; a subclass
            of it may be given).

    Returns:
        A `ConversionResult`: the new, built TN layer with the teacher's
        configuration and biases, the bond dimension, the initialisation,
        the fit losses and the errors.

    Raises:
        ValueError: a bad argument (named in the message).

    Example:

    >>> result = convert_layer(dense, x, target_ratio=10)  # doctest: +SKIP
    >>> result.layer.compression_ratio >= 10  # doctest: +SKIP
    True
    """
    adapter = adapter_for(layer)
    if adapter is None:
        raise ValueError(
            f"`layer` must be a keras.layers.Dense, Conv2D or "
            f"MultiHeadAttention, got {type(layer).__name__}."
        )
    adapter.check(layer)
    networks.get(network)
    if bond_dim is None and target_ratio is None:
        bond_dim = 2
    bond_dim, target_ratio, _ = check_size(bond_dim, target_ratio)
    steps = check_int("steps", steps, 0)
    learning_rate = check_number(
        "learning_rate", learning_rate, 0.0, low_open=True
    )
    how = resolve_init(init, network, x is not None)
    note = ""
    if target_ratio is not None:
        bond_dim, note = bond_for_ratio(layer, network, target_ratio)
    call_kwargs = dict(call_kwargs or {})
    xs = None if x is None else adapter.call_inputs(layer, x)
    cls = student or adapter.student
    new = _build(
        cls(**adapter.student_args(layer, network, bond_dim, seed)), layer
    )
    weights = adapter.weights(layer)
    targets = {k: kernel for k, (kernel, _) in weights.items()}
    biases = {k: bias for k, (_, bias) in weights.items()}
    metrics = {k: None for k in targets}
    means = {k: None for k in targets}
    if how == "activations":
        rows = adapter.input_rows(layer, xs, call_kwargs)
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
    return ConversionResult(
        layer=new,
        bond_dim=int(bond_dim),
        init=how if not start else f"{how} (from {start})",
        note=note,
        fit_start=fit_start,
        fit_loss=fit_loss,
        error=None if xs is None else output_error(new, layer, xs, call_kwargs),
        weight_error=relative_error(new, layer),
    )


def _build(new, teacher):
    shapes = dict(getattr(teacher, "_build_shapes_dict", None) or {})
    if not shapes:
        raise ValueError(
            f"`layer` {teacher.name!r} must be built (its input shapes are "
            f"unknown)."
        )
    new.build(**shapes)
    return new


# -- errors
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
    target = adapter_for(teacher).weights(teacher)
    got = tn_init.generated_kernels(new)
    num = den = 0.0
    for key, (kernel, _) in target.items():
        num += float(np.sum((to_numpy(got[key]) - kernel) ** 2))
        den += float(np.sum(kernel**2))
    return math.sqrt(num / den) if den > 0 else math.sqrt(num)


def _apply(layer, xs, call_kwargs):
    """The layer's outputs on `xs`, batch by batch (NumPy)."""
    out = []
    for start in range(0, len(xs[0]), BATCH):
        part = [a[start : start + BATCH] for a in xs]
        y = layer(*part, **call_kwargs)
        out.append(to_numpy(y))
    return np.concatenate(out, 0)


def output_error(
    new: keras.layers.Layer,
    teacher: keras.layers.Layer,
    xs: list,
    call_kwargs: dict | None = None,
) -> float:
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
    xs = [subsample(a, MAX_SAMPLES) for a in xs]
    want = _apply(teacher, xs, call_kwargs)
    got = _apply(new, xs, call_kwargs)
    return relative_spread_error(got, want)


def relative_spread_error(got: np.ndarray, want: np.ndarray) -> float:
    """`||got - want|| / ||want - mean want||` (the mean over all but the
    last axis)."""
    flat = want.reshape(-1, want.shape[-1])
    spread = float(np.sum((flat - flat.mean(0)) ** 2))
    err = float(np.sum((got - want) ** 2))
    return math.sqrt(err / max(spread, 1e-30))
