"""TNMultiHeadAttention: attention whose projections are generated.

Design: the layer subclasses both `GeneratorLayer` (the generator
arguments, kernels, growth, quantisation, config) and
`keras.layers.MultiHeadAttention`, whose `call` computes the masks, the
attention (fused or explicit), softmax and dropout, as keras-hub's
`CachedMultiHeadAttention` reuses it. The TN layer supplies only the four
projections Keras calls (`_query_dense`, ..., `_output_dense`): each an
`AttentionProjection`, `einsum(x, W) + b` with `W` from a
`GeneratedKernel` (`GeneratedKernel.project` picks the path: factorized,
cached or generated). `call` wraps Keras's in one `sharing()` block per
kernel: the joint `[Wq, Wk, Wv]` kernel is generated once per call.

The projections are plain callables, not sublayers: a Keras sublayer
opens a name scope of its own, which renames every op of the exported
graph (the LiteRT files would change), and would need the biases it
adds as its own variables (the weight layout of saved files would
change). So the biases and `GeneratedKernel`s stay the layer's own, in
the layout of earlier releases (`.keras` files load unchanged).
"""

import contextlib
import math

import keras
from keras import ops

from keras_adntn.kernels.generator_spec import check_int
from keras_adntn.layers import attention_arguments as checks
from keras_adntn.layers import attention_projection as ap
from keras_adntn.layers.generator_layer import GeneratorLayer
from keras_adntn.layers.generator_layer import shared_args


