"""Writes tests/data/seed_cores.npz: the initial weights of TN layers built
with `seed=0`, for tests/robustness/test_same_seed_same_cores.py.

Run from the repository root (any backend) to rewrite the file.
"""

import numpy as np

from tests.robustness.test_same_seed_same_cores import CASES
from tests.robustness.test_same_seed_same_cores import initial_weights

arrays = {}
for name in CASES:
    for path, value in initial_weights(name).items():
        arrays[f"{name}|{path}"] = value
np.savez("tests/data/seed_cores.npz", **arrays)
print(len(arrays), "arrays")
