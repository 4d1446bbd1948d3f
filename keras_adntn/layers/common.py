"""Wiring shared by the TN layers: argument checks and kernel generation."""

import math

from keras import constraints
from keras import initializers
from keras import regularizers

from keras_adntn import _compute
from keras_adntn import initializers as tn_init
from keras_adntn import networks
from keras_adntn.tensorize import MODE_ORDERS
from keras_adntn.tensorize import Tensorization


def check_int(name: str, value, minimum: int, allow_none=False):
    """Raises ValueError unless `value` is an int >= `minimum`."""
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int,))
        and not (hasattr(value, "__index__"))
        or int(value) < minimum
    ):
        accepted = f"an int >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"`{name}` must be {accepted}, got {value!r}.")
    return int(value)


def check_generator_args(
    network, bond_dim, radix, mode_order, latent_order, depth, activation
):
    """Validates the generator arguments every TN layer takes."""
    cls = networks.get(network)
    check_int("bond_dim", bond_dim, 1)
    check_int("radix", radix, 2)
    if mode_order not in MODE_ORDERS:
        raise ValueError(
            f"`mode_order` must be one of {MODE_ORDERS}, got {mode_order!r}."
        )
    check_int("latent_order", latent_order, 1, allow_none=True)
    check_int("depth", depth, 1, allow_none=True)
    if latent_order is not None and not cls.uses_latent_order:
        raise ValueError(
            f"`latent_order` applies to the tree networks ('ttn', 'attn', "
            f"'mera'), not to network={network!r}."
        )
    if depth is not None and not cls.uses_depth:
        raise ValueError(
            f"`depth` applies to 'ttn', 'attn', 'mera' and 'brickwall', not "
            f"to network={network!r}."
        )
    acts = activation if isinstance(activation, (list, tuple)) else [activation]
    for act in acts:
        tn_init.resolve_activations(act, 1)


# -- kernel_initializer / kernel_regularizer / kernel_constraint --------------
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


def constrain_kernel(layer, kernel):
    """`layer.kernel_constraint(kernel)` (the kernel as is without one).

    A generated kernel is not a variable, so the constraint cannot project
    it after the optimizer step as Keras does for a stored kernel: it is
    applied to the kernel every time it is generated, before it is used.
    """
    constraint = getattr(layer, "kernel_constraint", None)
    return kernel if constraint is None else constraint(kernel)


def add_kernel_regularization(layer, kernels) -> None:
    """Adds `layer.kernel_regularizer` of each generated kernel as a layer
    loss (in `call`: the kernel exists only there)."""
    regularizer = getattr(layer, "kernel_regularizer", None)
    if regularizer is None:
        return
    for kernel in kernels:
        layer.add_loss(regularizer(kernel))


def build_generator(
    layer,
    dims,
    fan_in,
    fan_out,
    name="generator",
    groups=None,
    target_std=None,
):
    """Tensorization and built network for kernels of shape `dims`.

    The layer's `core_regularizer` (if any) is attached to every trainable
    variable of the network. The network's output is calibrated to
    `target_std`, by default the standard deviation the layer's
    `kernel_initializer` (`glorot_uniform` without one) would give a kernel
    with these fans. `groups` is the number of generator groups (`None`:
    `layer.groups`).
    """
    if target_std is None:
        target_std = kernel_std(
            getattr(layer, "kernel_initializer", None), fan_in, fan_out
        )
    tensorization = Tensorization(dims, layer.radix, layer.mode_order)
    cls = networks.get(layer.network)
    network = cls(
        num_modes=tensorization.num_modes,
        radix=layer.radix,
        bond_dim=layer.bond_dim,
        activation=layer.generator_activation,
        groups=layer.groups if groups is None else int(groups),
        latent_order=layer.latent_order,
        depth=layer.depth,
        seed=layer.seed,
        target_std=target_std,
        valid_mask=tensorization.valid_mask(),
        max_bond_dim=getattr(layer, "max_bond_dim", None),
        name=name,
    )
    network.build()
    # `keras.Model.quantize` reaches the generator (a leaf), not the layer
    network.set_owner(getattr(layer, "tn_owner", layer))
    if getattr(layer, "core_regularizer", None) is not None:
        for variable in network.trainable_variables:
            variable.regularizer = layer.core_regularizer
    return tensorization, network


def generate_kernel(tensorization, network, xp=None):
    """`(groups, *dims)` float32 kernel from the network.

    `xp=None` uses `_compute.default_ops()`: `KerasOps()` unless an export
    switched it with `_compute.generation_ops`.
    """
    xp = _compute.default_ops() if xp is None else xp
    return tensorization.unfold(network.generate(xp), xp)


def dense_count(*dims) -> int:
    """Number of entries of a dense weight of shape `dims`."""
    return math.prod(dims)


