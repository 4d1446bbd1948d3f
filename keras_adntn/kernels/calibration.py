"""The scale a generated kernel is calibrated to (`kernel_initializer`).

A TN layer's kernel is not sampled: its generator is calibrated at build to
the standard deviation the layer's `kernel_initializer` would give a stored
kernel with the same fans.
"""

import math

from keras import initializers

from keras_adntn.networks import initialization as tn_init

# The keras initializers whose standard deviation follows from the fans.
KERNEL_INITIALIZERS = (
    "glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_uniform, "
    "lecun_normal, VarianceScaling, RandomNormal, TruncatedNormal, "
    "RandomUniform (zero mean)"
)
# std of a normal truncated at 2 standard deviations (keras.random.
# truncated_normal), relative to the untruncated one
_TRUNCATED_STD = 0.87962566103423978


def kernel_std(initializer, fan_in: float, fan_out: float) -> float:
    """The standard deviation `initializer` gives a kernel with these fans.

    A TN layer's generated kernel is calibrated at build to this standard
    deviation (its `kernel_initializer` is the target distribution of the
    calibration, not a sampler: the kernel is not stored).

    Args:
        initializer: None (`glorot_uniform`) or a Keras initializer of the
            `VarianceScaling` family (glorot, he, lecun), `RandomNormal`,
            `TruncatedNormal` or `RandomUniform`, with zero mean.
        fan_in: fan-in of the kernel (Keras's convention).
        fan_out: fan-out of the kernel.

    Returns:
        The standard deviation, a float.

    Raises:
        ValueError: for other initializers (e.g. `zeros`, `orthogonal`),
            naming `kernel_initializer` and the accepted ones.
    """
    if initializer is None:
        return tn_init.glorot_std(fan_in, fan_out)
    ki = initializers
    if isinstance(initializer, ki.VarianceScaling):
        scale = float(initializer.scale)
        if initializer.mode == "fan_in":
            return math.sqrt(scale / max(1.0, fan_in))
        if initializer.mode == "fan_out":
            return math.sqrt(scale / max(1.0, fan_out))
        return math.sqrt(2.0 * scale / max(1.0, fan_in + fan_out))
    if isinstance(initializer, (ki.RandomNormal, ki.TruncatedNormal)):
        if float(initializer.mean) == 0.0:
            std = float(initializer.stddev)
            if isinstance(initializer, ki.TruncatedNormal):
                std *= _TRUNCATED_STD
            return std
    elif isinstance(initializer, ki.RandomUniform):
        low, high = float(initializer.minval), float(initializer.maxval)
        if low == -high:
            return (high - low) / math.sqrt(12.0)
    raise ValueError(
        "`kernel_initializer` of a TN layer is the distribution the "
        "generated kernel is calibrated to; it must be one of "
        f"{KERNEL_INITIALIZERS}, got {initializer!r}."
    )


def get_kernel_initializer(identifier):
    """`keras.initializers.get(identifier)`, checked by `kernel_std`."""
    try:
        initializer = initializers.get(identifier)
    except ValueError as error:
        raise ValueError(
            f"`kernel_initializer` must be one of {KERNEL_INITIALIZERS}, "
            f"got {identifier!r} ({error})"
        ) from None
    kernel_std(initializer, 1, 1)
    return initializer
