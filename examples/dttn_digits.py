"""Deep Tree Tensor Network (AIM stages) on the sklearn 8x8 digits.

Run: python examples/dttn_digits.py [epochs]
"""

import sys

import keras
import numpy as np
from sklearn.datasets import load_digits

from keras_adntn.explicit.dttn import build_dttn


def main(epochs=20):
    keras.utils.set_random_seed(0)
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target
    idx = np.random.default_rng(0).permutation(len(x))
    train, test = idx[:1300], idx[1300:]
    model = build_dttn((8, 8, 1), 10, stages=(2, 2), channels=(16, 32), seed=0)
    model.compile(
        keras.optimizers.Adam(3e-3),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x[train], y[train], batch_size=100, epochs=epochs, verbose=0)
    _, accuracy = model.evaluate(x[test], y[test], verbose=0)
    print(
        f"DTTN digits: test accuracy {accuracy:.3f}, "
        f"{model.count_params()} parameters"
    )
    return accuracy


if __name__ == "__main__":
    main(*map(int, sys.argv[1:2]))
