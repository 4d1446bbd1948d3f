"""GeneratorSpec: the checked description of a generator network."""

from keras_adntn import networks
from keras_adntn.networks import initialization as tn_init
from keras_adntn.networks.growth import check_max_bond_dim
from keras_adntn.tensorize import MODE_ORDERS


def check_int(name: str, value, minimum: int, allow_none: bool = False):
    """`int(value)`; ValueError naming `name` unless it is an int >=
    `minimum` (or None with `allow_none`)."""
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        and not hasattr(value, "__index__")
        or int(value) < minimum
    ):
        accepted = f"an int >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"`{name}` must be {accepted}, got {value!r}.")
    return int(value)


class GeneratorSpec:
    """What generator network makes a kernel: validated at construction.

    A TN layer turns its generator arguments into one `GeneratorSpec` in
    `__init__` (bad values raise ValueError there, naming the argument) and
    hands it to each of its `GeneratedKernel`s at build. Only `bond_dim`
    changes afterwards (growth, SPEC §7).

    Args:
        network: one of `"ttn"`, `"attn"`, `"mera"`, `"brickwall"`,
            `"mpo"`.
        bond_dim: bond dimension, int >= 1.
        max_bond_dim: None, or the int >= `bond_dim` the cores are
            allocated at (growth capacity).
        radix: size of every tensor mode, int >= 2.
        latent_order: latent order of the tree networks, or None (the
            default rule, `networks.ttn.default_latent_order`; `"auto"`
            is the same, `"legacy"` the default up to 0.1.0).
        depth: levels of a tree network / gate layers of the brick wall, or
            None.
        generator_activation: activation between levels (a name, callable,
            or a list with one per hidden level).
        generator_groups: independent generators run as one batch along
            the kernel's output axis, int >= 1.
        mode_order: `"paired"` or `"flat"`.
        seed: int >= 0 or None.
        generator_init: `"calibrated"` (SPEC §4: He / Glorot cores,
            calibrated) or `"orthogonal"` (network `"mpo"` with
            `mode_order="paired"` only: a Kronecker product of Haar-random
            orthogonal factors, so the kernel starts orthogonal up to its
            calibrated scale; see `networks.initialization`).
    """

    FIELDS = (
        "network",
        "bond_dim",
        "max_bond_dim",
        "radix",
        "latent_order",
        "depth",
        "generator_activation",
        "generator_groups",
        "mode_order",
        "seed",
        "generator_init",
    )

    def __init__(
        self,
        network: str = "ttn",
        bond_dim: int = 2,
        max_bond_dim: int | None = None,
        radix: int = 2,
        latent_order: int | None = None,
        depth: int | None = None,
        generator_activation="elu",
        generator_groups: int = 1,
        mode_order: str = "paired",
        seed: int | None = None,
        generator_init: str = "calibrated",
    ):
        cls = networks.get(network)
        self.network = network
        self.bond_dim = check_int("bond_dim", bond_dim, 1)
        self.max_bond_dim = check_max_bond_dim(max_bond_dim, self.bond_dim)
        self.radix = check_int("radix", radix, 2)
        if mode_order not in MODE_ORDERS:
            raise ValueError(
                f"`mode_order` must be one of {MODE_ORDERS}, got "
                f"{mode_order!r}."
            )
        self.mode_order = mode_order
        if latent_order == "auto":  # what get_config writes for None
            latent_order = None
        if latent_order == "legacy" and cls.uses_latent_order:
            self.latent_order = latent_order  # the default up to 0.1.0
        else:
            self.latent_order = check_int(
                "latent_order", latent_order, 1, allow_none=True
            )
        self.depth = check_int("depth", depth, 1, allow_none=True)
        if latent_order is not None and not cls.uses_latent_order:
            raise ValueError(
                f"`latent_order` applies to the tree networks ('ttn', "
                f"'attn', 'mera'), not to network={network!r}."
            )
        if depth is not None and not cls.uses_depth:
            raise ValueError(
                f"`depth` applies to 'ttn', 'attn', 'mera' and 'brickwall', "
                f"not to network={network!r}."
            )
        acts = generator_activation
        for act in acts if isinstance(acts, (list, tuple)) else [acts]:
            tn_init.resolve_activations(act, 1)
        self.generator_activation = generator_activation
        self.generator_groups = check_int(
            "generator_groups", generator_groups, 1
        )
        self.seed = check_int("seed", seed, 0, allow_none=True)
        self.generator_init = tn_init.check_initialization(generator_init, cls)
        if generator_init == "orthogonal" and mode_order != "paired":
            raise ValueError(
                "`generator_init='orthogonal'` needs mode_order='paired' "
                "(each site a block of input and output digits), got "
                f"mode_order={mode_order!r}."
            )

    def network_class(self) -> type:
        """The `GeneratorNetwork` subclass of `network`."""
        return networks.get(self.network)

    def offset(self, k: int) -> "GeneratorSpec":
        """The same spec with `seed + k` (None stays None): the k-th
        generator of a layer with several."""
        config = self.get_config()
        if self.seed is not None:
            config["seed"] = self.seed + int(k)
        return GeneratorSpec(**config)

    def get_config(self) -> dict:
        """The constructor arguments (JSON-serialisable)."""
        config = {name: getattr(self, name) for name in self.FIELDS}
        if config["latent_order"] is None and self.uses_latent_order:
            # the default rule by name: a stored None means the rule of
            # 0.1.0 (`upgrade_config`), so older files rebuild their trees
            config["latent_order"] = "auto"
        config["generator_activation"] = tn_init.serialize_activations(
            self.generator_activation
        )
        return config

    @property
    def uses_latent_order(self) -> bool:
        """Whether `network` is a tree network (takes `latent_order`)."""
        return self.network_class().uses_latent_order

    @staticmethod
    def upgrade_config(config: dict) -> dict:
        """A config saved by an older version, made current: a tree
        network's `latent_order=None` was the default of 0.1.0
        (`ceil(N / 8)` roots), which is `"legacy"` now; configs written
        since say `"auto"` (or an int)."""
        if (
            config.get("latent_order", "auto") is None
            and networks.get(config.get("network", "ttn")).uses_latent_order
        ):
            config = {**config, "latent_order": "legacy"}
        return config

    @classmethod
    def from_config(cls, config: dict) -> "GeneratorSpec":
        return cls(**cls.upgrade_config(config))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"GeneratorSpec({args})"
