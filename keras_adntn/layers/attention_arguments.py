"""The checks of TNMultiHeadAttention's arguments and input shapes, and
the shape of its scores (what it adds to `keras.layers.MultiHeadAttention`
besides the projections)."""

from keras_adntn.kernels.generator_spec import check_int


def check_output_shape(output_shape):
    """`output_shape` (an int, a tuple of ints or None) as a tuple of
    ints >= 1, or None."""
    if output_shape is None:
        return None
    if not isinstance(output_shape, (list, tuple)):
        return (check_int("output_shape", output_shape, 1),)
    if not output_shape:
        raise ValueError(
            "`output_shape` must be an int, a non-empty tuple of ints >= 1, "
            "or None, got ()."
        )
    return tuple(check_int("output_shape", d, 1) for d in output_shape)


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


def check_dropout(dropout) -> float:
    """`dropout` as a float in [0, 1)."""
    if (
        isinstance(dropout, bool)
        or not isinstance(dropout, (int, float))
        or not 0.0 <= dropout < 1.0
    ):
        raise ValueError(
            f"`dropout` must be a float in [0, 1), got {dropout!r}."
        )
    return float(dropout)


def check_shapes(query_shape, value_shape, key_shape) -> dict:
    """`{"query", "key", "value": shape}` (tuples; `key` defaults to
    `value`), checked for agreement, rank and known feature sizes."""
    query_shape = tuple(query_shape)
    value_shape = tuple(value_shape)
    key_shape = value_shape if key_shape is None else tuple(key_shape)
    if value_shape[1:-1] != key_shape[1:-1]:
        raise ValueError(
            f"All dimensions of `value` and `key`, except the last one, "
            f"must be equal; got value_shape={value_shape}, "
            f"key_shape={key_shape}."
        )
    if len(query_shape) < 3:
        raise ValueError(
            f"TNMultiHeadAttention expects inputs of rank >= 3 (batch, "
            f"attention axes, features); got query_shape={query_shape}."
        )
    shapes = {"query": query_shape, "key": key_shape, "value": value_shape}
    for name, shape in shapes.items():
        if shape[-1] is None:
            raise ValueError(
                f"TNMultiHeadAttention needs the last dimension of "
                f"`{name}` to be known at build time; got {shape}."
            )
    return shapes


def scores_shape(query_shape, value_shape, axes, num_heads: int) -> tuple:
    """The shape of the attention scores, `(*batch, num_heads, *query
    attention axes, *value attention axes)`; `axes` None: all axes but
    batch and features."""
    rank = len(query_shape) + 1
    axes = tuple(range(1, rank - 2)) if axes is None else axes
    axes = tuple(a if a >= 0 else (rank - 1) + a for a in axes)
    batch = [query_shape[i] for i in range(rank - 2) if i not in axes]
    return (
        *batch,
        num_heads,
        *[query_shape[a] for a in axes],
        *[value_shape[a] for a in axes],
    )
