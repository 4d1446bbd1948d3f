"""FactorizedPlan: `x @ W` for a linear generator, W never formed.

A multilinear generator (`mpo`) is a tensor train over sites of the kernel's
digits. The product of an input with the kernel it generates can be taken
site by site, as the tensor-train layers of Novikov et al. (2015) do:
`O(rows * P_in * r * q)` per site instead of `O(rows * I * O)` for the
matmul plus the kernel's generation. No kernel-sized tensor exists on that
path, forward or backward, so the gradients that leave a layer (and cross
devices in data parallel training) are core-sized.

`FactorizedPlan` is the plan of that product, plain data computed once per
layer and input row count: consecutive sites are merged into *blocks* (the
block's cores contracted together, a tiny tensor) and the blocks are
applied from the last one to the first:

    state (G, rows, O_done, I_rest, b)      I_rest's trailing digits and b
      -> matmul with the block's (in digits * b_right, out digits * b_left)
      -> one transpose moving the new output digits in front of O_done

every step a reshape, a two-operand matmul and a transpose of rank <= 5 (4
without generator groups), so it lowers to LiteRT builtins (RESHAPE,
FULLY_CONNECTED / BATCH_MATMUL, TRANSPOSE). A plan may instead run from the
first block to the last (`direction="left"`):

    state (G, rows, I_rest, O_done, b)      I_rest's leading digits first
      -> one transpose moving the block's input digits next to b
      -> matmul with the block's (in digits * b_left, out digits * b_right)

which carries different states (the smaller, where the chain ends in sites
of output digits only) and takes the bond left of the first site as an
input (a conv's spatial factor applied first). Its cost model
(`factorized_seconds`, `generated_seconds`, `peak_entries`) lets a layer
choose per call shape between this path and generate-then-multiply, and an
export the plan of least memory.
"""

from dataclasses import dataclass

from keras_adntn.factorized.cost import MAX_BLOCK_ENTRIES
from keras_adntn.factorized.cost import matmul_seconds
from keras_adntn.factorized.cost import move_seconds

# from the last block to the first, or from the first to the last
DIRECTIONS = ("right", "left")
# what the block choice minimizes: modeled seconds, or the largest live
# states (then seconds)
OBJECTIVES = ("time", "memory")


@dataclass(frozen=True)
class Block:
    """Consecutive sites contracted together.

    Attributes:
        sites: the names of the cores, in chain order.
        leaves: per leaf of the block (leaf order), True for an output
            digit.
        b_left, b_right: the bond dimensions at the block's two ends.
    """

    sites: tuple
    leaves: tuple
    b_left: int
    b_right: int
    radix: int

    @property
    def k_in(self) -> int:
        """Size of the block's input digits."""
        return self.radix ** sum(1 for r in self.leaves if not r)

    @property
    def k_out(self) -> int:
        """Size of the block's output digits."""
        return self.radix ** sum(1 for r in self.leaves if r)

    @property
    def entries(self) -> int:
        return self.k_in * self.b_right * self.k_out * self.b_left


