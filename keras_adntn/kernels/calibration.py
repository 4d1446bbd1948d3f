"""The scale a generated kernel is calibrated to (`kernel_initializer`).

A TN layer's kernel is not sampled: its generator is calibrated at build to
the standard deviation the layer's `kernel_initializer` would give a stored
kernel with the same fans.
"""

import math

import numpy as np
from keras import initializers
from keras import ops

from keras_adntn.networks import executors
from keras_adntn.networks import initialization as tn_init
from keras_adntn.networks.run_plan import run_plan

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


def mixed_std(parts, initializer) -> float:
    """RMS of the stds `initializer` gives the `(fan_in, fan_out, weight)`
    parts (a joint kernel calibrated as a whole)."""
    stds = {(a, b): kernel_std(initializer, a, b) for a, b, _ in parts}
    if len(stds) == 1:
        return stds.popitem()[1]
    total = sum(w for _, _, w in parts)
    var = sum(w * stds[(a, b)] ** 2 for a, b, w in parts) / total
    return math.sqrt(var)


def part_scale(kernel) -> np.ndarray:
    """`(groups, parts)` float32 factors giving each part of a joint
    `GeneratedKernel` (built network, `parts`) its own std."""
    xp = executors.NumpyOps()
    cores = {
        name: xp.convert(ops.convert_to_numpy(v))
        for name, v in kernel.network._vars.items()
    }
    blocks = run_plan(kernel.network.plan, cores, xp)
    blocks = kernel.tensorization.unfold(blocks, xp)
    g = kernel.spec.generator_groups
    scale = np.ones((g, len(kernel.parts)))
    start = 0
    for i, (_, rows, cols, _, fan_in, fan_out) in enumerate(kernel.parts):
        part = blocks[:, :rows, start : start + cols // g]
        start += cols // g
        std = part.reshape(g, -1).std(axis=1)
        wanted = kernel_std(kernel.kernel_initializer, fan_in, fan_out)
        ok = np.isfinite(std) & (std > 0)
        scale[:, i] = np.where(ok, wanted / np.where(ok, std, 1.0), 1.0)
    return scale.astype("float32")


def check_orthogonal(kernel) -> None:
    """`generator_init="orthogonal"` is exact only where the kernel is
    the whole Kronecker product: nothing cropped, not sliced in parts
    (ValueError otherwise)."""
    if kernel.parts is not None:
        raise ValueError(
            "`generator_init='orthogonal'` does not apply to a kernel "
            "made jointly with others (`parts`, e.g. the joint query / "
            "key / value kernel): slicing a Kronecker product does not "
            "keep it orthogonal. Use generator_init='calibrated', or "
            "separate kernels (TNMultiHeadAttention: joint_qkv=False)."
        )
    if kernel.tensorization.padding_overhead > 0:
        raise ValueError(
            "`generator_init='orthogonal'` needs every axis of the "
            f"kernel to be a power of `radix` ({kernel.spec.radix}), got "
            f"{kernel.dims}: cropping the padding of a Kronecker product "
            "leaves it far from orthogonal (rank deficient). Use "
            "generator_init='calibrated', or sizes that are powers of "
            "the radix."
        )
