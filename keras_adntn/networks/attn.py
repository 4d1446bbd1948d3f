"""Augmented tree tensor network (aTTN) generator, SPEC §3."""

import keras

from keras_adntn.networks.ttn import TTN


@keras.saving.register_keras_serializable(package="keras_adntn")
class ATTN(TTN):
    """TTN plus one layer of two-site disentanglers at the physical level.

    After the last expansion, every pair of neighbouring leaves that belong
    to *different* parents (open boundary) is mixed by a disentangler of
    shape `(p*p, p*p)`, initialised to the identity plus 1e-2 noise, so an
    aTTN starts close to its TTN.

    Takes the arguments of `GeneratorNetwork`.

    Returns (`generate()`): `(groups, radix**num_modes)` float32.

    Example:

    >>> ATTN(num_modes=24, bond_dim=2).num_params
    352
    """

    gate_levels = "last"
