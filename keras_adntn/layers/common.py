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
    """Config entries of the generator and bias arguments TN layers share."""
    return {
        "network": layer.network,
        "bond_dim": layer.bond_dim,
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
    }
