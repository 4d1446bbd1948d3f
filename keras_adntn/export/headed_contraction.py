"""A tree's product on the device, its kernel never formed: `HeadedSchedule`.

A `ttn` generator is nonlinear up to its last level, and that level is
linear (`factorized.HeadedPlan`): `x @ W` is the input contracted
with the level's last cores (small block matrices, as for an mpo) and then
with the *head*, the tree up to the level's first `h` cores. On the device
the cores are constants, so the head is too: the export makes it once, in
NumPy, and stores it in place of the cores (its size is chosen: a few
percent of the kernel).

The state entering the head holds the head's input digits times the bond
to the other cores times the output digits already made; with the whole
input at once, it and the head multiply to about the kernel's size
squared. So the input is taken in *tiles* of its `j` most significant
digits (which are the head's first input digits): tile `t` is `x[:, rows
t] @ W[rows t, :]`, the plan of the tile's input with the head's rows of
those digits (`head[t]`, a slice of a constant), and the tiles' products
are summed. The tiles are written one after the other (no WHILE loop: no
loop-carried copies in the arena); TFLM's planner reuses a tile's memory
for the next.

The export picks `h` and `j` for the smallest stored head whose estimated
arena (the tile's largest step, `FactorizedPlan.peak_entries`, the input
and outputs, and TFLM's bookkeeping of every op) fits the arena budget (64
KB when none is given), then the fewest tiles. What it costs is flash: the
head is a few percent of the kernel (a 1024x1024 layer in 64 KB: a 256 KB
head, against 52 KB of cores for the tiled generation on the fly and 1 MB
for the int8 kernel), for a latency of about twice the int8 Dense twin's
instead of 80-140x.
"""

import copy
import math

import numpy as np

from keras_adntn import factorized
from keras_adntn.export import device_cost
from keras_adntn.export.contraction import TfOps
from keras_adntn.export.schedule import ContractionSchedule
from keras_adntn.networks import executors

# the arena a tree's tiles are sized for when the export has no budget
DEFAULT_ARENA_BYTES = 64 * 1024


class HeadedSchedule(ContractionSchedule):
    """How one `TNDense` with a tree generator multiplies on the device:
    its input contracted with the last level's cores and a constant head,
    in tiles of its leading digits.

    Args:
        layer: a built `TNDense` for which `applies(layer)` holds.
        batch_size: the exported batch size.
        arena_budget: bytes the tiles are sized for (None: 64 KB).
        choice: `(head_steps, tiles)` of one of `options(layer,
            batch_size)` to take instead of choosing for `arena_budget`
            (the deployment plan's choice).

    Attributes:
        head_steps: the last level's cores in the head (`h`).
        tiles: the input tiles (`radix**j`).
        plan: the `HeadedPlan` of one tile.
        estimated_bytes: the arena it is estimated to need.
    """

    def __init__(
        self, layer, batch_size: int = 1, arena_budget=None, choice=None
    ):
        super().__init__(layer, batch_size)
        self._candidates = self.options(layer, self.batch_size)
        budget = DEFAULT_ARENA_BYTES if arena_budget is None else arena_budget
        self._select(int(budget), choice)

    @staticmethod
    def options(layer, batch_size: int = 1) -> list:
        """Every `(h, j)`: the plan with the head of `h` cores, the plan of
        one of its `radix**j` tiles, the numbers stored, the estimated
        arena (numbers) and the ops, from shapes alone (no head is
        made)."""
        return list(_options(layer, int(batch_size or 1)))

    def _select(self, budget, choice=None):
        """Takes the candidate `choice` (`(head_steps, tiles)`), else the
        one of the smallest stored numbers whose estimated arena fits
        `budget` bytes (else the smallest arena), then the fewest tiles,
        and makes its head (NumPy) and blocks."""

        def key(option):
            fits = option["arena"] <= budget // 4
            return (not fits, option["stored" if fits else "arena"])

        if choice is not None:
            chosen = [
                o
                for o in self._candidates
                if (o["whole"].head_steps, o["tiles"]) == tuple(choice)
            ]
            if not chosen:
                raise ValueError(
                    f"Layer {self.layer.name!r}: `choice` must be one of "
                    f"the (head_steps, tiles) of `HeadedSchedule.options`, "
                    f"got {choice!r}."
                )
            option = chosen[0]
        else:
            option = min(self._candidates, key=lambda o: (*key(o), o["tiles"]))
        whole, plan = option["whole"], option["plan"]
        self.estimated_bytes = 4 * option["arena"]
        self.head_steps = whole.head_steps
        self.tiles = option["tiles"]
        self.plan = plan
        self.in_size = whole.in_size
        xp = executors.NumpyOps()
        network = self.layer.generated_kernel.network
        cores = factorized.cores(network, whole, xp)
        # the head's rows, one block of them per tile
        heads = np.split(np.asarray(cores[factorized.HEAD]), self.tiles, 1)
        matrices = plan.block_matrices({**cores, factorized.HEAD: heads[0]}, xp)
        self.heads = [np.asarray(x, np.float32) for x in heads]
        self.matrices = [np.asarray(m, np.float32) for m in matrices[1:]]

    def smaller(self):
        """The schedule of the next smaller estimated arena (the budget
        search's step where the measured arena is over the budget), or
        None."""
        smaller = [
            o for o in self._candidates if 4 * o["arena"] < self.estimated_bytes
        ]
        if not smaller:
            return None
        other = copy.copy(self)
        other._select(self.estimated_bytes - 4)
        return other

    @staticmethod
    def applies(layer) -> bool:
        """Whether `layer` is a `TNDense` whose tree (`ttn`) product can
        be taken from its last level (no int8 QAT rounding)."""
        kernel = getattr(layer, "generated_kernel", None)
        return (
            kernel is not None
            and len(kernel.dims) == 2
            and kernel.formed_reason() is None
            and not factorized.on_device(kernel.network)
        )

    @property
    def block_entries(self) -> int:
        """Numbers stored for the layer's product (head and blocks)."""
        return int(
            sum(m.size for m in self.heads) + sum(m.size for m in self.matrices)
        )

    def matmul(self, tf, inputs, make_ops=None, scales=None):
        """`inputs @ kernel` as builtins, tile by tile (`make_ops`,
        `scales`: unused, see `applies`)."""
        layer = self.layer
        d_in = layer.input_dim
        x = tf.reshape(tf.cast(inputs, tf.float32), (-1, d_in))
        if self.in_size > d_in:
            x = tf.pad(x, [[0, 0], [0, self.in_size - d_in]])
        width = self.in_size // self.tiles
        tail = [tf.constant(m) for m in self.matrices]
        xp, y = TfOps(tf), None
        for t, head in enumerate(self.heads):
            x_t = x[:, t * width : (t + 1) * width]
            if y is not None:
                # a tile starts once the one before is summed: the
                # converter orders ops by depth, and would otherwise run
                # every tile's first step first (all their states live)
                x_t = x_t + 0.0 * y[:, :1]
            y_t = self.plan.apply(x_t, [tf.constant(head), *tail], xp)
            y = y_t if y is None else y + y_t
        static = inputs.shape[:-1]
        if all(d is not None for d in static):
            return tf.reshape(y, (*static, layer.units))
        return tf.reshape(
            y, tf.concat([tf.shape(inputs)[:-1], [layer.units]], axis=0)
        )


