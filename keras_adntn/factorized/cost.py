"""The cost model of factorized execution (seconds and call shapes).

A layer chooses per call shape between contracting its input with the
generator's cores and generating the kernel, then multiplying; an export
chooses the plan of least memory. Both read the modeled seconds of a
matmul and of a pass over memory written here.
"""

import math

# Cost model of this 2-core CPU class of machine (seconds): a matmul runs
# at `FLOPS` when it is large and square enough, a memory pass at `BYTES`
# per second, and every op has a fixed overhead. Only the ratio of the two
# paths matters (benchmarks/bench_factorized.py checks the choice).
FLOPS = 6.0e10
BYTES = 6.0e9
OP = 4.0e-6
# the largest block matrix (in digits * b_right) x (out digits * b_left)
MAX_BLOCK_ENTRIES = 4096
# the largest bond between a tree's formed head and the cores after it
MAX_HEAD_BOND = 64


def matmul_seconds(m: int, k: int, n: int) -> float:
    """Modeled seconds of an `(m, k) @ (k, n)` float32 matmul."""
    flops = 2.0 * m * k * n
    # small inner or outer sizes do not reach the machine's peak
    efficiency = min(1.0, k / 64.0) * min(1.0, n / 64.0)
    compute = flops / (FLOPS * max(efficiency, 1.0 / 64.0))
    memory = 4.0 * (m * k + m * n + k * n) / BYTES
    return max(compute, memory) + OP


def move_seconds(entries) -> float:
    """Modeled seconds of one pass over `entries` float32 numbers."""
    return 8.0 * entries / BYTES + OP


def rows_of(shape, default: int = 128) -> int:
    """Rows of an input of `shape` (its leading axes), `default` where one
    is unknown."""
    known = [d for d in shape[:-1] if d is not None]
    if len(known) < len(shape) - 1:
        return default * math.prod(known) if known else default
    return math.prod(known) if known else 1
