"""Which generators can be contracted with an input, and how.

`FACTORIZATIONS` maps a network class (exactly: `ATTN` and `MERA`
subclass `TTN` but gate or renormalize after its last level, so their
kernels are formed) to the object that plans and makes its factorized
product; the functions below are what callers use.
"""

from keras_adntn import networks
from keras_adntn.factorized.blocks import FactorizedPlan
from keras_adntn.factorized.chain import Chain
from keras_adntn.factorized.tree_head import TreeHead

FACTORIZATIONS = {networks.MPO: Chain(), networks.TTN: TreeHead()}


def _entry(network, what):
    """The table's entry for `network` (an instance); raises where it has
    none, naming `what` was asked."""
    entry = FACTORIZATIONS.get(type(network))
    if entry is None:
        raise ValueError(
            f"{what}: {class_reason(type(network), 'paired')}."
        )
    return entry


def _name(network_class) -> str:
    """The name `network_class` is registered under (`networks.NETWORKS`)."""
    for name, cls in networks.NETWORKS.items():
        if cls is network_class:
            return name
    return network_class.__name__.lower()


def class_reason(network_class: type, mode_order: str = "paired"):
    """Why no kernel of `network_class` generating in `mode_order` can be
    contracted with an input without forming it (a sentence), or None.

    Args:
        network_class: a `GeneratorNetwork` subclass.
        mode_order: `"paired"` or `"flat"` (`GeneratorSpec.mode_order`).

    Returns:
        None, or a sentence (no capital, no full stop).
    """
    if network_class not in FACTORIZATIONS:
        return (
            f"network={_name(network_class)!r} is nonlinear up to its last "
            "contraction, so its kernel must be formed; network='mpo' "
            "(linear) and 'ttn' (linear last level) contract the input "
            "with the cores"
        )
    if mode_order != "paired":
        return (
            "mode_order='flat' mixes the kernel's input and output digits; "
            "use mode_order='paired'"
        )
    return None


def reason(network):
    """Why `network`'s `x @ W` cannot be contracted without forming `W`
    (a sentence), or None: `class_reason` of its class (paired mode
    order), then the network's own (a tree whose last level has a single
    core)."""
    sentence = class_reason(type(network))
    if sentence is None:
        sentence = FACTORIZATIONS[type(network)].reason(network)
    return sentence


def on_device(network) -> bool:
    """Whether `network`'s factorized sites are its cores (what a device
    stores), so an export contracts them in the trace; False for a
    network not in the table."""
    entry = FACTORIZATIONS.get(type(network))
    return entry is not None and entry.on_device


def directions(network) -> tuple:
    """The directions `network`'s plans can run (`FactorizedPlan`)."""
    return _entry(network, "no factorized plan").directions


def plan(
    network,
    in_dim: int,
    out_dim: int,
    rows=128,
    first_site: int = 0,
    direction: str = "right",
    objective: str = "time",
    max_block_entries=None,
    head_steps=None,
) -> FactorizedPlan:
    """The plan of `x @ W` without forming `W`, `W` the `(in_dim,
    out_dim)` kernel (per group) that `network` generates.

    Args:
        network: a built generator for which `reason` is None.
        in_dim: the kernel's rows (unpadded input size).
        out_dim: its columns per generator group.
        rows: the input rows the blocks are chosen for (None: 128).
        first_site: of an `mpo`, the first site planned (a conv kernel's
            channel sites, after `lead_sites`).
        direction: `"right"` or `"left"` (`directions(network)`).
        objective: `"time"` or `"memory"`.
        max_block_entries: the largest block matrix (None: the default).
        head_steps: of a `ttn`, the last level's cores in the head (None:
            chosen by the cost model).

    Returns:
        A `FactorizedPlan` (a `HeadedPlan` for a tree).
    """
    return _entry(network, "no factorized plan").plan(
        network,
        in_dim,
        out_dim,
        rows=rows,
        first_site=first_site,
        direction=direction,
        objective=objective,
        max_block_entries=max_block_entries,
        head_steps=head_steps,
    )


def cores(network, plan, xp=None) -> dict:
    """The sites of `plan` (from `plan(network, ...)`) as tensors of the
    executor `xp` (None: Keras): `{site name: (G, b_left, q, b_right)}`,
    a tree's head as its block matrix."""
    return _entry(network, "no factorized cores").cores(network, plan, xp)


def lead_sites(network, leaves: int):
    """The names of an `mpo`'s sites holding exactly its first `leaves`
    leaves (a conv kernel's spatial digits), or None where a site holds
    digits on both sides (or `network` is no chain)."""
    entry = FACTORIZATIONS.get(type(network))
    if not isinstance(entry, Chain):
        return None
    return entry.lead_sites(network, leaves)


def last_level_cores(network) -> int:
    """Cores of a `ttn`'s last level (a `HeadedPlan`'s `head_steps` is
    between 1 and one less)."""
    entry = _entry(network, "no last level")
    if not isinstance(entry, TreeHead):
        raise ValueError(f"{type(network).__name__} is no tree.")
    return entry.last_level_cores(network)
