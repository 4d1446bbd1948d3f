"""TNMultiHeadAttention: attention whose projections are generated."""

import contextlib
import functools
import math

import keras
from keras import ops

from keras_adntn.kernels.generator_spec import check_int
from keras_adntn.layers import attention
from keras_adntn.layers import attention_equations
from keras_adntn.layers.generator_layer import GeneratorLayer
from keras_adntn.layers.generator_layer import shared_args

PROJECTIONS = ("query", "key", "value", "output")


@keras.saving.register_keras_serializable(package="keras_adntn")
class TNMultiHeadAttention(GeneratorLayer):
    """Drop-in for `keras.layers.MultiHeadAttention` with generated weights.

    The four projection kernels are not stored: small nonlinear tensor
    networks generate them from their cores, the layer's only trainable
    weights besides the biases. Attention itself is computed exactly as
    `keras.layers.MultiHeadAttention` computes it (same einsum equations,
    masks, softmax, dropout, and the same kernel and bias shapes:
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
        generator_init: `"calibrated"` (default: the SPEC §4 cores,
            calibrated) or `"orthogonal"` (`network="mpo"` only): the MPO
            starts at a Kronecker product of Haar-random orthogonal
            factors, so the kernel is orthogonal up to its calibrated scale
            (a flat spectrum: a far better layer at initialisation or kept
            frozen with `trainable=False`, see docs/benchmarks.md). Only
            where that is exact: every kernel axis a power of `radix`,
            `mode_order="paired"`, and every MPO site mapping its input
            digits onto its output digits the same way; elsewhere
            ValueError (construction or build) says which condition fails.
            Needs `joint_qkv=False` (slicing the joint kernel into
            query, key and value would not keep them orthogonal).
        kernel_initializer: the distribution the generated kernel is
            calibrated to at build (default `"glorot_uniform"`, as for
            Dense): its standard deviation is what counts. One of the
            glorot, he and lecun initializers, `VarianceScaling`, or
            zero-mean `RandomNormal`, `TruncatedNormal`, `RandomUniform`;
            others (`zeros`, `orthogonal`, ...) raise ValueError.
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
        execution: `"auto"` (default: where the generator is linear,
            `network="mpo"` with `mode_order="paired"`, a cost model picks
            per call shape between contracting the input with the cores,
            never forming the kernel, and generating the kernel; other
            networks generate it), `"factorized"` (always contract:
            `network="mpo"` only, without `kernel_regularizer` or
            `kernel_constraint`, which need the formed kernel; ValueError
            otherwise), `"on_the_fly"` (generate the kernel in every call)
            or `"cached"` (training calls as `"auto"`, inference calls reuse
            a copy of the kernel regenerated whenever the cores changed;
            the copy costs the memory of the dense projections but is not
            a weight: not counted, not saved). `execution_paths(rows)` says
            which path each kernel takes; the paths agree to float
            rounding.
            `kernel_quantization="int8"` forms the kernel on every path.
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
        super().__init__(**shared_args(locals()), **kwargs)
        self.num_heads = check_int("num_heads", num_heads, 1)
        self.key_dim = check_int("key_dim", key_dim, 1)
        self.value_dim = check_int("value_dim", value_dim, 1, allow_none=True)
        if self.value_dim is None:
            self.value_dim = self.key_dim
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not 0.0 <= dropout < 1.0
        ):
            raise ValueError(
                f"`dropout` must be a float in [0, 1), got {dropout!r}."
            )
        self.dropout = float(dropout)
        output_shape = attention.check_output_shape(output_shape)
        self._output_shape = output_shape
        self.attention_axes = attention.check_attention_axes(attention_axes)
        if not isinstance(joint_qkv, bool):
            raise ValueError(
                f"`joint_qkv` must be True or False, got {joint_qkv!r}."
            )
        self.joint_qkv = joint_qkv
        for label, size in (
            ("num_heads * key_dim", self.num_heads * self.key_dim),
            ("num_heads * value_dim", self.num_heads * self.value_dim),
        ) + (
            (("the output size", math.prod(output_shape)),)
            if output_shape
            else ()
        ):
            if size % self.generator_groups:
                raise ValueError(
                    f"`generator_groups` must divide {label} ({size}); got "
                    f"generator_groups={generator_groups}."
                )
        self.use_bias = bool(use_bias)
        self.supports_masking = True
        self._inverse_sqrt_key_dim = 1.0 / math.sqrt(float(self.key_dim))

    # -- build -----------------------------------------------------------------
    def build(self, query_shape, value_shape, key_shape=None):
        query_shape, value_shape, key_shape = attention.check_shapes(
            query_shape, value_shape, key_shape
        )
        if len(query_shape) < 3:
            raise ValueError(
                f"TNMultiHeadAttention expects inputs of rank >= 3 (batch, "
                f"attention axes, features); got query_shape={query_shape}."
            )
        dims = {}
        for name, shape in (
            ("query", query_shape),
            ("key", key_shape),
            ("value", value_shape),
        ):
            if shape[-1] is None:
                raise ValueError(
                    f"TNMultiHeadAttention needs the last dimension of "
                    f"`{name}` to be known at build time; got {shape}."
                )
            dims[name] = int(shape[-1])
        out_shape = self._output_shape or (dims["query"],)
        out_dim = math.prod(out_shape)
        if out_dim % self.generator_groups:
            raise ValueError(
                f"`generator_groups` must divide the output size ({out_dim}); "
                f"got generator_groups={self.generator_groups}."
            )
        self._dims = dims
        self._out_shape = tuple(out_shape)
        g = self.generator_groups
        h = self.num_heads
        nq = h * self.key_dim
        nv = h * self.value_dim
        heads = {"query": self.key_dim, "key": self.key_dim}
        heads["value"] = self.value_dim
        if self.joint_qkv:
            parts = [
                (p, dims[p], h * heads[p], (dims[p], h, heads[p]))
                + (dims[p], h * heads[p])
                for p in ("query", "key", "value")
            ]
            self.qkv_kernel = self._add_kernel(
                (max(dims.values()), (2 * nq + nv) // g),
                parts=parts,
                name="qkv",
            )
        else:
            for k, p in enumerate(("query", "key", "value")):
                kernel = self._add_kernel(
                    (dims[p], h * heads[p] // g),
                    shape=(dims[p], h, heads[p]),
                    fan_in=dims[p],
                    fan_out=h * heads[p],
                    seed_offset=k,
                    key=p,
                    name=p,
                )
                setattr(self, f"{p}_kernel", kernel)
        self.output_kernel = self._add_kernel(
            (nv, out_dim // g),
            shape=(h, self.value_dim, *self._out_shape),
            fan_in=nv,
            fan_out=out_dim,
            seed_offset=3,
            key="output",
            name="output",
        )
        bias_shapes = {
            "query": (self.num_heads, self.key_dim),
            "key": (self.num_heads, self.key_dim),
            "value": (self.num_heads, self.value_dim),
            "output": self._out_shape,
        }
        self._biases = {}
        for name in PROJECTIONS:
            self._biases[name] = (
                self._add_bias(bias_shapes[name], name=f"{name}_bias")
                if self.use_bias
                else None
            )
        self._equations = {
            name: attention_equations.projection_equation(len(shape) - 1, 1, 2)
            for name, shape in (
                ("query", query_shape),
                ("key", key_shape),
                ("value", value_shape),
            )
        }
        rank = len(query_shape) + 1
        self._equations["output"] = attention_equations.projection_equation(
            rank - 2, 2, len(self._out_shape)
        )
        axes = attention.attention_axes(self.attention_axes, rank)
        self._attn_axes = axes
        dot, combine, scores_rank = attention_equations.attention_equations(
            rank, axes
        )
        self._attention_equations = (dot, combine)
        norm_axes = tuple(range(scores_rank - len(axes), scores_rank))
        self._softmax = keras.layers.Softmax(
            axis=norm_axes, dtype=self.dtype_policy
        )
        self._dropout_layer = keras.layers.Dropout(
            rate=self.dropout, dtype=self.dtype_policy, seed=self.seed
        )

    # -- kernels ---------------------------------------------------------------
    @property
    def kernels(self):
        if not self.built:
            raise AttributeError(
                "The kernels of a TNMultiHeadAttention exist once the layer "
                "is built."
            )
        return self._generate()

    def _fetch(self, training):
        """`{name: function of x}`: each projection taken from its
        kernel (`GeneratedKernel.project`, which decides the path)."""
        kernels = {}
        for kernel in self.generated_kernels:
            names = [p[0] for p in kernel.parts or [(kernel.key,)]]
            for name in names:
                kernels[name] = functools.partial(
                    kernel.project,
                    equation=self._equations[name],
                    part=None if kernel.parts is None else name,
                    training=training,
                )
        return kernels

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
        with contextlib.ExitStack() as stack:
            for kernel in self.generated_kernels:
                stack.enter_context(kernel.sharing())
            output, scores = self._attend(
                query,
                value,
                key,
                self._fetch(training),
                self._biases,
                query_mask=query_mask,
                value_mask=value_mask,
                key_mask=key_mask,
                attention_mask=attention_mask,
                use_causal_mask=use_causal_mask,
                training=training,
                return_attention_scores=return_attention_scores,
            )
        if return_attention_scores:
            return output, scores
        return output

    def _attend(
        self,
        query,
        value,
        key,
        kernels,
        biases,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        use_causal_mask=False,
        training=None,
        return_attention_scores=False,
    ):
        """Attention with explicit projection `kernels` and `biases`.

        `kernels` and `biases` are dicts keyed `"query"`, `"key"`,
        `"value"`, `"output"`, with the shapes of the `EinsumDense` kernels
        and biases of `keras.layers.MultiHeadAttention` (`biases` may be
        None, or hold None values). Returns `(output, scores)`.
        """
        if key is None:
            key = value
        causal_only = (
            use_causal_mask
            and query_mask is None
            and value_mask is None
            and key_mask is None
            and attention_mask is None
        )
        if not causal_only:
            attention_mask = attention.combined_mask(
                query,
                value,
                query_mask,
                value_mask,
                key_mask,
                attention_mask,
                use_causal_mask,
            )
        biases = biases or {}
        q = self._project("query", query, kernels, biases)
        k = self._project("key", key, kernels, biases)
        v = self._project("value", value, kernels, biases)
        out, scores = attention.attend(
            q,
            k,
            v,
            attention_mask,
            scale=self._inverse_sqrt_key_dim,
            axes=self._attn_axes,
            equations=self._attention_equations,
            softmax=self._softmax,
            dropout=self._dropout_layer if self.dropout > 0.0 else None,
            training=training,
            return_attention_scores=return_attention_scores,
            causal_only=causal_only,
        )
        out = self._project("output", out, kernels, biases)
        return out, scores

    def _project(self, name, x, kernels, biases):
        kernel = kernels[name]
        if callable(kernel):  # the layer's own: its kernel's product
            y = kernel(x)
        else:
            kernel = ops.cast(kernel, self.compute_dtype)
            y = ops.einsum(self._equations[name], x, kernel)
        if biases.get(name) is not None:
            y = ops.add(y, ops.cast(biases[name], self.compute_dtype))
        return y

    # -- shapes and config -----------------------------------------------------
    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        query_shape, value_shape, key_shape = attention.check_shapes(
            query_shape, value_shape, key_shape
        )
        if self._output_shape:
            return query_shape[:-1] + self._output_shape
        return query_shape

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
        axes = attention.attention_axes(
            self.attention_axes, len(query.shape) + 1
        )
        batch = [
            query.shape[i] for i in range(len(query.shape) - 1) if i not in axes
        ]
        scores = (
            *batch,
            self.num_heads,
            *[query.shape[a] for a in axes],
            *[value.shape[a] for a in axes],
        )
        return output, keras.KerasTensor(scores, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "value_dim": self.value_dim,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "output_shape": self._output_shape,
                "attention_axes": self.attention_axes,
                "joint_qkv": self.joint_qkv,
            }
        )
        return config
