"""Tree tensor network (TTN) generator, SPEC §3."""

import math

import keras

from keras_adntn.networks.base import GeneratorNetwork
from keras_adntn.networks.plan import bond

LEAVES_PER_ROOT = 8
# the default latent tensor (bond_dim ** latent_order numbers) stays small
MAX_DEFAULT_LATENT = 256
# `latent_order` values naming a default rule (see `default_latent_order`)
DEFAULT_RULES = ("auto", "legacy")


def default_latent_order(num_modes, bond_dim=2, radix=2, rule="auto"):
    """The default number of tree roots for `num_modes` leaves.

    `"legacy"` (the default up to 0.1.0, kept so files saved then load):
    `ceil(N / 8)`, roots of at most 8 leaves, shares differing by one where
    8 does not divide N (20 modes: 7/7/6). `"auto"` (the default now): the
    fewest roots from `ceil(N / 8)` up to twice that which split N into
    equal power-of-two shares (balanced subtrees, no pass-through cores:
    20 modes -> 5 roots of 4, 24 -> 3 of 8), as long as the latent tensor
    stays at most `MAX_DEFAULT_LATENT` numbers; otherwise the legacy
    count.

    Example:

    >>> default_latent_order(20), default_latent_order(20, rule="legacy")
    (5, 3)
    """
    n = int(num_modes)
    legacy = math.ceil(n / LEAVES_PER_ROOT)
    if rule == "legacy":
        return legacy
    if rule != "auto":
        raise ValueError(f"unknown latent_order rule {rule!r}")
    for n0 in range(legacy, min(2 * legacy, n) + 1):
        share, rest = divmod(n, n0)
        leg = bond(bond_dim, radix, share)
        if rest == 0 and share & (share - 1) == 0:
            if leg**n0 <= MAX_DEFAULT_LATENT:
                return n0
            break
    return legacy


@keras.saving.register_keras_serializable(package="keras_adntn")
class TTN(GeneratorNetwork):
    """Nonlinear tree tensor network generator.

    A latent tensor with `latent_order` modes of size `bond_dim` is expanded
    level by level: every mode is contracted with its own core, which turns
    it into two modes (or one, where the tree is unbalanced), then the level's
    activation is applied (none after the last level). Each latent mode roots
    a subtree over an even share of the `num_modes` leaves, so any N works,
    not only `latent_order * 2**depth`: where the share is not a power of two
    some nodes pass through a level with a `(chi, chi)` core instead of
    splitting. A leg covering `n` leaves has dimension `min(chi, radix**n)`.

    Defaults (`latent_order=None` or `"auto"`): balanced roots where N
    splits into equal power-of-two shares of 4 to 8 leaves (20 modes: 5
    roots of 4, 24 modes: 3 of 8), else `ceil(N / 8)` (see
    `default_latent_order`; `"legacy"` is the rule up to 0.1.0), or
    `ceil(N / 2**depth)` when only `depth` is given.

    Takes the arguments of `GeneratorNetwork`.

    Returns (`generate()`): `(groups, radix**num_modes)` float32.

    Example:

    >>> net = TTN(num_modes=24, bond_dim=2)
    >>> net.num_params   # 4096 x 4096 weight, paired order
    176
    """

    uses_latent_order = True
    uses_depth = True
    gate_levels = "none"  # "last" (aTTN) or "all" (MERA)

    def _tree_shape(self):
        n = self.num_modes
        n0, depth = self.latent_order, self.depth
        if n0 is None or n0 in DEFAULT_RULES:
            if depth is not None:
                n0 = math.ceil(n / 2**depth)
            else:
                n0 = default_latent_order(
                    n, self.allocated_bond_dim, self.radix, n0 or "auto"
                )
        elif isinstance(n0, bool) or int(n0) != n0 or not 1 <= n0 <= n:
            raise ValueError(
                f"`latent_order` must be an int between 1 and the number of "
                f"generated modes ({n}), got {n0}."
            )
        n0 = int(n0)
        widest = math.ceil(n / n0)
        needed = max(1, math.ceil(math.log2(widest)) if widest > 1 else 0)
        if depth is None:
            depth = needed
        elif depth < needed:
            raise ValueError(
                f"`latent_order`={n0} with `depth`={depth} gives at most "
                f"{n0 * 2**depth} leaves, fewer than the {n} modes to "
                f"generate; raise either."
            )
        base, extra = divmod(n, n0)
        counts = [base + 1] * extra + [base] * (n0 - extra)
        return counts, int(depth)

    def _make_plan(self):
        p, chi, g = self.radix, self.allocated_bond_dim, self.groups
        counts, depth = self._tree_shape()
        dims = [bond(chi, p, c) for c in counts]
        self.plan.add_core(
            "latent", dims, "latent", 0, legs=[((d, True),) for d in dims]
        )
        self.plan.add_stage(("latent", "latent"))
        self.plan.add_stage(("end_level", 0, None))
        del g
        for level in range(1, depth + 1):
            remaining = depth - level + 1
            final = level == depth
            blocks, children, parents = [], [], []
            for node, (count, dim) in enumerate(zip(counts, dims)):
                if count > 2 ** (remaining - 1):
                    split = [math.ceil(count / 2), count // 2]
                else:
                    split = [count]
                child_dims = [p if final else bond(chi, p, c) for c in split]
                core = self.plan.add_core(
                    f"level{level}_node{node}",
                    (dim, *child_dims),
                    "readout" if final else "hidden",
                    level,
                    legs=[((dim, True),)]
                    + [((d, not final),) for d in child_dims],
                )
                blocks.append((dim, math.prod(child_dims), core))
                children += list(zip(split, child_dims))
                parents += [node] * len(split)
            expansions = len(self.plan.stages)
            self.plan.add_stage(("cycle", blocks))
            counts = [c for c, _ in children]
            dims = [d for _, d in children]
            if self.gate_levels == "all" or (
                self.gate_levels == "last" and final
            ):
                self._add_boundary_gates(dims, parents, level, not final)
                self.plan.interleave_gates(expansions)
            self.plan.add_stage(
                ("end_level", level, None if final else level - 1)
            )

    def _add_boundary_gates(self, dims, parents, level, grows=False):
        """Disentanglers on neighbours with different parents (open ends);
        `grows`: whether the modes are bond legs (not physical ones)."""
        boundaries = [
            j for j in range(len(dims) - 1) if parents[j] != parents[j + 1]
        ]
        sublayers = []
        for j in boundaries:
            for layer in sublayers:
                if all(abs(j - k) > 1 for k in layer):
                    layer.append(j)
                    break
            else:
                sublayers.append([j])
        for s, layer in enumerate(sublayers):
            self.plan.add_gate_layer(
                dims,
                [(j, j + 1) for j in layer],
                level,
                f"level{level}_gate{s}" if s else f"level{level}_gate",
                grows=[grows] * len(dims),
            )