class FactorizedPlan:
    """How to multiply `(rows, in_dim)` inputs by an MPO-made kernel.

    Args:
        sites: the MPO's `(core name, leaves)` in chain order.
        shapes: `{core name: (b_left, radix**leaves, b_right)}`.
        output_leaves: per leaf (leaf order), True for a digit of the
            kernel's last (output) axis; the other leaves are the input
            digits, in the row-major order of the padded input index.
        radix: the mode size.
        groups: generator groups (the output axis holds `groups` blocks).
        in_dim, out_dim: the unpadded input size and per-group output
            size.
        rows: the row count the blocks are chosen for (None: 128).
        max_block_entries: the largest block matrix (numbers) sites are
            merged into.
        direction: `"right"` (the blocks applied from the last one; the
            bond left of the first site, `lead_bond`, is an output axis)
            or `"left"` (from the first one; `lead_bond` is an input
            axis).
        objective: `"time"` (the blocks of least modeled seconds) or
            `"memory"` (of the smallest `peak_entries`, then seconds).
    """

    def __init__(
        self,
        sites,
        shapes,
        output_leaves,
        radix,
        groups,
        in_dim,
        out_dim,
        rows=None,
        max_block_entries=MAX_BLOCK_ENTRIES,
        direction="right",
        objective="time",
    ):
        if direction not in DIRECTIONS:
            raise ValueError(
                f"`direction` must be one of {DIRECTIONS}; got {direction!r}."
            )
        if objective not in OBJECTIVES:
            raise ValueError(
                f"`objective` must be one of {OBJECTIVES}; got {objective!r}."
            )
        self.direction = direction
        self.objective = objective
        self.max_block_entries = int(max_block_entries)
        self.radix = int(radix)
        self.groups = int(groups)
        self.in_dim = int(in_dim)
        self.out_dim = int(out_dim)
        roles = tuple(bool(r) for r in output_leaves)
        self.in_size = self.radix ** sum(1 for r in roles if not r)
        self.out_size = self.radix ** sum(1 for r in roles if r)
        if self.in_size < self.in_dim or self.out_size < self.out_dim:
            raise ValueError(
                f"the leaves {roles} do not cover a ({in_dim}, {out_dim}) "
                "kernel."
            )
        units, left = [], 0
        for name, m in sites:
            b_left, _, b_right = shapes[name]
            units.append((name, roles[left : left + m], b_left, b_right))
            left += m
        if left != len(roles):
            raise ValueError("the sites do not cover the leaves.")
        self.units = units
        self.rows = 128 if rows is None else max(int(rows), 1)
        self.blocks = self._choose_blocks(self.rows)

    # -- blocks ----------------------------------------------------------------
    def _block(self, i, j):
        units = self.units[i:j]
        return Block(
            sites=tuple(u[0] for u in units),
            leaves=tuple(r for u in units for r in u[1]),
            b_left=units[0][2],
            b_right=units[-1][3],
            radix=self.radix,
        )

    def _choose_blocks(self, rows):
        """The partition of the sites into blocks of least modeled time, or
        (`objective="memory"`) of the smallest `peak_entries` and then
        least time (dynamic programming over the chain; a block's cost
        depends on its position only: the states around it are fixed by
        the digits done)."""
        n = len(self.units)
        costs = {}
        for i in range(n):
            for j in range(i + 1, self._block_end(i, n) + 1):
                block = self._block(i, j)
                if j > i + 1 and block.entries > self.max_block_entries:
                    break
                costs[i, j] = (
                    block,
                    self._block_seconds(block, i, rows),
                    self._block_peak(block, i, rows),
                )
        cap = None
        if self.objective == "memory":
            cap = self._partition(costs, n, lambda a, b: max(a, b), 2)[0]
        return tuple(self._partition(costs, n, lambda a, b: a + b, 1, cap)[1])

    @staticmethod
    def _partition(costs, n, combine, field, cap=None):
        """`(value, blocks)`: the partition of sites `0..n` minimizing the
        `combine`d `field` of its blocks' costs (blocks whose peak is over
        `cap` left out)."""
        best = [None] * (n + 1)
        best[n] = (0.0, [])
        for i in reversed(range(n)):
            options = [
                (combine(float(c[field]), best[j][0]), [c[0]] + best[j][1])
                for (a, j), c in costs.items()
                if a == i
                and best[j] is not None
                and (cap is None or c[2] <= cap)
            ]
            best[i] = min(options, key=lambda o: o[0]) if options else None
        return best[0]

    def _block_end(self, first, n):
        """The last site (exclusive) a block starting at `first` may
        reach."""
        del first
        return n

    def _digits(self, units, output):
        """Size of the input (`output` False) or output digits of
        `units`."""
        return self.radix ** sum(
            1 for u in units for r in u[1] if bool(r) == output
        )

    def _bond_at(self, j):
        """The bond between site `j - 1` and site `j` (the lead bond at 0,
        1 past the end)."""
        if j == 0:
            return self.units[0][2]
        return self.units[j - 1][3]

    def _state_entries(self, j, rows):
        """Entries of the state when the sites from `j` on are done
        (`direction="right"`; rows x input digits left x output digits
        made x bond) or those before `j` (`"left"`)."""
        done = self.units[j:] if self.direction == "right" else self.units[:j]
        rest = self.units[:j] if self.direction == "right" else self.units[j:]
        return (
            rows
            * self._digits(rest, False)
            * self._digits(done, True)
            * self._bond_at(j)
        )

    def step(self, block, first_unit, rows):
        """`(entering, leaving, transposed)` states of a block's step."""
        after = first_unit + len(block.sites)
        if self.direction == "right":
            entering = self._state_entries(after, rows)
            leaving = self._state_entries(first_unit, rows)
            rest = self._digits(self.units[after:], True) * self._digits(
                self.units[:first_unit], False
            )
            return entering, leaving, block.k_out > 1 and rest > 1
        entering = self._state_entries(first_unit, rows)
        leaving = self._state_entries(after, rows)
        rest = self._digits(self.units[:first_unit], True) * self._digits(
            self.units[after:], False
        )
        return entering, leaving, block.k_in > 1 and rest > 1

    def _block_seconds(self, block, first_unit, rows):
        entering, leaving, transposed = self.step(block, first_unit, rows)
        if self.direction == "right":
            first = first_unit + len(block.sites) == len(self.units)
            k, n = block.k_in * block.b_right, block.k_out * block.b_left
            moved = leaving
        else:
            first = first_unit == 0
            k, n = block.k_in * block.b_left, block.k_out * block.b_right
            moved = entering
        g = 1 if first else self.groups
        seconds = matmul_seconds(g * entering // k, k, n)
        if transposed or self.direction == "right":  # (as first modeled)
            seconds += move_seconds(g * moved)
        return seconds * (self.groups if g == 1 else 1)

    def _block_peak(self, block, first_unit, rows):
        """Entries live during a block's step: the states it reads and
        writes, and the transposed copy."""
        entering, leaving, transposed = self.step(block, first_unit, rows)
        peak = entering + leaving
        if transposed:
            moved = leaving if self.direction == "right" else entering
            peak = max(peak, 2 * moved)
        return self.groups * peak

    # -- costs -----------------------------------------------------------------
    def positions(self, blocks):
        """`(block, first site)` of `blocks` in chain order."""
        j = 0
        for block in blocks:
            yield block, j
            j += len(block.sites)

    def factorized_seconds(self, rows) -> float:
        """Modeled seconds of `apply` for `rows` input rows."""
        rows = max(int(rows), 1)
        blocks = self.blocks if rows == self.rows else self._choose_blocks(rows)
        seconds = sum(
            self._block_seconds(b, j, rows) for b, j in self.positions(blocks)
        )
        if self.in_size > self.in_dim:
            seconds += move_seconds(rows * self.in_size)
        return seconds

    def peak_entries(self, rows=None) -> int:
        """Numbers live at once in `apply` (the largest step: the states
        it reads and writes, and a transposed copy) for `rows` rows
        (default: those the blocks are chosen for)."""
        rows = self.rows if rows is None else max(int(rows), 1)
        steps = self.positions(self.blocks)
        return max(self._block_peak(b, j, rows) for b, j in steps)

    def generated_seconds(self, rows) -> float:
        """Modeled seconds of generating the kernel and multiplying."""
        rows = max(int(rows), 1)
        g = self.groups
        seconds, made = 0.0, 1
        for _, leaves, b_left, b_right in self.units:
            q = self.radix ** len(leaves)
            seconds += matmul_seconds(g * made, b_left, q * b_right)
            made *= q
        size = g * self.in_size * self.out_size
        seconds += 2.0 * move_seconds(size)  # leaf order -> matrix, crop
        return seconds + matmul_seconds(rows, self.in_dim, g * self.out_dim)

    # -- execution -------------------------------------------------------------
    def block_matrices(self, cores, xp):
        """Per block, the `(groups, k_in * b_right, k_out * b_left)` matrix
        its cores contract to (`cores`: `{name: (G, b_l, q, b_r)}`);
        `(groups, k_in * b_left, k_out * b_right)` with
        `direction="left"`."""
        return [self._block_matrix(b, cores, xp) for b in self.blocks]

    def _block_matrix(self, block, cores, xp):
        g, p = self.groups, self.radix
        b_left = block.b_left
        state = xp.reshape(cores[block.sites[0]], (g, b_left, -1))
        for name in block.sites[1:]:
            core = cores[name]
            b_mid = core.shape[1]
            rest = core.shape[2] * core.shape[3]
            lead = state.shape[1] * state.shape[2] // b_mid
            state = xp.reshape(state, (g, lead, b_mid))
            state = xp.matmul(state, xp.reshape(core, (g, b_mid, rest)))
        n = len(block.leaves)
        state = xp.reshape(state, (g, b_left, *[p] * n, block.b_right))
        ins = [1 + 1 + a for a, r in enumerate(block.leaves) if not r]
        outs = [1 + 1 + a for a, r in enumerate(block.leaves) if r]
        if self.direction == "left":
            state = xp.transpose(state, (0, *ins, 1, *outs, n + 2))
            shape = (block.k_in * b_left, block.k_out * block.b_right)
        else:
            state = xp.transpose(state, (0, *ins, n + 2, *outs, 1))
            shape = (block.k_in * block.b_right, block.k_out * b_left)
        return xp.reshape(state, (g, *shape))

    @property
    def lead_bond(self) -> int:
        """The bond left of the first site: 1 for a whole MPO; for the
        channel sites of a conv kernel, the bond to its spatial sites."""
        return self.units[0][2]

    def apply(self, x, matrices, xp):
        """`x` times the kernel: `(rows, groups * out_dim)`, the groups
        side by side (the kernel's column order).

        `x` is `(rows, in_dim)`. With a `lead_bond` `a > 1` (a conv's
        channel sites): `direction="right"` returns `(rows, groups *
        out_dim * a)`; `"left"` takes `x` of `(rows, in_dim * a)`, or
        `(groups, rows, in_dim * a)` (an input per group), `a` the last
        axis, and contracts it.

        `matrices` are `block_matrices(...)`; `xp` is an executor
        (`networks.executors.Executor`: `reshape`, `transpose`, `matmul`,
        `pad` and `crop_axis`; rows may be dynamic: they are the one
        `-1` of every reshape).
        """
        if self.direction == "left":
            return self._apply_left(x, matrices, xp)
        if self.in_size > self.in_dim:
            x = xp.pad_last(x, self.in_size - self.in_dim)
        # (1, rows, O_done=1, I_rest=in_size, b=1)
        o_done, i_rest, grouped = 1, self.in_size, False
        state = x
        for block, matrix in zip(reversed(self.blocks), reversed(matrices)):
            i_rest //= block.k_in
            state, grouped = self._matmul(
                state, matrix, block.k_in * block.b_right, grouped, xp
            )
            k_out = block.k_out
            if k_out > 1 and o_done * i_rest > 1:
                state = self._swap(
                    state, o_done * i_rest, k_out, block.b_left, grouped, xp
                )
            o_done *= k_out
        return self._columns(state, grouped, self.lead_bond, xp)

    def _apply_left(self, x, matrices, xp):
        g, a = self.groups, self.lead_bond
        grouped = len(x.shape) == 3
        lead = (g,) if grouped else ()
        if self.in_size > self.in_dim:
            x = xp.reshape(x, (*lead, -1, self.in_dim, a))
            pad = [[0, 0]] * len(lead) + [[0, 0], [0, 0], [0, 0]]
            pad[-2] = [0, self.in_size - self.in_dim]
            x = xp.pad(x, pad)
        # (G, rows, I_rest=in_size, O_done=1, b=a)
        i_rest, o_done, bond, state = self.in_size, 1, a, x
        for block, matrix in zip(self.blocks, matrices):
            i_rest //= block.k_in
            if block.k_in > 1 and i_rest * o_done > 1:
                state = self._swap(
                    state, block.k_in, i_rest * o_done, bond, grouped, xp
                )
            state, grouped = self._matmul(
                state, matrix, block.k_in * bond, grouped, xp
            )
            bond = block.b_right
            o_done *= block.k_out
        return self._columns(state, grouped, 1, xp)

    def _swap(self, state, p, q, bond, grouped, xp):
        """`state` as `(G?, rows, p, q, bond)` with `p` and `q` swapped."""
        lead = (self.groups,) if grouped else ()
        state = xp.reshape(state, (*lead, -1, p, q, bond))
        return xp.transpose(state, (0, 1, 3, 2, 4) if grouped else (0, 2, 1, 3))

    def _matmul(self, state, matrix, k, grouped, xp):
        """`(state @ matrix, grouped)`: a shared state (not `grouped`)
        meets the groups' matrices in one broadcast matmul."""
        g = self.groups
        if grouped:
            return xp.matmul(xp.reshape(state, (g, -1, k)), matrix), True
        if g == 1:
            rhs = xp.reshape(matrix, tuple(matrix.shape[1:]))
            return xp.matmul(xp.reshape(state, (-1, k)), rhs), False
        return xp.matmul(xp.reshape(state, (1, -1, k)), matrix), True

    def _columns(self, state, grouped, a, xp):
        """The final state as `(rows, groups * out_dim * a)`."""
        g = self.groups
        lead = (g,) if grouped else ()
        state = xp.reshape(state, (*lead, -1, self.out_size, a))
        if grouped and g > 1:
            state = xp.transpose(state, (1, 0, 2, 3))
        if self.out_size > self.out_dim:
            state = xp.reshape(state, (-1, g, self.out_size, a))
            state = xp.crop_axis(state, self.out_dim, 2)
        return xp.reshape(state, (-1, g * self.out_dim * a))
