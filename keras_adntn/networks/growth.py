"""Bond growth (SPEC §7): masks, embedding and the new entries.

With `max_bond_dim` set, the cores are allocated at the shapes of bond
dimension `max_bond_dim` and a non-trainable scalar `active_bond_dim`
selects the leading blocks that are used; every core is multiplied by its
0/1 mask (entry active iff each of its bond-leg indices is below the active
bond) before the contractions, so inactive entries get no gradient.
`GeneratorNetwork.grow` raises the active bond by assigning values only (no
shape changes), keeping the generated tensor unchanged (`grown_values`).

Everything here is NumPy on plain data: `CoreSpec`s and a `Plan`
(`networks.plan`), dicts of arrays.
"""

import numpy as np

from keras_adntn.networks.executors import NumpyOps

GROWTH_NOISE = 1e-2
ACTIVE_BOND = "active_bond_dim"


def check_max_bond_dim(max_bond_dim, bond_dim: int):
    """Validates `max_bond_dim` (None, or an int >= `bond_dim`)."""
    if max_bond_dim is None:
        return None
    if (
        isinstance(max_bond_dim, bool)
        or not hasattr(max_bond_dim, "__index__")
        or int(max_bond_dim) < int(bond_dim)
    ):
        raise ValueError(
            f"`max_bond_dim` must be None or an int >= `bond_dim` "
            f"({bond_dim}), got {max_bond_dim!r}."
        )
    return int(max_bond_dim)


def check_grow(bond_dim, current: int, max_bond_dim) -> int:
    """Validates the target of a growth; returns it as an int."""
    if max_bond_dim is None:
        raise ValueError(
            "`grow` needs growth capacity: build the layer with "
            "`max_bond_dim` (>= the largest bond dimension to grow to)."
        )
    if (
        isinstance(bond_dim, bool)
        or not hasattr(bond_dim, "__index__")
        or not current <= int(bond_dim) <= max_bond_dim
    ):
        raise ValueError(
            f"`bond_dim` to grow to must be an int between the current bond "
            f"dimension ({current}) and `max_bond_dim` ({max_bond_dim}), got "
            f"{bond_dim!r}."
        )
    return int(bond_dim)


def thresholds(spec) -> tuple:
    """`(inputs, outputs)`: int arrays of `spec.shape`, the smallest bond
    dimension at which an entry of core `spec` (a `CoreSpec`) is active,
    from the input legs (axis 0, except for the latent) and from the
    output legs (1: always)."""
    inputs = np.ones(spec.shape, dtype=np.int64)
    outputs = np.ones(spec.shape, dtype=np.int64)
    for axis, factors in enumerate(spec.legs):
        target = outputs if axis or spec.kind == "latent" else inputs
        sizes = [size for size, _ in factors]
        for f, (size, grows) in enumerate(factors):
            if not grows:
                continue
            index = np.arange(1, size + 1).reshape(
                [size if i == f else 1 for i in range(len(sizes))]
            )
            index = np.broadcast_to(index, sizes).reshape(-1)
            index = index.reshape(
                [-1 if i == axis else 1 for i in range(len(spec.shape))]
            )
            np.maximum(target, index, out=target)
    return inputs, outputs


def mask_thresholds(specs) -> dict:
    """`{core name: float32 threshold}` of the cores that have inactive
    entries below the largest bond (the masks' inputs)."""
    out = {}
    for c in specs:
        threshold = np.maximum(*thresholds(c))
        if threshold.max() > 1:
            out[c.name] = threshold.astype("float32")
    return out


def active_entries(specs, bond_dim: int) -> int:
    """Entries of the cores `specs` (one group) active at `bond_dim`."""
    used = 0
    for c in specs:
        inputs, outputs = thresholds(c)
        used += int(np.sum(np.maximum(inputs, outputs) <= bond_dim))
    return used


def embed(value, small, big):
    """`value` (cores of spec `small`) as the leading blocks of zero cores
    of spec `big`, factor by factor (flattened gate legs included)."""
    g = value.shape[0]

    def factors(spec):
        if not spec.legs:
            return [(s,) for s in spec.shape]
        return [tuple(s for s, _ in f) for f in spec.legs]

    small_f, big_f = factors(small), factors(big)
    small_sizes = [s for f in small_f for s in f]
    big_sizes = [s for f in big_f for s in f]
    out = np.zeros((g, *big_sizes), dtype=value.dtype)
    index = (slice(None),) + tuple(slice(0, s) for s in small_sizes)
    out[index] = value.reshape(g, *small_sizes)
    return out.reshape(g, *big.shape)


def zero_channel_levels(plan, values: dict) -> dict:
    """`{level: whether a zero pre-activation stays zero}` (act(0) == 0,
    evaluated with the current coefficients of learnable ones in
    `values`)."""
    xp = NumpyOps()
    zero = {}
    for stage in plan.stages:
        if stage[0] != "end_level":
            continue
        _, level, act = stage
        if act is None:
            zero[level] = True
            continue
        fn = plan.activation(act, values, xp)
        out = xp.activate(fn, np.zeros((plan.groups, 1)))
        zero[level] = bool(np.all(np.abs(np.asarray(out)) < 1e-12))
    return zero


def grown_values(plan, values: dict, masked, old, new, noise, seed) -> dict:
    """The new values of the cores of `plan` named in `masked` that gain
    entries from bond dimension `old` to `new` (float64, `{name: array}`).

    The newly active entries are set so that the generated tensor does
    not change while gradients reach them: for a bond whose new channel is
    zero after its level's activation (act(0) == 0, or no activation), the
    entries producing the channel are 0 and those consuming it are random;
    otherwise the producers are random and the consumers 0. New diagonal
    entries of a disentangler are 1 (the identity on the new channels).
    "Random" is `noise` times the RMS of the core's active entries times
    N(0, 1), per group, drawn from a generator seeded by `(seed, old,
    new)`.

    Args:
        plan: the network's `Plan`.
        values: `{name: float64 array}` of the current weights (cores and
            activation coefficients).
        masked: the names of the cores with growth masks.
        old, new: the bond dimensions before and after.
        noise: relative scale of the random new entries.
        seed: int seed.
    """
    zero = zero_channel_levels(plan, values)
    rng = np.random.default_rng([int(seed), old, new])
    g = plan.groups
    out = {}
    for spec in plan.cores:
        if spec.name not in masked:
            continue
        inputs, outputs = thresholds(spec)
        both = np.maximum(inputs, outputs)
        fresh = (both > old) & (both <= new)
        if not fresh.any():
            continue
        value = values[spec.name]
        used = (both <= old).reshape(1, -1)
        flat = value.reshape(g, -1)
        rms = np.sqrt(
            np.sum(np.square(flat) * used, axis=1) / max(used.sum(), 1)
        )
        rms = np.where(rms > 0, rms, 1.0).reshape((g,) + (1,) * len(spec.shape))
        random = noise * rms * rng.standard_normal(value.shape)
        produces = fresh & (outputs > old)
        consumes = fresh & ~produces
        in_level = spec.level if spec.kind == "gate" else spec.level - 1
        new_value = np.where(
            produces, 0.0 if zero[spec.level] else random, value
        )
        new_value = np.where(
            consumes, random if zero.get(in_level, True) else 0.0, new_value
        )
        if spec.kind == "gate":
            diagonal = np.eye(spec.shape[0], dtype=bool) & fresh
            new_value = np.where(diagonal, 1.0, new_value)
        out[spec.name] = new_value
    return out
