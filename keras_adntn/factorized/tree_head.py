"""The factorized product of a tree (`ttn`): a formed head, then cores.

A tree is nonlinear up to its last level, which is linear (no activation
follows it): its `HeadedPlan` forms the tree up to the level's first
cores (the *head*, one site, far smaller than the kernel) and takes the
level's other cores (each with the bond of the modes still to consume) as
the chain's next sites.
"""

import math

import numpy as np

from keras_adntn.factorized.cost import MAX_HEAD_BOND
from keras_adntn.factorized.cost import move_seconds
from keras_adntn.factorized.headed_plan import HEAD
from keras_adntn.factorized.headed_plan import HeadedPlan
from keras_adntn.networks.executors import KerasOps
from keras_adntn.networks.run_plan import run_plan


def last_level(network):
    """`(stage index, blocks)` of a tree's last level's cycle: each block
    `(a, b, core)` turns one mode into leaves, and nothing nonlinear
    follows."""
    stages = network.plan.stages
    index = max(i for i, s in enumerate(stages) if s[0] == "cycle")
    return index, stages[index][1]


def _state_sizes(network):
    """Per contraction of the plan, in order, the state's entries after
    it (all groups): what generating moves through memory."""
    sizes, size = [], 0
    for stage in network.plan.stages:
        if stage[0] == "latent":
            size = network.groups * math.prod(network.plan.shape(stage[1]))
        elif stage[0] == "cycle":
            for a, b, _ in stage[1]:
                size = size // a * b
                sizes.append(size)
    return sizes


