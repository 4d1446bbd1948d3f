"""Nonlinear MERA generator, SPEC §3."""

import keras

from keras_adntn.networks.ttn import TTN


@keras.saving.register_keras_serializable(package="keras_adntn")
class MERA(TTN):
    """TTN with disentanglers across branch boundaries at every level.

    At each level the expansion is followed by disentanglers on neighbouring
    modes of different parents, then the activation: overlapping causal
    cones, multi-scale mixing.

    Takes the arguments of `GeneratorNetwork`.

    Returns (`generate()`): `(groups, radix**num_modes)` float32.

    Example:

    >>> MERA(num_modes=24, bond_dim=2).num_params
    464
    """

    gate_levels = "all"
