"""Einsum equations of multi-head attention.

Vendored from Keras (`keras/src/layers/attention/multi_head_attention.py`,
functions `_build_attention_equation`, `_build_proj_equation` and
`_index_to_einsum_variable`), Copyright The Keras Authors, Apache License
2.0, so that `TNMultiHeadAttention` computes attention with the very
equations of `keras.layers.MultiHeadAttention` without importing private
`keras.src` modules. Changes: names, and `np.delete` replaced by a tuple
expression.
"""

import string


def _letter(i: int) -> str:
    return string.ascii_lowercase[i]


def attention_equations(rank: int, attn_axes: tuple) -> tuple:
    """Query-key dot product and combination equations, and the rank of
    the scores, for projected inputs of `rank` (`(batch, <non-attention
    dims>, <attention dims>, num_heads, channels)`) attending over
    `attn_axes`."""
    target = "".join(_letter(i) for i in range(rank))
    batch_dims = tuple(
        i for i in range(rank) if i not in tuple(attn_axes) + (rank - 1,)
    )
    offset = rank
    source = ""
    for i in range(rank):
        if i in batch_dims or i == rank - 1:
            source += target[i]
        else:
            source += _letter(offset)
            offset += 1
    product = "".join(
        [target[i] for i in batch_dims]
        + [target[i] for i in attn_axes]
        + [source[i] for i in attn_axes]
    )
    dot = f"{source},{target}->{product}"
    combine = f"{product},{source}->{target}"
    return dot, combine, len(product)


def projection_equation(free_dims: int, bound_dims: int, output_dims: int):
    """The einsum equation of a projection: `free_dims` kept axes,
    `bound_dims` contracted ones, `output_dims` new ones."""
    input_str = kernel_str = output_str = ""
    for i in range(free_dims):
        input_str += _letter(i)
        output_str += _letter(i)
    for i in range(free_dims, free_dims + bound_dims):
        input_str += _letter(i)
        kernel_str += _letter(i)
    start = free_dims + bound_dims
    for i in range(start, start + output_dims):
        kernel_str += _letter(i)
        output_str += _letter(i)
    return f"{input_str},{kernel_str}->{output_str}"