@keras.saving.register_keras_serializable(package="keras_adntn")
class TNMultiHeadAttention(GeneratorLayer, keras.layers.MultiHeadAttention):
    """Drop-in for `keras.layers.MultiHeadAttention` with generated weights.

    The four projection kernels are not stored: small nonlinear tensor
    networks generate them from their cores, the layer's only trainable
    weights besides the biases. Attention itself is
    `keras.layers.MultiHeadAttention`'s own code (this layer subclasses it:
    same einsum equations, masks, softmax, dropout, and the same kernel and
    bias shapes:
    query/key `(dim, num_heads, key_dim)`, value `(dim, num_heads,
    value_dim)`, output `(num_heads, value_dim, *output_shape)`).

    With `joint_qkv=True` (default, paper Eq. 6) one generator produces the
    concatenation `[Wq, Wk, Wv]` along the output axis, a matrix of shape
    `(max(query_dim, key_dim_in, value_dim_in), 2 * num_heads * key_dim +
    num_heads * value_dim)`; inputs narrower than the widest use its leading
    rows. This works for any input and head sizes, so there is no silent
    fallback: `joint_qkv=False` is the only way to get three separate
    generators. The output projection always has its own generator.

    Grouped generation: with `generator_groups=G` every generator runs `G`
    groups, each with its own latent and cores, along the output axis of
    each projection. For the joint generator group `g` produces the `g`-th
    block of columns of each of `Wq`, `Wk` and `Wv` (with `G` dividing
    `num_heads`, a block of heads). `G` must divide `num_heads * key_dim`,
    `num_heads * value_dim` and the output size.

    Each kernel is generated in float32, cast to the compute dtype, and
    calibrated at initialisation to the scale `glorot_uniform` gives the
    corresponding `EinsumDense` of `MultiHeadAttention`. The joint
    generator is calibrated as a whole; a fixed, non-trainable `(G, 3)`
    weight `qkv/part_scale`, set at build and saved with the layer, then
    gives each of `Wq`, `Wk`, `Wv` its own glorot scale (`count_params()`
    includes these `3 * G` numbers).

    As in `MultiHeadAttention`, the key bias gets no gradient (softmax is
    invariant to it); it is kept for weight compatibility.

    Args:
        num_heads: number of attention heads, int >= 1.
        key_dim: size of each head for query and key, int >= 1.
        value_dim: size of each head for value (`None`: `key_dim`).
        dropout: dropout rate on the attention probabilities, in [0, 1).
        use_bias: whether the projections use biases.
        output_shape: int or tuple, shape of the output besides the batch
            and attention axes (`None`: the query's last dimension).
        attention_axes: axes over which attention is applied (`None`: all
            axes but batch, heads and features).
        joint_qkv: generate `Wq`, `Wk`, `Wv` with one generator (True,
            default) or with three (False).
        network: generator network, one of `"ttn"` (default), `"attn"`,
            `"mera"`, `"brickwall"`, `"mpo"`.
        bond_dim: bond dimension of the networks, int >= 1 (default 2).
        max_bond_dim: None (default: no growth) or an int >= `bond_dim`:
            the cores are allocated at this bond dimension and masked to
            `bond_dim`, so `grow` (or the `BondGrowth` callback) can raise
            it later; `count_params` then counts the allocated cores,
            `active_params` the used ones.
        radix: size of every tensor mode, int >= 2 (default 2).
        latent_order: order of the latent tensor of the tree networks
            (`None`: network default).
        depth: number of levels of a tree network, or of gate layers of the
            brick wall (`None`: network default).
        generator_activation: activation between the generators' levels
            (default `"elu"`), or a list with one per hidden level.
        generator_groups: number of generator groups (see above), int >= 1.
        mode_order: `"paired"` (default) or `"flat"`.
        seed: int seed of the core initialisation (generator `k` uses
            `seed + k`) and of the dropout (None: random).
        generator_init: `"calibrated"` (default) or `"orthogonal"`
            (`network="mpo"` and `joint_qkv=False` only: slicing the joint
            kernel would not keep it orthogonal; see `TNDense`).
        kernel_initializer: the distribution each generated kernel is
            calibrated to at build (default `"glorot_uniform"`; the
            initializers `TNDense` accepts).
        kernel_regularizer: regularizer of the generated kernel, added as a
            layer loss in every call (in `layer.losses` after a call).
        kernel_constraint: constraint applied to the generated kernel each
            time it is generated, before it is used (a generated kernel
            cannot be projected after the optimizer step as a stored one
            is); the cores learn through it.
        bias_initializer: initializer of the biases.
        bias_regularizer: regularizer of the biases.
        bias_constraint: constraint of the biases.
        core_regularizer: regularizer applied to every generator core.
        execution: `"auto"` (default), `"factorized"`, `"on_the_fly"` or
            `"cached"`, per kernel as in `TNDense` (`"factorized"`:
            `network="mpo"` only). `execution_paths(rows)` says which path
            each kernel takes; the paths agree to float rounding.
        kernel_quantization: None (default) or `"int8"`: fake-quantise the
            generated kernels per output channel (quantisation-aware
            training for an int8 LiteRT export).
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        query: query tensor `(B, T, dim)` (or with more attention axes).
        value: value tensor `(B, S, dim)`.
        key: optional key tensor `(B, S, dim)`; `None` uses `value`.
        query_mask: optional boolean `(B, T)` mask of the query (taken from
            the query's Keras mask when not given).
        value_mask: optional boolean `(B, S)` mask of the value.
        key_mask: optional boolean `(B, S)` mask of the key.
        attention_mask: optional boolean mask `(B, T, S)`; 1 lets a query
            position attend to a key position.
        return_attention_scores: also return the attention probabilities.
        training: whether dropout is active; with `execution="cached"`
            inference calls (`training` falsy) use the cached kernels.
        use_causal_mask: apply a causal (lower triangular) mask.

    Returns:
        `attention_output` of shape `(B, T, *output_shape)` (`output_shape`
        defaults to the query's last dimension), and, with
        `return_attention_scores=True`, also the scores `(B, num_heads, T,
        S)` (`None` where `MultiHeadAttention` returns `None`).

    Attributes:
        kernels: dict of the generated float32 kernels `"query"`, `"key"`,
            `"value"`, `"output"` (regenerated on every access).
        biases: dict of the bias variables (values `None` without bias).
        dense_params: parameters of the `MultiHeadAttention` it replaces.
        compression_ratio: `dense_params / count_params()`.

    Example:

    >>> layer = TNMultiHeadAttention(num_heads=8, key_dim=64)
    >>> x = keras.random.normal((2, 10, 512))
    >>> tuple(layer(x, x).shape)
    (2, 10, 512)
    >>> layer.compression_ratio > 100
    True
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        dropout=0.0,
        use_bias=True,
        output_shape=None,
        attention_axes=None,
        joint_qkv=True,
        network="ttn",
        bond_dim=2,
        radix=2,
        latent_order=None,
        depth=None,
        generator_activation="elu",
        generator_groups=1,
        mode_order="paired",
        seed=None,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        kernel_constraint=None,
        bias_initializer="zeros",
        bias_regularizer=None,
        bias_constraint=None,
        core_regularizer=None,
        max_bond_dim=None,
        execution="auto",
        kernel_quantization=None,
        generator_init="calibrated",
        **kwargs,
    ):
        num_heads = check_int("num_heads", num_heads, 1)
        key_dim = check_int("key_dim", key_dim, 1)
        value_dim = check_int("value_dim", value_dim, 1, allow_none=True)
        output_shape = checks.check_output_shape(output_shape)
        axes = checks.check_attention_axes(attention_axes)
        if not isinstance(joint_qkv, bool):
            raise ValueError(
                f"`joint_qkv` must be True or False, got {joint_qkv!r}."
            )
        super().__init__(
            **shared_args(locals()),
            num_heads=num_heads,
            key_dim=key_dim,
            value_dim=value_dim,
            dropout=checks.check_dropout(dropout),
            use_bias=bool(use_bias),
            output_shape=output_shape,
            attention_axes=axes,
            **kwargs,
        )
        self._axes = axes  # as given (Keras resolves `_attention_axes`)
        self.joint_qkv = joint_qkv
        self._call_training = None
        self._check_groups("num_heads * key_dim", num_heads * key_dim)
        self._check_groups("num_heads * value_dim", num_heads * self.value_dim)
        if output_shape:
            self._check_groups("the output size", math.prod(output_shape))

    def _check_groups(self, label, size):
        if size % self.generator_groups:
            raise ValueError(
                f"`generator_groups` must divide {label} ({size}); got "
                f"generator_groups={self.generator_groups}."
            )

    # `MultiHeadAttention.__init__` sets its dropout seed here: this
    # layer's is the generator spec's (cores `seed + k`, dropout `seed`)
    seed = property(lambda self: self.generator_spec.seed, lambda *_: None)

    @property
    def attention_axes(self):
        """The `attention_axes` argument, as given (a tuple or None)."""
        return self._axes

    # -- build -----------------------------------------------------------------
    def build(self, query_shape, value_shape, key_shape=None):
        shapes = checks.check_shapes(query_shape, value_shape, key_shape)
        dims = {name: int(shape[-1]) for name, shape in shapes.items()}
        out_shape = self._output_shape or (dims["query"],)
        self._check_groups("the output size", math.prod(out_shape))
        self._dims = dims
        self._out_shape = tuple(out_shape)
        kernels = self._build_kernels(dims)
        heads = {"query": self.key_dim, "key": self.key_dim}
        heads["value"] = self.value_dim
        self._biases, projections = {}, {}
        for name in ap.PROJECTIONS:
            shape = (self.num_heads, heads[name]) if name in heads else None
            free, bound, new = len(shapes.get(name, ())) - 1, 1, 2
            if name == "output":
                shape = self._out_shape
                free, bound = len(shapes["query"]) - 1, 2
                new = len(self._out_shape)
            self._biases[name] = (
                self._add_bias(shape, name=f"{name}_bias")
                if self.use_bias
                else None
            )
            equation = ap.projection_equation(free, bound, new)
            part = name if kernels[name].parts else None
            projections[name] = ap.AttentionProjection(
                self, kernels[name], name, equation, part
            )
        self._query_dense, self._key_dense, self._value_dense = (
            projections[name] for name in ("query", "key", "value")
        )
        self._output_dense = projections["output"]
        self._attention_axes = self._axes
        self._build_attention(len(shapes["query"]) + 1)

    def _build_kernels(self, dims) -> dict:
        """The `GeneratedKernel`s, `{projection: kernel}`."""
        g, h = self.generator_groups, self.num_heads
        heads = {"query": self.key_dim, "key": self.key_dim}
        heads["value"] = self.value_dim
        kernels = {}
        if self.joint_qkv:
            parts = [
                (p, dims[p], h * heads[p], (dims[p], h, heads[p]))
                + (dims[p], h * heads[p])
                for p in ("query", "key", "value")
            ]
            self.qkv_kernel = self._add_kernel(
                (max(dims.values()), sum(p[2] for p in parts) // g),
                parts=parts,
                name="qkv",
            )
            kernels = dict.fromkeys(("query", "key", "value"), self.qkv_kernel)
        else:
            for k, p in enumerate(("query", "key", "value")):
                kernels[p] = self._add_kernel(
                    (dims[p], h * heads[p] // g),
                    shape=(dims[p], h, heads[p]),
                    fan_in=dims[p],
                    fan_out=h * heads[p],
                    seed_offset=k,
                    key=p,
                    name=p,
                )
                setattr(self, f"{p}_kernel", kernels[p])
        nv = h * self.value_dim
        out_dim = math.prod(self._out_shape)
        self.output_kernel = kernels["output"] = self._add_kernel(
            (nv, out_dim // g),
            shape=(h, self.value_dim, *self._out_shape),
            fan_in=nv,
            fan_out=out_dim,
            seed_offset=3,
            key="output",
            name="output",
        )
        return kernels

    @property
    def kernels(self):
        if not self.built:
            raise AttributeError(
                "The kernels of a TNMultiHeadAttention exist once the layer "
                "is built."
            )
        return self._generate()

    @property
    def biases(self):
        if not self.built:
            raise AttributeError("`biases` needs a built layer.")
        return dict(self._biases)

    @property
    def dense_params(self) -> int:
        if not self.built:
            raise AttributeError("`dense_params` needs a built layer.")
        nq = self.num_heads * self.key_dim
        nv = self.num_heads * self.value_dim
        out = math.prod(self._out_shape)
        d = self._dims
        count = (d["query"] + d["key"]) * nq + d["value"] * nv + nv * out
        if self.use_bias:
            count += 2 * nq + nv + out
        return count

    # -- call ------------------------------------------------------------------
    @contextlib.contextmanager
    def _projecting(self, training, shape):
        """The projections' call state: `training`, and every kernel made
        once (first, as earlier releases did: exports stay the same)."""
        with contextlib.ExitStack() as stack:
            for kernel in self.generated_kernels:
                stack.enter_context(kernel.sharing(shape, training))
            object.__setattr__(self, "_call_training", training)
            try:
                yield
            finally:
                object.__setattr__(self, "_call_training", None)

    def call(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=False,
    ):
        if query_mask is not None:
            # Keras's `call` reads the query's mask from the tensor only
            mask = ops.expand_dims(ops.cast(query_mask, "bool"), -1)
            attention_mask = (
                mask
                if attention_mask is None
                else ops.logical_and(ops.cast(attention_mask, "bool"), mask)
            )
        # the fused kernel needs equal query and value head sizes on some
        # backends (jax): the explicit path computes the same thing
        scores = return_attention_scores or (
            self.key_dim != self.value_dim and not self._flash_attention
        )
        with self._projecting(training, query.shape):
            output = super().call(
                query,
                value,
                key,
                value_mask=value_mask,
                key_mask=key_mask,
                attention_mask=attention_mask,
                return_attention_scores=scores,
                training=training,
                use_causal_mask=use_causal_mask,
            )
        if scores and not return_attention_scores:
            return output[0]
        return output

    # -- shapes and config -----------------------------------------------------
    def compute_output_spec(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=False,
    ):
        shape = self.compute_output_shape(
            query.shape, value.shape, None if key is None else key.shape
        )
        output = keras.KerasTensor(shape, dtype=self.compute_dtype)
        if not return_attention_scores:
            return output
        scores = checks.scores_shape(
            query.shape, value.shape, self._axes, self.num_heads
        )
        return output, keras.KerasTensor(scores, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        # `MultiHeadAttention`'s arguments this layer does not take
        for name in ("use_gate", "sliding_window", "activity_regularizer"):
            config.pop(name, None)
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "value_dim": self.value_dim,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "output_shape": self._output_shape,
                "attention_axes": self._axes,
                "joint_qkv": self.joint_qkv,
            }
        )
        return config
