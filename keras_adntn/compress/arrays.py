"""NumPy helpers shared by the compress modules."""

import numpy as np
from keras import ops


def to_numpy(x) -> np.ndarray:
    """A tensor or array as a float64 NumPy array."""
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


def subsample(array: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """At most `limit` rows of `array`, drawn at random, in their order."""
    if len(array) <= limit:
        return array
    keep = np.random.default_rng(seed).choice(len(array), limit, replace=False)
    return array[np.sort(keep)]


def finite(name: str, array) -> np.ndarray:
    """`array` as float32; ValueError naming `name` unless it is numeric
    and finite."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"`{name}` must be numeric, got dtype {array.dtype}.")
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.sum(np.isfinite(array)))
        raise ValueError(
            f"`{name}` holds {bad} NaN or infinite values; the inputs must "
            f"be finite."
        )
    return array.astype("float32")
