"""The plans an export writes: blocks capped for flash, least memory.

On a microcontroller the block matrices are stored in flash and the
states live in the arena, so an export takes the plan of the smallest
live states (`least_memory`) among blocks of at most
`MAX_DEVICE_BLOCK_ENTRIES` numbers. `numpy_apply` runs a plan in float64
NumPy (tests and exports).
"""

import numpy as np

from keras_adntn.factorized import table
from keras_adntn.networks.executors import NumpyOps

# the largest block matrix an export writes to the file (flash), in numbers
MAX_DEVICE_BLOCK_ENTRIES = 1024


def least_memory(plans):
    """The plan of `plans` with the smallest `peak_entries` (then the
    least modeled seconds)."""
    return min(
        plans, key=lambda p: (p.peak_entries(), p.factorized_seconds(p.rows))
    )


def device_plan(network, in_dim, out_dim, rows, directions=None, **kwargs):
    """The plan an export writes for `network` (`table.plan`): blocks
    capped at `MAX_DEVICE_BLOCK_ENTRIES` (flash), chosen for the least
    memory live at once (the arena), in the better of `directions`
    (default: all the network can run, `table.directions`). `kwargs`:
    the rest of `table.plan`'s arguments."""
    directions = directions or table.directions(network)
    return least_memory(
        [
            table.plan(
                network,
                in_dim,
                out_dim,
                rows=rows,
                max_block_entries=MAX_DEVICE_BLOCK_ENTRIES,
                objective="memory",
                direction=direction,
                **kwargs,
            )
            for direction in directions
        ]
    )


def numpy_apply(plan, x, cores):
    """`FactorizedPlan.apply` in float64 NumPy (tests, exports)."""
    xp = NumpyOps()
    cores = {k: np.asarray(v, np.float64) for k, v in cores.items()}
    return plan.apply(
        np.asarray(x, np.float64), plan.block_matrices(cores, xp), xp
    )
