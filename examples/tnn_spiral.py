"""TNN paper, Table II: 3-class spiral classification.

Frozen Dense(64) adapter -> TNLayer(64 units, 6 sites, ReLU) ->
Dense(3, softmax), DMRG-like sweeps over the full batch (480 train,
120 test points; Adam as the local gradient step).

Run: python examples/tnn_spiral.py [sweeps]
"""

import sys

import keras
import numpy as np
from tnn_common import fit
from tnn_common import save_decision_boundary
from tnn_common import save_history
from tnn_common import spiral
from tnn_common import tnn


def main(sweeps=600, bond_dim=4):
    keras.utils.set_random_seed(0)
    x, y = spiral(200, np.random.default_rng(0))
    model = tnn(
        2, keras.layers.Dense(3, activation="softmax"), bond_dim=bond_dim
    )
    model.compile(
        keras.optimizers.Adam(0.01),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = fit(model, x[:480], y[:480], sweeps)
    _, accuracy = model.evaluate(x[480:], y[480:], verbose=0)
    save_history(history, "spiral")
    save_decision_boundary(model, x, y, "spiral")
    print(f"Spiral: test accuracy {accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    main(*map(int, sys.argv[1:2]))
