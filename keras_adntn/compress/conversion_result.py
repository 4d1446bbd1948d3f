"""`ConversionResult`: what converting one layer made and did."""

import dataclasses

import keras

# the fields the `report=` dict of `TNDense.from_dense` & co. receives
REPORT_FIELDS = (
    "bond_dim",
    "init",
    "note",
    "fit_start",
    "fit_loss",
    "error",
    "weight_error",
)


@dataclasses.dataclass
class ConversionResult:
    """The TN layer made from a trained layer, and how it was made.

    Returned by `keras_adntn.compress.convert_layer`; `TNDense.from_dense`,
    `TNConv2D.from_conv2d` and
    `TNMultiHeadAttention.from_multi_head_attention` return its `layer`
    and copy the other fields into their `report=` dict when one is given.

    Attributes:
        layer: the new, built TN layer.
        bond_dim: its bond dimension.
        init: the initialisation done (`"activations"`,
            `"reconstruction"`, `"svd"` or `"random"`, with the TT-SVD
            start kept for a data-aware mpo, e.g.
            `"activations (from tt-svd)"`).
        note: what did not go as asked (an unreachable `target_ratio`,
            projections fitted weight-only), or "".
        fit_start: whitened reconstruction loss before the fit (None
            without a fit).
        fit_loss: that loss after the fit (None without a fit).
        error: output error on the inputs `x`, or None without them (see
            `keras_adntn.compress.output_error`).
        weight_error: relative Frobenius error of the generated kernels
            (see `keras_adntn.compress.relative_error`).

    Example:

    >>> result = convert_layer(dense, x, bond_dim=4)  # doctest: +SKIP
    >>> result.layer, result.error  # doctest: +SKIP
    """

    layer: keras.layers.Layer
    bond_dim: int
    init: str
    note: str = ""
    fit_start: float | None = None
    fit_loss: float | None = None
    error: float | None = None
    weight_error: float | None = None

    def to_dict(self) -> dict:
        """Every field but `layer`, as a dict (the `report=` dict)."""
        return {key: getattr(self, key) for key in REPORT_FIELDS}
