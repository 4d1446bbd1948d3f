"""Multi-head attention's shapes, masks and computation.

What `TNMultiHeadAttention` computes between its projections, exactly as
`keras.layers.MultiHeadAttention` computes it (same masks, scaling,
softmax, dropout and fused kernel), with the einsum equations of
`attention_equations`; and the checks of the layer's attention arguments
and input shapes. Functions of tensors and the layer's settings only: the
layer owns the projections, the softmax and the dropout.
"""

import keras
from keras import ops

from keras_adntn.kernels.generator_spec import check_int


def check_shapes(query_shape, value_shape, key_shape) -> tuple:
    """Shapes as tuples (`key` defaults to `value`), checked for agreement."""
    query_shape = tuple(query_shape)
    value_shape = tuple(value_shape)
    key_shape = value_shape if key_shape is None else tuple(key_shape)
    if value_shape[1:-1] != key_shape[1:-1]:
        raise ValueError(
            f"All dimensions of `value` and `key`, except the last one, "
            f"must be equal; got value_shape={value_shape}, "
            f"key_shape={key_shape}."
        )
    return query_shape, value_shape, key_shape


def check_output_shape(output_shape):
    """`output_shape` (an int, a tuple of ints or None) as a tuple of
    ints >= 1, or None."""
    if output_shape is None:
        return None
    if isinstance(output_shape, (list, tuple)):
        output_shape = tuple(
            check_int("output_shape", d, 1) for d in output_shape
        )
        if not output_shape:
            raise ValueError(
                "`output_shape` must be an int, a non-empty tuple of ints "
                ">= 1, or None, got ()."
            )
        return output_shape
    return (check_int("output_shape", output_shape, 1),)


def check_attention_axes(axes):
    """`attention_axes` (an int, a list or tuple of ints, or None) as a
    tuple of ints, or None."""
    if isinstance(axes, int) and not isinstance(axes, bool):
        return (axes,)
    if axes is None:
        return None
    if not isinstance(axes, (list, tuple)) or not all(
        isinstance(a, int) and not isinstance(a, bool) for a in axes
    ):
        raise ValueError(
            f"`attention_axes` must be an int, a list or tuple of ints, or "
            f"None, got {axes!r}."
        )
    return tuple(axes)


def attention_axes(axes, rank: int) -> tuple:
    """The attention axes of projected inputs of `rank` (`(batch, ...,
    num_heads, channels)`), non-negative; `axes` None: all axes but batch,
    heads and channels."""
    if axes is None:
        return tuple(range(1, rank - 2))
    return tuple(a if a >= 0 else (rank - 1) + a for a in axes)


def causal_mask(query, value):
    """Boolean `(1, T, S)` lower-triangular mask (as `MultiHeadAttention`)."""
    q_len = ops.shape(query)[1]
    v_len = ops.shape(value)[1]
    ones = ops.ones((1, q_len, v_len), dtype="int32")
    rows = ops.cumsum(ones, axis=-2)
    cols = ops.cumsum(ones, axis=-1)
    return ops.greater_equal(rows, cols)


def combined_mask(
    query,
    value,
    query_mask=None,
    value_mask=None,
    key_mask=None,
    attention_mask=None,
    use_causal_mask=False,
):
    """The boolean `(B, T, S)` mask of all the masks given (None: none)."""
    auto_mask = None
    if query_mask is not None:
        auto_mask = ops.expand_dims(ops.cast(query_mask, "bool"), -1)
    for mask in (value_mask, key_mask):
        if mask is not None:
            mask = ops.expand_dims(ops.cast(mask, "bool"), -2)
            auto_mask = (
                mask if auto_mask is None else ops.logical_and(auto_mask, mask)
            )
    if use_causal_mask:
        mask = causal_mask(query, value)
        auto_mask = (
            mask if auto_mask is None else ops.logical_and(auto_mask, mask)
        )
    if attention_mask is not None:
        attention_mask = ops.cast(attention_mask, "bool")
    if auto_mask is not None:
        attention_mask = (
            auto_mask
            if attention_mask is None
            else ops.logical_and(attention_mask, auto_mask)
        )
    return attention_mask


def _expand_mask(mask, rank: int, num_axes: int):
    """`mask` with the head axis (and any missing ones) inserted before
    its `2 * num_axes` attention axes, to `rank` axes."""
    axis = -num_axes * 2 - 1
    for _ in range(rank - len(mask.shape)):
        mask = ops.expand_dims(mask, axis=axis)
    return mask


def attend(
    query,
    key,
    value,
    attention_mask,
    *,
    scale: float,
    axes: tuple,
    equations: tuple,
    softmax,
    dropout,
    training=None,
    return_attention_scores: bool = False,
    causal_only: bool = False,
):
    """Attention of projected `query`, `key`, `value` (`(batch, ...,
    num_heads, head size)`): `(output, scores)`, scores None where the
    fused kernel computed it.

    Args:
        query, key, value: the projected tensors.
        attention_mask: boolean `(B, T, S)` mask or None.
        scale: the factor of the query (`1 / sqrt(key_dim)`).
        axes: the attention axes (`attention_axes`).
        equations: the dot-product and combination equations
            (`attention_equations.attention_equations`).
        softmax: the `keras.layers.Softmax` over the key axes.
        dropout: the `keras.layers.Dropout` of the scores, or None.
        training: whether dropout is active.
        return_attention_scores: the scores are needed (no fused kernel).
        causal_only: the mask is the causal one alone (`attention_mask`
            None): the fused kernel makes it itself.
    """
    # The fused kernel needs equal query/value head sizes on some
    # backends (jax); the explicit path below computes the same thing.
    fused = not (
        dropout is not None
        or return_attention_scores
        or len(query.shape) != 4
        or query.shape[-1] != value.shape[-1]
    )
    if fused:
        if attention_mask is not None:
            attention_mask = ops.cast(
                _expand_mask(attention_mask, 4, len(axes)), "bool"
            )
        out = ops.dot_product_attention(
            query=query,
            key=key,
            value=value,
            mask=attention_mask,
            scale=scale,
            is_causal=causal_only,
            flash_attention=keras.config.is_flash_attention_enabled(),
        )
        return out, None
    if causal_only:
        attention_mask = causal_mask(query, value)
    query = ops.multiply(query, ops.cast(scale, query.dtype))
    dot, combine = equations
    scores = ops.einsum(dot, key, query)
    if attention_mask is not None:
        attention_mask = _expand_mask(
            attention_mask, len(scores.shape), len(axes)
        )
    scores = softmax(scores, mask=attention_mask)
    if dropout is not None:
        final_scores = dropout(scores, training=training)
    else:
        final_scores = scores
    out = ops.einsum(combine, final_scores, value)
    return out, scores
