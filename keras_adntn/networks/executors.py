"""The few primitives the generators are written in, for two executors.

Generator networks, tensorisations and factorized products
(`factorized.FactorizedPlan`) are written once against this small
interface (`Executor`). `KerasOps` runs them with `keras.ops` inside a model
(every backend, XLA, LiteRT); `NumpyOps` runs the very same schedule in
float64 NumPy at build time, where initialisation and calibration happen (no
backend tracing is involved there, so building a layer inside a traced
function is safe). An export subclasses one of them, or `Executor` itself,
with its own primitives, and hands it to the kernels through its
`kernels.device_context.DeviceContext`.

Every primitive is a two-operand contraction, a reshape, a transpose or a
slice, of rank at most 5 when `max_rank` is 5.
"""

import math

import keras
import numpy as np
from keras import ops


def _np_gelu(x):
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


_NUMPY_ACTIVATIONS = {
    "linear": lambda x: x,
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "relu": lambda x: np.maximum(x, 0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "swish": lambda x: x / (1.0 + np.exp(-x)),
    "gelu": _np_gelu,
    "sin": np.sin,
}


class Executor:
    """The interface every executor implements; only the primitives differ.

    Primitives (each executor, as it needs): `convert(x)` (a variable or
    array to the executor's tensor), `reshape`, `transpose`, `matmul`
    (batched), `lead_matmul` (`(g, a, r) x (g, a, b) -> (g, r, b)`),
    `crop(x, sizes)`, `take(x, index, axis)`, `mask(x, threshold,
    active)`, `activate(fn, x)` and `pad(x, widths)`. `max_rank`: None, or
    the largest rank a transpose may have.

    The helpers below are written once on top of them.
    """

    max_rank = None

    def pad_last(self, x, extra):
        """`x` with `extra` zeros after the end of its last axis."""
        return self.pad(x, [[0, 0]] * (len(x.shape) - 1) + [[0, extra]])

    @staticmethod
    def crop_axis(x, size, axis):
        """The leading `size` entries of `x` along `axis` (a slice: NumPy,
        every backend's tensors, TensorFlow graphs alike)."""
        index = [slice(None)] * len(x.shape)
        index[axis] = slice(0, size)
        return x[tuple(index)]


class NumpyOps(Executor):
    """Float64 NumPy executor used for initialisation and calibration."""

    dtype = np.float64

    def convert(self, x):
        return np.asarray(x, dtype=self.dtype)

    reshape = staticmethod(np.reshape)
    transpose = staticmethod(np.transpose)
    matmul = staticmethod(np.matmul)
    pad = staticmethod(np.pad)

    @staticmethod
    def lead_matmul(x, m):
        return np.matmul(np.swapaxes(x, 1, 2), m)

    @staticmethod
    def crop(x, sizes):
        return x[tuple(slice(0, s) for s in sizes)]

    @staticmethod
    def take(x, index, axis):
        """The entries at scalar `index` along `axis` (axis removed)."""
        return np.take(x, index, axis=axis)

    @staticmethod
    def mask(x, threshold, active):
        """`x` where `threshold <= active`, 0 elsewhere (growth masks)."""
        return x * (np.asarray(threshold) <= active).astype(x.dtype)

    @staticmethod
    def activate(fn, x):
        if hasattr(fn, "numpy_call"):  # keras_adntn.activations
            return fn.numpy_call(x)
        name = getattr(fn, "__name__", None)
        if name in _NUMPY_ACTIVATIONS:
            return _NUMPY_ACTIVATIONS[name](x)
        out = fn(ops.convert_to_tensor(x.astype(np.float32)))
        return np.asarray(ops.convert_to_numpy(out), dtype=np.float64)


def numpy_ops(size):
    """A NumPy executor, float64 unless the tensor is large."""
    xp = NumpyOps()
    xp.dtype = np.float64 if size <= 2**22 else np.float32
    return xp


class KerasOps(Executor):
    """`keras.ops` executor used inside models."""

    def __init__(self, max_rank=None):
        self.max_rank = max_rank

    @staticmethod
    def convert(x):
        return ops.cast(x, "float32")

    reshape = staticmethod(ops.reshape)
    transpose = staticmethod(ops.transpose)
    matmul = staticmethod(ops.matmul)
    pad = staticmethod(ops.pad)

    @staticmethod
    def lead_matmul(x, m):
        return ops.einsum("gar,gab->grb", x, m)

    @staticmethod
    def crop(x, sizes):
        if tuple(x.shape) == tuple(sizes):
            return x
        return ops.slice(x, [0] * len(sizes), list(sizes))

    @staticmethod
    def take(x, index, axis):
        """The entries at scalar `index` along `axis` (axis removed)."""
        return ops.take(x, index, axis=axis)

    @staticmethod
    def mask(x, threshold, active):
        """`x` where `threshold <= active`, 0 elsewhere (growth masks)."""
        keep = ops.cast(ops.less_equal(threshold, active), x.dtype)
        return ops.multiply(x, keep)

    @staticmethod
    def activate(fn, x):
        return fn(x)


def permute_modes(x, xp, sizes, perm):
    """Permutes the modes of `x` (shape `(G, prod(sizes))`), returns flat.

    `perm[j]` is the old position of the mode that goes to position `j`.
    With `xp.max_rank` set, the permutation runs as a sequence of block moves,
    each a transpose of rank at most 5 (what TFLite Micro accepts).
    """
    perm = list(perm)
    n = len(sizes)
    g = x.shape[0]
    if perm == list(range(n)):
        return x
    if xp.max_rank is None or n + 1 <= xp.max_rank:
        x = xp.reshape(x, (g, *sizes))
        x = xp.transpose(x, (0, *[p + 1 for p in perm]))
        return xp.reshape(x, (g, math.prod(sizes)))
    cur = list(range(n))
    j = 0
    while j < n:
        pos = cur.index(perm[j])
        if pos == j:
            j += 1
            continue
        k = 1
        while j + k < n and pos + k < n and cur[pos + k] == perm[j + k]:
            k += 1
        dims = [
            math.prod(sizes[c] for c in cur[:j]),
            math.prod(sizes[c] for c in cur[j:pos]),
            math.prod(sizes[c] for c in cur[pos : pos + k]),
            math.prod(sizes[c] for c in cur[pos + k :]),
        ]
        x = xp.reshape(x, (g, *dims))
        x = xp.transpose(x, (0, 1, 3, 2, 4))
        cur = cur[:j] + cur[pos : pos + k] + cur[j:pos] + cur[pos + k :]
        j += k
    return xp.reshape(x, (g, math.prod(sizes)))


def standard_activation(identifier):
    """Resolves a generator activation through `keras.activations`."""
    return keras.activations.get(identifier)