def generator_config(layer) -> dict:
    """Config entries of the generator, bias and kernel arguments TN layers
    share."""
    return {
        "network": layer.network,
        "bond_dim": layer.bond_dim,
        "max_bond_dim": getattr(layer, "max_bond_dim", None),
        "radix": layer.radix,
        "latent_order": layer.latent_order,
        "depth": layer.depth,
        "generator_activation": tn_init.serialize_activations(
            layer.generator_activation
        ),
        "mode_order": layer.mode_order,
        "seed": layer.seed,
        "kernel_initializer": initializers.serialize(layer.kernel_initializer),
        "kernel_regularizer": regularizers.serialize(layer.kernel_regularizer),
        "kernel_constraint": constraints.serialize(layer.kernel_constraint),
        "bias_initializer": initializers.serialize(layer.bias_initializer),
        "bias_regularizer": regularizers.serialize(layer.bias_regularizer),
        "bias_constraint": constraints.serialize(layer.bias_constraint),
        "core_regularizer": regularizers.serialize(layer.core_regularizer),
        "execution": layer.execution,
        "kernel_quantization": layer.kernel_quantization,
    }


# -- Keras quantisation API ----------------------------------------------------
def quantize(layer, mode=None, config=None) -> None:
    """`layer.quantize(mode)` of a TN layer: Keras's quantisation API mapped
    onto the layer's int8 kernel path.

    `"int8"` sets `kernel_quantization="int8"`: the generated kernel is
    fake-quantised per output channel in every call, weights only (the
    stored cores stay float32 and are already small; activations stay
    float, an int8 LiteRT export quantises them). Other modes, and an int8
    config with its own weight quantizer, raise NotImplementedError, which
    `keras.Model.quantize` turns into one warning per TN layer.
    """
    if config is not None and mode is None:
        mode = getattr(config, "mode", None)
    name = f"{type(layer).__name__} {layer.name!r}"
    if mode != "int8":
        raise NotImplementedError(
            f"{name} supports only quantize('int8') (mapped to "
            f"kernel_quantization='int8'), got mode={mode!r}; the layer is "
            "left as it was. For a smaller deployed file use "
            "keras_adntn.export_litert(model, path, quantize='int8' or "
            "'float16')."
        )
    if getattr(config, "weight_quantizer", None) is not None:
        raise NotImplementedError(
            f"{name}: a custom `weight_quantizer` is not supported; TN "
            "layers round their generated kernel to int8 per output channel "
            "(quantize('int8') with the default config)."
        )
    if layer.kernel_quantization == "int8":
        return
    layer.kernel_quantization = "int8"
    cache = getattr(layer, "_kernel_cache", None)
    if cache is not None:
        cache.invalidate()


# -- growth (SPEC §7) ---------------------------------------------------------
GROWTH_NOISE = networks.base.GROWTH_NOISE


def check_max_bond_dim(max_bond_dim, bond_dim):
    """Validates a layer's `max_bond_dim`: None or an int >= `bond_dim`."""
    return networks.base.check_max_bond_dim(max_bond_dim, bond_dim)


def generators(layer) -> list:
    """The generator networks of a built TN layer, in attribute order."""
    return [
        sub
        for sub in layer._flatten_layers(include_self=False, recursive=False)
        if isinstance(sub, networks.GeneratorNetwork)
    ]


def grow(layer, bond_dim: int, noise: float = GROWTH_NOISE) -> None:
    """Grows every generator of `layer` to `bond_dim` (SPEC §7).

    The generated kernels do not change (see `GeneratorNetwork.grow`); only
    variable values are assigned, so it is safe between epochs of a running
    `fit` (compiled functions and optimizer state stay valid) and the
    layer's config then records the new `bond_dim`.

    Raises:
        ValueError: if the layer has no `max_bond_dim`, or `bond_dim` is
            below the current bond dimension or above `max_bond_dim`.
    """
    max_bond_dim = getattr(layer, "max_bond_dim", None)
    sync_bond_dim(layer)
    try:
        new = networks.base.check_grow(bond_dim, layer.bond_dim, max_bond_dim)
    except ValueError as error:
        raise ValueError(f"Layer {layer.name!r}: {error}") from None
    if new == layer.bond_dim:
        return
    for network in generators(layer):
        network.grow(new, noise)
    layer.bond_dim = new


def sync_bond_dim(layer) -> int:
    """Sets `layer.bond_dim` from its generators' `active_bond_dim`
    variables (the ones generation uses: `set_weights` or loading weights
    may have changed them) and returns it."""
    dims = [network.sync_bond_dim() for network in generators(layer)]
    if dims and getattr(layer, "max_bond_dim", None) is not None:
        layer.bond_dim = max(dims)
    return layer.bond_dim


def active_params(layer) -> int:
    """`layer.count_params()` without the generator entries that growth
    capacity allocates but the current `bond_dim` does not use (nor the
    `active_bond_dim` scalars): what the same layer without `max_bond_dim`
    would count."""
    total = layer.count_params()
    for network in generators(layer):
        total -= network.count_params() - network.active_params
    return total
