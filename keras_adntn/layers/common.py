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


def build_generator(
    layer, dims, fan_in, fan_out, name="generator", groups=None
):
    """Tensorization and built network for kernels of shape `dims`.

    The layer's `core_regularizer` (if any) is attached to every trainable
    variable of the network. The network's output is calibrated to the
    standard deviation that
    `glorot_uniform` would give a kernel with these fans. `groups` is the
    number of generator groups (`None`: `layer.groups`).
    """
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
        target_std=tn_init.glorot_std(fan_in, fan_out),
        valid_mask=tensorization.valid_mask(),
        max_bond_dim=getattr(layer, "max_bond_dim", None),
        name=name,
    )
    network.build()
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
        "bias_initializer": initializers.serialize(layer.bias_initializer),
        "bias_regularizer": regularizers.serialize(layer.bias_regularizer),
        "bias_constraint": constraints.serialize(layer.bias_constraint),
        "core_regularizer": regularizers.serialize(layer.core_regularizer),
        "execution": layer.execution,
        "kernel_quantization": layer.kernel_quantization,
    }


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
