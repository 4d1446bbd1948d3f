"""Tree tensor network (TTN) generator, SPEC §3."""

import math

import keras
import numpy as np

from keras_adntn.networks import factorized
from keras_adntn.networks.base import GeneratorNetwork
from keras_adntn.networks.executors import KerasOps
from keras_adntn.networks.plan import bond
from keras_adntn.networks.run_plan import run_plan

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
    # the last level is linear (no activation after it): `x @ W` can take
    # it from the cores, the rest formed as a head (`factorized_plan`)
    factorizable = True

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

    # -- factorized execution ------------------------------------------------
    def _last_level(self):
        """`(stage index, blocks)` of the last level's cycle: each block
        `(a, b, core)` turns one mode into leaves, and nothing nonlinear
        follows."""
        stages = self.plan.stages
        index = max(i for i, s in enumerate(stages) if s[0] == "cycle")
        return index, stages[index][1]

    @property
    def last_level_cores(self) -> int:
        """Cores of the last level: `factorized_plan`'s `head_steps` is
        between 1 and one less."""
        return len(self._last_level()[1])

    def factorized_reason(self):
        """A sentence where the last level has a single core (nothing to
        contract apart from a head), else None."""
        if len(self._last_level()[1]) < 2:
            return (
                "its last level has a single core (a kernel of "
                f"{self.radix**self.num_modes} numbers), so the head "
                "would be the kernel"
            )
        return None

    def _state_sizes(self):
        """Per contraction of the plan, in order, the state's entries after
        it (all groups): what generating moves through memory."""
        sizes, size = [], 0
        for stage in self.plan.stages:
            if stage[0] == "latent":
                size = self.groups * math.prod(self.plan.shape(stage[1]))
            elif stage[0] == "cycle":
                for a, b, _ in stage[1]:
                    size = size // a * b
                    sizes.append(size)
        return sizes

    def factorized_plan(
        self,
        in_dim,
        out_dim,
        rows=None,
        max_block_entries=None,
        first_site=0,
        head_steps=None,
        direction="right",
        objective="time",
    ) -> factorized.HeadedPlan:
        """The plan of `x @ W` without forming `W` (see
        `networks.factorized`): the state after the first contractions of
        the last level is formed (the *head*, one site), the level's other
        cores (each with the bond of the modes still to consume) are the
        chain's next sites. Where the head ends (`head_steps`: how many of
        the level's cores it holds) is chosen by the cost model for `rows`
        input rows unless given. Matrices only (`first_site` 0), applied
        from the last site (`direction="right"`: the head comes first);
        `objective`: that of `FactorizedPlan`."""
        if direction != "right":
            raise ValueError(
                "a ttn's factorized plan runs from its last site: "
                f"`direction` must be 'right'; got {direction!r}."
            )
        if self.output_leaves is None or first_site:
            raise ValueError(
                "a ttn's factorized execution takes matrices whose input "
                "and output digits are apart (mode_order='paired')."
            )
        index, blocks = self._last_level()
        sizes = self._state_sizes()
        generation = sum(factorized.move_seconds(n) for n in sizes)
        generation += 2.0 * factorized.move_seconds(sizes[-1])
        extra = {"objective": objective}
        if max_block_entries is not None:
            extra["max_block_entries"] = max_block_entries
        p, best = self.radix, None
        leaves = [round(math.log(b, p)) for _, b, _ in blocks]
        if head_steps is not None and not 1 <= head_steps < len(blocks):
            raise ValueError(
                f"`head_steps` must be between 1 and {len(blocks) - 1} (the "
                f"last level has {len(blocks)} cores), got {head_steps}."
            )
        for h in range(1, len(blocks)):
            bond_ = math.prod(a for a, _, _ in blocks[h:])
            if head_steps is not None:
                if h != head_steps:
                    continue
            elif bond_ > factorized.MAX_HEAD_BOND and h < len(blocks) - 1:
                continue
            sites = [(factorized.HEAD, sum(leaves[:h]))]
            shapes = {factorized.HEAD: (1, p ** sites[0][1], bond_)}
            rest = bond_
            for (a, b, name), m in zip(blocks[h:], leaves[h:]):
                rest //= a
                sites.append((name, m))
                shapes[name] = (a * rest, b, rest)
            head = self.groups * bond_ * p ** sites[0][1]
            plan = factorized.HeadedPlan(
                sites,
                shapes,
                self.output_leaves,
                p,
                self.groups,
                in_dim,
                out_dim,
                rows=rows,
                head_steps=h,
                # a matmul writes the head, one transpose moves it
                head_seconds=3.0 * factorized.move_seconds(head),
                generation_seconds=generation,
                **extra,
            )
            seconds = plan.factorized_seconds(plan.rows)
            if best is None or seconds < best[0]:
                best = (seconds, plan)
        return best[1]

    def factorized_cores(self, plan, xp=None) -> dict:
        """The sites of `plan` (a `factorized_plan`), tensors of `xp`: the
        head as its block matrix `(G, R1 * bond, C1)` (`_head`) and the
        last level's other cores as `(G, b_left, q, b_right)`, each times
        the identity on the modes after it (the bond)."""
        xp = KerasOps() if xp is None else xp
        cores = self.active_cores(xp)
        g, h = self.groups, plan.head_steps
        _, blocks = self._last_level()
        sites = {factorized.HEAD: self._head(cores, xp, h)}
        rest = math.prod(a for a, _, _ in blocks[h:])
        for a, b, name in blocks[h:]:
            rest //= a
            core = xp.reshape(cores[name], (g, a * b, 1))
            eye = xp.convert(np.eye(rest).reshape(1, 1, rest * rest))
            site = xp.reshape(xp.matmul(core, eye), (g, a, b, rest, rest))
            site = xp.transpose(site, (0, 1, 3, 2, 4))
            sites[name] = xp.reshape(site, (g, a * rest, b, rest))
        return sites

    def _head(self, cores, xp, h):
        """The tree up to the last level's first `h` cores, as the block
        matrix `(G, R1 * bond, C1)`: R1 / C1 the input / output digits of
        their leaves, bond the modes the level has left to consume.

        The state `S` entering the level is run with `run_plan`; the `h`
        cores are split in two halves P and Q, each made one Kronecker
        factor `V (a, R, C)` (small), and

            M = S(a_P; a_Q, bond)^T @ V_P      (a_Q, bond, R_P, C_P)
            T = M(.; a_Q)^T @ V_Q              (bond, R_P, C_P, R_Q, C_Q)

        then one transpose to `(R_P, R_Q, bond, C_P, C_Q)`: two matmuls
        and one pass over the head, not one pass per core."""
        g = self.groups
        index, blocks = self._last_level()
        state = run_plan(self.plan, cores, xp, stop=(index, 0))
        factors = self._kron_factors(cores, xp, blocks[:h])
        bond_ = math.prod(a for a, _, _ in blocks[h:])
        if len(factors) == 1:
            factors.insert(0, None)
        (v_p, v_q) = factors
        a_q, r_q, c_q = v_q.shape[1:]
        if v_p is None:
            a_p, r_p, c_p = 1, 1, 1
            m = state
        else:
            a_p, r_p, c_p = v_p.shape[1:]
            m = xp.reshape(state, (g, a_p, a_q * bond_))
            m = xp.transpose(m, (0, 2, 1))
            m = xp.matmul(m, xp.reshape(v_p, (g, a_p, r_p * c_p)))
        m = xp.reshape(m, (g, a_q, bond_ * r_p * c_p))
        t = xp.matmul(
            xp.transpose(m, (0, 2, 1)), xp.reshape(v_q, (g, a_q, r_q * c_q))
        )
        t = xp.reshape(t, (g, bond_, r_p, c_p, r_q, c_q))
        t = xp.transpose(t, (0, 2, 4, 1, 3, 5))
        return xp.reshape(t, (g, r_p * r_q * bond_, c_p * c_q))

    def _kron_factors(self, cores, xp, blocks):
        """`blocks` (the last level's first cores) in two halves, each the
        Kronecker product of its cores as `(G, a, R, C)`: a the modes they
        consume, R / C their leaves' input / output digits. Keras and NumPy
        only (transposes of rank 7): an export forms a ttn's kernel."""
        g, p = self.groups, self.radix
        roles = self.output_leaves
        first = 0  # the leaf the next core makes (the level makes them all)
        split = len(blocks) // 2
        halves = [blocks[:split], blocks[split:]] if split else [blocks]
        out = []
        for half in halves:
            v = None
            for a, b, name in half:
                m = round(math.log(b, p))
                role = roles[first : first + m]
                first += m
                ins = [2 + i for i, r in enumerate(role) if not r]
                outs = [2 + i for i, r in enumerate(role) if r]
                core = xp.reshape(cores[name], (g, a, *[p] * m))
                core = xp.transpose(core, (0, 1, *ins, *outs))
                r, c = p ** len(ins), p ** len(outs)
                core = xp.reshape(core, (g, a, r, c))
                if v is None:
                    v = core
                    continue
                a0, r0, c0 = v.shape[1:]
                v = xp.matmul(
                    xp.reshape(v, (g, a0 * r0 * c0, 1)),
                    xp.reshape(core, (g, 1, a * r * c)),
                )
                v = xp.reshape(v, (g, a0, r0, c0, a, r, c))
                v = xp.transpose(v, (0, 1, 4, 2, 5, 3, 6))
                v = xp.reshape(v, (g, a0 * a, r0 * r, c0 * c))
            out.append(v)
        return out
