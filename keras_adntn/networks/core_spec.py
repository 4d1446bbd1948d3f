"""CoreSpec: one trainable core of a generator network's plan."""

from dataclasses import dataclass

from keras_adntn.networks import growth


@dataclass
class CoreSpec:
    """One trainable core: its shape (without the group axis) and role."""

    name: str
    shape: tuple
    kind: str  # "latent", "hidden", "readout" or "gate"
    level: int
    fan_in: int
    fan_out: int
    # Per axis of `shape`, the `(size, grows)` factors it flattens (row
    # major): `grows` marks a bond leg, whose size follows the bond
    # dimension. Empty: no axis grows.
    legs: tuple = ()

    def thresholds(self) -> tuple:
        """`(inputs, outputs)`: the smallest bond dimension at which each
        entry is active (see `growth.thresholds`)."""
        return growth.thresholds(self)
