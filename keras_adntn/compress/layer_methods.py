"""The conversion classmethods of the TN layers: `TNDense.from_dense`,
`TNConv2D.from_conv2d` and `TNMultiHeadAttention.from_multi_head_attention`.

The layers sit below `keras_adntn.compress` in the package's layering and
import nothing from it; the conversion lives here. `attach()` (called when
`keras_adntn.compress` is imported, which `import keras_adntn` always
does) sets each classmethod on its layer class: a thin delegate to
`convert_layer`, all three made from one function and one docstring.
"""

import keras

from keras_adntn.compress.adapters import ADAPTERS
from keras_adntn.compress.convert import convert_layer

_DOC = """A `{student}` initialised from a trained `{teacher}` layer.

Data-aware when `x` is given: the generator is fitted to the
teacher's kernel in the metric of the layer's inputs,
`||X (W_gen - W)||` (see `keras_adntn.compress`).

Args:
    layer: the trained, built `keras.layers.{teacher}`.
    x: None (weight-only initialisation) or real inputs of that
        layer ({inputs}): the generator is then fitted in their
        metric (data-aware, whitened reconstruction) and {bias} their
        mean.
    network: generator network, one of `"ttn"`, `"attn"`,
        `"mera"`, `"brickwall"`, `"mpo"`.
    bond_dim: bond dimension (default 2), or
    target_ratio: instead of `bond_dim`, the largest bond whose
        compression ratio (parameters of the layer / stored ones,
        bias included) is still >= this number (> 1).
    init: `"auto"` (`"activations"` when `x` is given, else
        `"svd"` for mpo and `"reconstruction"` otherwise),
        `"activations"` (data-aware fit; for mpo from the best
        TT-SVD start), `"reconstruction"` (weight-only fit),
        `"svd"` (mpo: TT-SVD of the kernel, exact at full bond) or
        `"random"`.
    steps: Adam steps of the fit, int >= 0.
    learning_rate: learning rate of the fit, > 0.
    seed: seed of the new layer's initialisation.
    call_kwargs: extra call arguments the layer is used with
        (e.g. `use_causal_mask=True` for attention).
    report: None or a dict that receives what was done (the fields
        of `keras_adntn.compress.ConversionResult`, which
        `keras_adntn.compress.convert_layer` returns): `bond_dim`,
        `init`, `note`, `fit_start` and `fit_loss` (whitened
        reconstruction losses), `error` (output error on `x`) and
        `weight_error`.

Returns:
    A new, built `{student}` with the teacher's configuration
    (name, activation, ...) and biases.

Raises:
    ValueError: a bad argument (named in the message).

Example:

{example}
"""


def _delegate(adapter) -> classmethod:
    """The conversion classmethod of `adapter.student`."""

    def from_teacher(
        cls,
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
        report: dict | None = None,
    ):
        adapter.check(layer)
        result = convert_layer(
            layer,
            x,
            network=network,
            bond_dim=bond_dim,
            target_ratio=target_ratio,
            init=init,
            steps=steps,
            learning_rate=learning_rate,
            seed=seed,
            call_kwargs=call_kwargs,
            student=cls,
        )
        if report is not None:
            report.update(result.to_dict())
        return result.layer

    student = adapter.student.__name__
    from_teacher.__name__ = adapter.method
    from_teacher.__qualname__ = f"{student}.{adapter.method}"
    from_teacher.__annotations__["return"] = adapter.student
    from_teacher.__doc__ = _DOC.format(
        student=student,
        teacher=adapter.teacher.__name__,
        inputs=adapter.inputs_doc,
        bias=adapter.bias_doc,
        example=adapter.example,
    )
    return classmethod(from_teacher)


def attach() -> None:
    """Sets `from_dense`, `from_conv2d` and `from_multi_head_attention` on
    `TNDense`, `TNConv2D` and `TNMultiHeadAttention`."""
    for adapter in ADAPTERS.values():
        setattr(adapter.student, adapter.method, _delegate(adapter))
