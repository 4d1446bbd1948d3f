"""The cost model of a deployment on a microcontroller (TFLite Micro).

The export's plan (`deployment_plan`) weighs each layer's candidate
deployments by three estimates made from shapes alone, before anything is
converted:

- flash: the numbers stored times their bytes, plus the flatbuffer's
  bookkeeping of every op and tensor (`OP_FLASH_BYTES` an op,
  `GENERATION_OP_FLASH_BYTES` in a generation's loop);
- arena: the largest state live at once (see each schedule's
  `estimated_arena`);
- seconds: multiply-accumulates, numbers moved (reshapes, transposes,
  slices) and a fixed cost per op invoked, at the rates of TFLM's
  reference kernels measured on the host (`benchmarks/bench_tflm.py`
  prints the estimate beside the measurement). Only ratios matter: the
  plan compares candidates, and the report shows the measured latency.
"""

# TFLM reference kernels on the host (float32 and int8 alike, within 2x):
# seconds per multiply-accumulate, per number moved, and per op invoked.
MAC_SECONDS = 0.7e-9
MOVE_SECONDS = 1.0e-9
OP_SECONDS = 2.0e-6
# a generation's steps (broadcast MULs and sums): seconds per number written
WRITE_SECONDS = 6.5e-9
# flatbuffer bytes of one op with its tensors (names, shapes, quantisation):
# a contraction's ops, and a generation's (inside a WHILE loop's subgraphs,
# each with its shape constants)
OP_FLASH_BYTES = 150
GENERATION_OP_FLASH_BYTES = 560
# TFLM's arena also holds every op's and tensor's bookkeeping (measured:
# about 140 bytes an op of these graphs; 36 float32 numbers)
OP_ARENA_BYTES = 144
# ops TFLM runs per contraction step of a generation or a chain block
# (reshape, matmul or mul-and-sum, reshape, transpose)
OPS_PER_STEP = 4


def seconds(
    macs: float, moved: float = 0.0, ops: int = 0, written: float = 0.0
) -> float:
    """Modeled seconds of `macs` multiply-accumulates, `moved` numbers
    moved, `ops` ops invoked and `written` numbers written by a
    generation's steps."""
    return (
        macs * MAC_SECONDS
        + moved * MOVE_SECONDS
        + ops * OP_SECONDS
        + written * WRITE_SECONDS
    )


def plan_work(plan, rows: int) -> tuple:
    """`(macs, moved, ops)` of a `factorized.FactorizedPlan` applied to
    `rows` rows: per block one matmul over the state entering it, and a
    transposed copy where the plan makes one."""
    macs = moved = 0
    ops = 0
    for block, first in plan.positions(plan.blocks):
        entering, leaving, transposed = plan.step(block, first, rows)
        n = block.k_out * block.b_left
        if plan.direction == "left":
            n = block.k_out * block.b_right
        macs += plan.groups * entering * n
        moved += plan.groups * (leaving if transposed else 0)
        ops += OPS_PER_STEP
    return macs, moved, ops


def generation_work(network, fixed_leaves=()) -> tuple:
    """`(written, peak, steps)` of one run of a generator network with the
    leaves at `fixed_leaves` fixed (a block of a tiled generation): the
    numbers its contractions write (what its time follows, measured on
    TFLM for ttn, aTTN and MERA), its largest state and its steps."""
    latent, states = network.plan.sliced_states(list(fixed_leaves))
    return sum(states), max([latent, *states]), len(states)
