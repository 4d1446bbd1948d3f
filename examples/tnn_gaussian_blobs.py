"""TNN paper, Table I: binary classification of Gaussian blobs.

Frozen Dense(64) adapter -> TNLayer(64 units, 6 sites, ReLU) ->
Dense(2, softmax), trained with DMRG-like sweeps (SGD, alpha=0.1 as in
the paper, full batch of 500; test on 100 unseen points).

Run: python examples/tnn_gaussian_blobs.py [sweeps]
"""

import sys

import keras
from sklearn.datasets import make_blobs
from tnn_common import fit
from tnn_common import save_decision_boundary
from tnn_common import save_history
from tnn_common import tnn


def main(sweeps=600, bond_dim=4):
    keras.utils.set_random_seed(0)
    x, y = make_blobs(
        600,
        centers=[(-2.0, -2.0), (2.0, 2.0)],
        cluster_std=1.0,
        random_state=0,
    )
    x = ((x - x.min(0)) / (x.max(0) - x.min(0))).astype("float32")
    model = tnn(
        2, keras.layers.Dense(2, activation="softmax"), bond_dim=bond_dim
    )
    model.compile(
        keras.optimizers.SGD(0.1),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = fit(model, x[:500], y[:500], sweeps)
    _, accuracy = model.evaluate(x[500:], y[500:], verbose=0)
    save_history(history, "blobs")
    save_decision_boundary(model, x, y, "blobs")
    print(f"Gaussian blobs: test accuracy {accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    main(*map(int, sys.argv[1:2]))
