"""build_dttn: a staged Deep Tree Tensor Network image classifier."""

import keras

from keras_adntn.explicit.aim import AIM


def build_dttn(
    input_shape,
    num_classes,
    stages=(2, 2),
    channels=(32, 64),
    patch_size=2,
    spatial="tokens",
    use_layer_norm=True,
    out_scale=0.1,
    head_activation="softmax",
    seed=None,
    name="dttn",
):
    """A DTTN classifier: linear patch embedding, stages of AIMs, head.

    Layout: `Conv2D(channels[0], patch_size, strides=patch_size)` (linear
    patch embedding), then for stage `s`: `stages[s]` AIM modules at width
    `channels[s]`, with a linear `Conv2D(channels[s], 2, strides=2)`
    downsampling between stages; then global average pooling, optional
    LayerNorm and `Dense(num_classes, head_activation)`. Apart from the
    optional LayerNorms and the final softmax the network is purely
    multilinear (no activations).

    Args:
        input_shape: `(H, W, C)` of the images.
        num_classes: int >= 2.
        stages: number of AIM modules per stage (each int >= 1).
        channels: width per stage, same length as `stages`.
        patch_size: int >= 1, side of the embedded patches.
        spatial: AIM spatial operation, `"tokens"` or `"depthwise"`.
        use_layer_norm: LayerNorm inside every AIM and before the head.
        out_scale: AIM `out_scale`.
        head_activation: activation of the last Dense (`None`: logits).
        seed: int seed (offset per layer).
        name: model name.

    Returns:
        An uncompiled `keras.Model`.

    Example:

    >>> model = build_dttn((8, 8, 1), 10, stages=(1, 1), channels=(8, 16))
    >>> model.output_shape
    (None, 10)
    """
    if len(tuple(input_shape)) != 3:
        raise ValueError(
            f"`input_shape` must be (H, W, C), got {input_shape!r}."
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise ValueError(
            f"`num_classes` must be an int >= 2, got {num_classes!r}."
        )
    if num_classes < 2:
        raise ValueError(
            f"`num_classes` must be an int >= 2, got {num_classes!r}."
        )
    stages, channels = tuple(stages), tuple(channels)
    if not stages or len(stages) != len(channels):
        raise ValueError(
            f"`stages` and `channels` must be non-empty and of equal length; "
            f"got stages={stages}, channels={channels}."
        )
    if any(not isinstance(s, int) or s < 1 for s in stages):
        raise ValueError(f"`stages` must hold ints >= 1, got {stages}.")
    if any(not isinstance(c, int) or c < 1 for c in channels):
        raise ValueError(f"`channels` must hold ints >= 1, got {channels}.")
    if not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(
            f"`patch_size` must be an int >= 1, got {patch_size!r}."
        )

    def seed_at(k):
        return None if seed is None else seed + 10 * k

    inputs = keras.Input(tuple(input_shape))
    x = keras.layers.Conv2D(
        channels[0], patch_size, strides=patch_size, name="patch_embed"
    )(inputs)
    count = 0
    for s, (depth, width) in enumerate(zip(stages, channels)):
        if s > 0:
            x = keras.layers.Conv2D(
                width, 2, strides=2, padding="same", name=f"downsample{s}"
            )(x)
        for d in range(depth):
            x = AIM(
                spatial=spatial,
                use_layer_norm=use_layer_norm,
                out_scale=out_scale,
                seed=seed_at(count),
                name=f"stage{s}_aim{d}",
            )(x)
            count += 1
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if use_layer_norm:
        x = keras.layers.LayerNormalization(name="head_norm")(x)
    outputs = keras.layers.Dense(
        num_classes, activation=head_activation, name="head"
    )(x)
    return keras.Model(inputs, outputs, name=name)
