"""TNN paper, Table IV: regression of sin(x) + noise on [0, 2 pi].

Frozen Dense(64) adapter -> TNLayer(64, 6 sites, linear) -> 2 x
TNLayer(64, 6 sites, sigmoid) -> Dense(1). The paper's head has a ReLU,
which cannot output the negative half of the sine; the head here is
linear. 400 training points, 100 test points, noise in [-0.1, 0.1].

Run: python examples/tnn_sine_regression.py [sweeps]
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
    x = rng.uniform(0.0, 2 * np.pi, (500, 1)).astype("float32")
    y = (np.sin(x) + rng.uniform(-0.1, 0.1, x.shape)).astype("float32")
    model = tnn(
        1,
        keras.layers.Dense(1),
        activations=(None, "sigmoid", "sigmoid"),
        bond_dim=bond_dim,
    )
    model.compile(keras.optimizers.Adam(0.01), "mse")
    history = fit(model, x[:400], y[:400], sweeps)
    mse = model.evaluate(x[400:], y[400:], verbose=0)
    save_history(history, "sine")
    save_fit(model, x, y, "sine")
    print(f"Sine regression: test MSE {mse:.4f}")
    return mse


if __name__ == "__main__":
    main(*map(int, sys.argv[1:2]))