class TreeHead:
    """How a `TTN`'s kernel is contracted with an input.

    Attributes:
        on_device: False: the plan's first site is a formed head, not a
            core; an export's device path is its own `HeadedSchedule`.
        directions: the directions its plans can run (from the last
            site: the head is applied last).
    """

    on_device = False
    directions = ("right",)

    def last_level_cores(self, network) -> int:
        """Cores of the last level: `plan`'s `head_steps` is between 1
        and one less."""
        return len(last_level(network)[1])

    def reason(self, network):
        """A sentence where the last level has a single core (nothing to
        contract apart from a head), else None."""
        if self.last_level_cores(network) < 2:
            return (
                "its last level has a single core (a kernel of "
                f"{network.radix**network.num_modes} numbers), so the head "
                "would be the kernel"
            )
        return None

    def plan(
        self,
        network,
        in_dim,
        out_dim,
        rows=None,
        first_site=0,
        direction="right",
        objective="time",
        max_block_entries=None,
        head_steps=None,
    ) -> HeadedPlan:
        """The plan of `x @ W` without forming `W`: the state after the
        first contractions of the last level is formed (the head, one
        site), the level's other cores are the chain's next sites. Where
        the head ends (`head_steps`: how many of the level's cores it
        holds) is chosen by the cost model for `rows` input rows unless
        given. Matrices only (`first_site` 0), applied from the last site
        (`direction="right"`: the head comes first); `objective`,
        `max_block_entries`: those of `FactorizedPlan`."""
        if direction != "right":
            raise ValueError(
                "a ttn's factorized plan runs from its last site: "
                f"`direction` must be 'right'; got {direction!r}."
            )
        if network.output_leaves is None or first_site:
            raise ValueError(
                "a ttn's factorized execution takes matrices whose input "
                "and output digits are apart (mode_order='paired')."
            )
        _, blocks = last_level(network)
        if head_steps is not None and not 1 <= head_steps < len(blocks):
            raise ValueError(
                f"`head_steps` must be between 1 and {len(blocks) - 1} (the "
                f"last level has {len(blocks)} cores), got {head_steps}."
            )
        sizes = _state_sizes(network)
        extra = {
            "objective": objective,
            "rows": rows,
            # generating: every contraction, leaf order -> matrix, crop
            "generation_seconds": sum(move_seconds(n) for n in sizes)
            + 2.0 * move_seconds(sizes[-1]),
        }
        if max_block_entries is not None:
            extra["max_block_entries"] = max_block_entries
        best = None
        for h in range(1, len(blocks)):
            bond_ = math.prod(a for a, _, _ in blocks[h:])
            if head_steps is not None:
                if h != head_steps:
                    continue
            elif bond_ > MAX_HEAD_BOND and h < len(blocks) - 1:
                continue
            plan = self._headed(network, blocks, h, in_dim, out_dim, extra)
            seconds = plan.factorized_seconds(plan.rows)
            if best is None or seconds < best[0]:
                best = (seconds, plan)
        return best[1]

    @staticmethod
    def _headed(network, blocks, h, in_dim, out_dim, extra):
        """The `HeadedPlan` whose head holds the last level's first `h`
        cores (`extra`: its keyword arguments)."""
        p = network.radix
        leaves = [round(math.log(b, p)) for _, b, _ in blocks]
        bond_ = math.prod(a for a, _, _ in blocks[h:])
        sites = [(HEAD, sum(leaves[:h]))]
        shapes = {HEAD: (1, p ** sites[0][1], bond_)}
        rest = bond_
        for (a, b, name), m in zip(blocks[h:], leaves[h:]):
            rest //= a
            sites.append((name, m))
            shapes[name] = (a * rest, b, rest)
        head_size = network.groups * bond_ * p ** sites[0][1]
        return HeadedPlan(
            sites,
            shapes,
            network.output_leaves,
            p,
            network.groups,
            in_dim,
            out_dim,
            head_steps=h,
            # a matmul writes the head, one transpose moves it
            head_seconds=3.0 * move_seconds(head_size),
            **extra,
        )

    def cores(self, network, plan, xp=None) -> dict:
        """The sites of `plan` (a `HeadedPlan`), tensors of `xp`: the
        head as its block matrix `(G, R1 * bond, C1)` (`head`) and the
        last level's other cores as `(G, b_left, q, b_right)`, each times
        the identity on the modes after it (the bond)."""
        xp = KerasOps() if xp is None else xp
        cores = network.active_cores(xp)
        g, h = network.groups, plan.head_steps
        _, blocks = last_level(network)
        sites = {HEAD: head(network, cores, xp, h)}
        rest = math.prod(a for a, _, _ in blocks[h:])
        for a, b, name in blocks[h:]:
            rest //= a
            core = xp.reshape(cores[name], (g, a * b, 1))
            eye = xp.convert(np.eye(rest).reshape(1, 1, rest * rest))
            site = xp.reshape(xp.matmul(core, eye), (g, a, b, rest, rest))
            site = xp.transpose(site, (0, 1, 3, 2, 4))
            sites[name] = xp.reshape(site, (g, a * rest, b, rest))
        return sites


def head(network, cores, xp, h):
    """A tree up to the last level's first `h` cores, as the block
    matrix `(G, R1 * bond, C1)`: R1 / C1 the input / output digits of
    their leaves, bond the modes the level has left to consume.

    The state `S` entering the level is run with `run_plan`; the `h`
    cores are split in two halves P and Q, each made one Kronecker
    factor `V (a, R, C)` (small), and

        M = S(a_P; a_Q, bond)^T @ V_P      (a_Q, bond, R_P, C_P)
        T = M(.; a_Q)^T @ V_Q              (bond, R_P, C_P, R_Q, C_Q)

    then one transpose to `(R_P, R_Q, bond, C_P, C_Q)`: two matmuls
    and one pass over the head, not one pass per core."""
    g = network.groups
    index, blocks = last_level(network)
    state = run_plan(network.plan, cores, xp, stop=(index, 0))
    factors = _kron_factors(network, cores, xp, blocks[:h])
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


def _kron_factors(network, cores, xp, blocks):
    """`blocks` (the last level's first cores) in two halves, each the
    Kronecker product of its cores as `(G, a, R, C)`: a the modes they
    consume, R / C their leaves' input / output digits. Keras and NumPy
    only (transposes of rank 7): an export forms a ttn's kernel."""
    g, p = network.groups, network.radix
    roles = network.output_leaves
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
