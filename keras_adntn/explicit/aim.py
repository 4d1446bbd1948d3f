"""AIM: the antisymmetric interaction module of the Deep Tree TN."""

import keras
from keras import initializers
from keras import ops

SPATIAL_MODES = ("tokens", "depthwise")


@keras.saving.register_keras_serializable(package="keras_adntn")
class AIM(keras.layers.Layer):
    """Antisymmetric Interaction Module: `x + B((A1 x) * (A2 x))`.

    The two branches apply a spatial and a channel operation in opposite
    orders: `A1 = channel o spatial` (spatial first), `A2 = spatial o
    channel` (channel first); `B` is a channel (pointwise) map and `*` the
    elementwise product. There are no activations and no biases, so
    without LayerNorm the non-residual part is a homogeneous polynomial of
    degree 2 in `x`; stacking `L` modules gives `2^L`-order interactions
    (a tree tensor network). With `use_layer_norm=True` (which the DTTN
    poster found helps) the branches read `LayerNorm(x)` instead of `x`.

    Spatial operations act on the token axes: for `(B, H, W, C)` inputs a
    Dense over the `H*W` tokens (`spatial="tokens"`) or a 3x3 depthwise
    convolution (`spatial="depthwise"`); for `(B, N, C)` inputs only
    `"tokens"` (a Dense over `N`). Channel operations are Dense maps over
    `C` (pointwise convolutions).

    Args:
        spatial: `"tokens"` (default) or `"depthwise"`.
        kernel_size: odd int >= 1, depthwise kernel size (default 3).
        use_layer_norm: whether the branches read `LayerNorm(x)`.
        out_scale: float > 0, std scale of the `B` initialisation
            (default 0.1: each module starts close to the identity).
        seed: int seed of the initialisation.
        **kwargs: base layer arguments.

    Call arguments:
        inputs: tensor `(B, H, W, C)` or `(B, N, C)`.

    Returns:
        Tensor of the input's shape.

    Example:

    >>> aim = AIM()
    >>> tuple(aim(np.ones((2, 4, 4, 8), "float32")).shape)
    (2, 4, 4, 8)
    """

    def __init__(
        self,
        spatial="tokens",
        kernel_size=3,
        use_layer_norm=True,
        out_scale=0.1,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if spatial not in SPATIAL_MODES:
            raise ValueError(
                f"`spatial` must be one of {SPATIAL_MODES}, got {spatial!r}."
            )
        if (
            isinstance(kernel_size, bool)
            or not isinstance(kernel_size, int)
            or kernel_size < 1
            or kernel_size % 2 == 0
        ):
            raise ValueError(
                f"`kernel_size` must be an odd int >= 1, got {kernel_size!r}."
            )
        if not isinstance(out_scale, (int, float)) or out_scale <= 0:
            raise ValueError(
                f"`out_scale` must be a float > 0, got {out_scale!r}."
            )
        self.spatial = spatial
        self.kernel_size = kernel_size
        self.use_layer_norm = bool(use_layer_norm)
        self.out_scale = float(out_scale)
        self.seed = seed

    def _seed(self, offset):
        return None if self.seed is None else self.seed + offset

    def build(self, input_shape):
        if len(input_shape) not in (3, 4) or any(
            d is None for d in input_shape[1:]
        ):
            raise ValueError(
                f"AIM expects inputs (B, H, W, C) or (B, N, C) with known "
                f"non-batch sizes; got input_shape={tuple(input_shape)}."
            )
        if len(input_shape) == 3 and self.spatial == "depthwise":
            raise ValueError(
                "`spatial='depthwise'` needs (B, H, W, C) inputs; use "
                "'tokens' for (B, N, C)."
            )
        self.token_shape = tuple(int(d) for d in input_shape[1:-1])
        tokens = 1
        for d in self.token_shape:
            tokens *= d
        self.num_tokens = tokens
        c = int(input_shape[-1])
        self.channels = c
        glorot = initializers.GlorotUniform
        if self.spatial == "tokens":
            shape = (tokens, tokens)
        else:
            shape = (self.kernel_size, self.kernel_size, c, 1)
        self.spatial1 = self.add_weight(
            name="spatial1", shape=shape, initializer=glorot(self._seed(0))
        )
        self.spatial2 = self.add_weight(
            name="spatial2", shape=shape, initializer=glorot(self._seed(1))
        )
        self.channel1 = self.add_weight(
            name="channel1", shape=(c, c), initializer=glorot(self._seed(2))
        )
        self.channel2 = self.add_weight(
            name="channel2", shape=(c, c), initializer=glorot(self._seed(3))
        )
        self.out_kernel = self.add_weight(
            name="out_kernel",
            shape=(c, c),
            initializer=initializers.RandomNormal(
                stddev=self.out_scale / c**0.5, seed=self._seed(4)
            ),
        )
        if self.use_layer_norm:
            self.norm = keras.layers.LayerNormalization(
                epsilon=1e-5, dtype=self.dtype_policy, name="norm"
            )
            self.norm.build(input_shape)
        else:
            self.norm = None

    def _spatial_op(self, x, kernel):
        if self.spatial == "depthwise":
            return ops.depthwise_conv(x, kernel, strides=1, padding="same")
        flat = ops.reshape(x, (-1, self.num_tokens, self.channels))
        mixed = ops.einsum("bnc,nm->bmc", flat, kernel)
        return ops.reshape(mixed, (-1,) + self.token_shape + (self.channels,))

    def interaction(self, inputs):
        """The non-residual part `B((A1 x) * (A2 x))`."""
        if not self.built:
            self.build(tuple(inputs.shape))
        x = self.norm(inputs) if self.norm is not None else inputs
        a1 = ops.matmul(self._spatial_op(x, self.spatial1), self.channel1)
        a2 = self._spatial_op(ops.matmul(x, self.channel2), self.spatial2)
        return ops.matmul(ops.multiply(a1, a2), self.out_kernel)

    def call(self, inputs):
        return ops.add(inputs, self.interaction(inputs))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "spatial": self.spatial,
                "kernel_size": self.kernel_size,
                "use_layer_norm": self.use_layer_norm,
                "out_scale": self.out_scale,
                "seed": self.seed,
            }
        )
        return config