def _tile_plan(plan, j):
    """The `HeadedPlan` of one tile of `plan`'s input: its `j` most
    significant input digits (the head's first input leaves) fixed."""
    roles = [r for _, leaves, _, _ in plan.units for r in leaves]
    drop, kept = j, []
    for r in roles:
        if drop and not r:
            drop -= 1
            continue
        kept.append(r)
    sites, shapes = [], {}
    for k, (name, leaves, b_left, b_right) in enumerate(plan.units):
        m = len(leaves) - (j if k == 0 else 0)
        sites.append((name, m))
        shapes[name] = (b_left, plan.radix**m, b_right)
    in_size = plan.in_size // plan.radix**j
    return factorized.HeadedPlan(
        sites,
        shapes,
        kept,
        plan.radix,
        plan.groups,
        in_size,
        plan.out_dim,
        rows=plan.rows,
        max_block_entries=plan.max_block_entries,
        objective=plan.objective,
        head_steps=plan.head_steps,
        head_seconds=plan.head_seconds * math.pow(plan.radix, -j),
        generation_seconds=plan.generation_seconds,
    )


def _options(layer, rows):
    """`HeadedSchedule.options`: one dict per `(h, j)`."""
    network = layer.generated_kernel.network
    dims = layer.generated_kernel.dims
    for h in range(1, factorized.last_level_cores(network)):
        whole = factorized.device_plan(network, *dims, rows, head_steps=h)
        _, leaves, _, bond = whole.units[0]
        size = whole.groups * whole.radix ** len(leaves) * bond
        if size > whole.groups * whole.in_size * whole.out_size // 4:
            continue  # a head as large as the kernel saves nothing
        head_in = sum(1 for r in leaves if not r)
        out = whole.groups * whole.out_dim
        for j in range(head_in + 1):
            plan = _tile_plan(whole, j)
            tiles = whole.radix**j
            # per tile: a slice, an add, and per block a reshape, a
            # matmul and a reshape and transpose
            ops = tiles * (3 + 4 * len(plan.blocks))
            tail = sum(whole.groups * b.entries for b in plan.blocks[1:])
            yield {
                "whole": whole,
                "plan": plan,
                "tiles": tiles,
                "ops": ops,
                "stored": size + tail,
                "arena": plan.peak_entries(rows)
                + rows * (whole.in_size + 3 * out)
                + ops * device_cost.OP_ARENA_BYTES // 4,
            }
