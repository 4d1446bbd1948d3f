"""TNMultiHeadAttention: attention whose projections are generated."""

import functools
import math

import keras
from keras import ops

from keras_adntn.kernels.generator_spec import GeneratorSpec
from keras_adntn.kernels.generator_spec import check_int
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
        if "groups" in kwargs:
            raise ValueError(
                "TNMultiHeadAttention has no `groups`; the number of "
                "generator groups is `generator_groups`, got "
                f"groups={kwargs['groups']!r}."
            )
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
        if output_shape is not None:
            if isinstance(output_shape, (list, tuple)):
                output_shape = tuple(
                    check_int("output_shape", d, 1) for d in output_shape
                )
                if not output_shape:
                    raise ValueError(
                        "`output_shape` must be an int, a non-empty tuple "
                        "of ints >= 1, or None, got ()."
                    )
            else:
                output_shape = (check_int("output_shape", output_shape, 1),)
        self._output_shape = output_shape
        if isinstance(attention_axes, int) and not isinstance(
            attention_axes, bool
        ):
            attention_axes = (attention_axes,)
        elif attention_axes is not None:
            if not isinstance(attention_axes, (list, tuple)) or not all(
                isinstance(a, int) and not isinstance(a, bool)
                for a in attention_axes
            ):
                raise ValueError(
                    f"`attention_axes` must be an int, a list or tuple of "
                    f"ints, or None, got {attention_axes!r}."
                )
            attention_axes = tuple(attention_axes)
        self.attention_axes = attention_axes
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
        query_shape, value_shape, key_shape = _check_shapes(
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
        if self.attention_axes is None:
            axes = tuple(range(1, rank - 2))
        else:
            axes = tuple(
                a if a >= 0 else (rank - 1) + a for a in self.attention_axes
            )
        self._attn_axes = axes
        dot, combine, scores_rank = attention_equations.attention_equations(
            rank, axes
        )
        self._dot_product_equation = dot
        self._combine_equation = combine
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

    def _generate(self):
        kernels = {}
        for kernel in self.generated_kernels:
            kernels.update(kernel.generate())
        return kernels

    def _fetch(self, training, shape):
        """`{name: kernel}`, or for a kernel on the factorized path (its
        input contracted with the cores) `{name: function of x}`; `shape`:
        the query's, whose rows every projection has about as many of."""
        kernels = {}
        for kernel in self.generated_kernels:
            if self._kernel_path(kernel, shape, training) == "factorized":
                names = [p[0] for p in kernel.parts or [(kernel.key,)]]
                for name in names:
                    kernels[name] = functools.partial(
                        kernel.factorized_matmul,
                        part=None if kernel.parts is None else name,
                    )
                continue
            made = kernel.kernels(training)
            self._regularize(list(made.values()))
            kernels.update(made)
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
        kernels = self._fetch(training, query.shape)
        output, scores = self._attend(
            query,
            value,
            key,
            kernels,
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
            attention_mask = self._compute_attention_mask(
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
        out, scores = self._compute_attention(
            q,
            k,
            v,
            attention_mask,
            training,
            return_attention_scores,
            causal_only,
        )
        out = self._project("output", out, kernels, biases)
        return out, scores

    def _project(self, name, x, kernels, biases):
        kernel = kernels[name]
        if callable(kernel):  # factorized: (..., d_in) -> (..., d_out)
            heads = 2 if name == "output" else 1
            lead = ops.shape(x)[: len(x.shape) - heads]
            flat = ops.reshape(x, (*lead, math.prod(x.shape[-heads:])))
            y = ops.cast(kernel(flat), self.compute_dtype)
            out = self._out_shape if name == "output" else None
            if out is None:
                width = (
                    self.value_dim if name == "value" else self.key_dim
                )
                out = (self.num_heads, width)
            y = ops.reshape(y, (*lead, *out))
        else:
            kernel = ops.cast(kernel, self.compute_dtype)
            y = ops.einsum(self._equations[name], x, kernel)
        if biases.get(name) is not None:
            y = ops.add(y, ops.cast(biases[name], self.compute_dtype))
        return y

    def _compute_attention_mask(
        self,
        query,
        value,
        query_mask,
        value_mask,
        key_mask,
        attention_mask,
        use_causal_mask,
    ):
        auto_mask = None
        if query_mask is not None:
            auto_mask = ops.expand_dims(ops.cast(query_mask, "bool"), -1)
        for mask in (value_mask, key_mask):
            if mask is not None:
                mask = ops.expand_dims(ops.cast(mask, "bool"), -2)
                auto_mask = (
                    mask
                    if auto_mask is None
                    else ops.logical_and(auto_mask, mask)
                )
        if use_causal_mask:
            mask = _causal_mask(query, value)
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

    def _expand_mask(self, mask, rank):
        axis = -len(self._attn_axes) * 2 - 1
        for _ in range(rank - len(mask.shape)):
            mask = ops.expand_dims(mask, axis=axis)
        return mask

    def _compute_attention(
        self,
        query,
        key,
        value,
        attention_mask,
        training,
        return_attention_scores,
        causal_only,
    ):
        # The fused kernel needs equal query/value head sizes on some
        # backends (jax); the explicit path below computes the same thing.
        fused = not (
            self.dropout > 0.0
            or return_attention_scores
            or len(query.shape) != 4
            or self.key_dim != self.value_dim
        )
        if fused:
            if attention_mask is not None:
                attention_mask = ops.cast(
                    self._expand_mask(attention_mask, 4), "bool"
                )
            out = ops.dot_product_attention(
                query=query,
                key=key,
                value=value,
                mask=attention_mask,
                scale=self._inverse_sqrt_key_dim,
                is_causal=causal_only,
                flash_attention=keras.config.is_flash_attention_enabled(),
            )
            return out, None
        if causal_only:
            attention_mask = _causal_mask(query, value)
        query = ops.multiply(
            query, ops.cast(self._inverse_sqrt_key_dim, query.dtype)
        )
        scores = ops.einsum(self._dot_product_equation, key, query)
        if attention_mask is not None:
            attention_mask = self._expand_mask(
                attention_mask, len(scores.shape)
            )
        scores = self._softmax(scores, mask=attention_mask)
        if self.dropout > 0.0:
            final_scores = self._dropout_layer(scores, training=training)
        else:
            final_scores = scores
        out = ops.einsum(self._combine_equation, final_scores, value)
        return out, scores

    # -- shapes and config -----------------------------------------------------
    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        query_shape, value_shape, key_shape = _check_shapes(
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
        rank = len(query.shape) + 1
        if self.attention_axes is None:
            axes = tuple(range(1, rank - 2))
        else:
            axes = tuple(
                a if a >= 0 else (rank - 1) + a for a in self.attention_axes
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

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "groups" in config:  # files saved before `generator_groups`
            config["generator_groups"] = config.pop("groups")
        return cls(**GeneratorSpec.upgrade_config(config))


def _causal_mask(query, value):
    """Boolean `(1, T, S)` lower-triangular mask (as `MultiHeadAttention`)."""
    q_len = ops.shape(query)[1]
    v_len = ops.shape(value)[1]
    ones = ops.ones((1, q_len, v_len), dtype="int32")
    rows = ops.cumsum(ones, axis=-2)
    cols = ops.cumsum(ones, axis=-1)
    return ops.greater_equal(rows, cols)


def _check_shapes(query_shape, value_shape, key_shape):
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
