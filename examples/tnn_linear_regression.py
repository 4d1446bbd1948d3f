"""TNN paper, Table III: linear regression of y = 0.55 x + 0.20 + noise.

Frozen Dense(64) adapter -> TNLayer(64 units, 6 sites, ReLU) -> Dense(1),
400 points with uniform noise in [-0.1, 0.1], DMRG-like sweeps.

Run: python examples/tnn_linear_regression.py [sweeps]
"""

import sys

import keras
import numpy as np
from tnn_common import fit
from tnn_common import save_fit
from tnn_common import save_history
from tnn_common import tnn


def main(sweeps=600, bond_dim=4):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (400, 1)).astype("float32")
    noise = rng.uniform(-0.1, 0.1, (400, 1))
    y = (0.55 * x + 0.20 + noise).astype("float32")
    model = tnn(1, keras.layers.Dense(1), bond_dim=bond_dim)
    model.compile(keras.optimizers.Adam(0.01), "mse")
    history = fit(model, x, y, sweeps)
    ends = model.predict(np.array([[0.0], [1.0]], "float32"), verbose=0)
    slope, intercept = float(ends[1, 0] - ends[0, 0]), float(ends[0, 0])
    save_history(history, "linear")
    save_fit(model, x, y, "linear")
    print(f"Linear regression: slope {slope:.3f}, intercept {intercept:.3f}")
    return slope, intercept


if __name__ == "__main__":
    main(*map(int, sys.argv[1:2]))
