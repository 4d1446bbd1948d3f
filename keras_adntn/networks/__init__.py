"""Generator networks: a target size in, a generated tensor out."""

from keras_adntn.networks.attn import ATTN
from keras_adntn.networks.base import GeneratorNetwork
from keras_adntn.networks.brickwall import BrickWall
from keras_adntn.networks.mera import MERA
from keras_adntn.networks.mpo import MPO
from keras_adntn.networks.ttn import TTN

NETWORKS = {
    "ttn": TTN,
    "attn": ATTN,
    "mera": MERA,
    "brickwall": BrickWall,
    "mpo": MPO,
}


def get(name: str) -> type:
    """The network class registered under `name`."""
    if name not in NETWORKS:
        raise ValueError(
            f"`network` must be one of {sorted(NETWORKS)}, got {name!r}."
        )
    return NETWORKS[name]


__all__ = [
    "ATTN",
    "BrickWall",
    "GeneratorNetwork",
    "MERA",
    "MPO",
    "NETWORKS",
    "TTN",
    "get",
]
