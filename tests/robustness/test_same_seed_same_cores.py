"""Same seed, same cores, on every backend (README, "Initialisation").

The initial weights of TN layers built with `seed=0` are compared with
tests/data/seed_cores.npz, written once (tests/data/make_seed_cores.py).
Each backend's pass of the suite runs this test, so all three backends are
held to the same file. Catches an initialiser or calibration that draws
from a backend's random generator (or the global Keras seed) instead of
the layer's seed, a backend-dependent dtype or order of draws, and any
change of the initial values of an existing configuration.
"""

import os

import keras
import numpy as np
import pytest

from keras_adntn import TNConv2D
from keras_adntn import TNDense
from keras_adntn import TNMultiHeadAttention

FILE = os.path.join(os.path.dirname(__file__), "..", "data", "seed_cores.npz")
NETWORKS = ["ttn", "attn", "mera", "brickwall", "mpo"]
CASES = [f"dense_{n}" for n in NETWORKS] + ["conv_mera", "mha_ttn"]


def initial_weights(name: str) -> dict:
    """{weight path: value} of case `name`, freshly built with seed 0."""
    # a different global seed each call: the cores must not depend on it
    keras.utils.set_random_seed(sum(map(ord, name)))
    kind, network = name.split("_")
    if kind == "dense":
        layer = TNDense(24, network=network, seed=0, name="layer")
        layer.build((None, 40))
    elif kind == "conv":
        layer = TNConv2D(8, 3, network=network, seed=0, name="layer")
        layer.build((None, 6, 6, 4))
    else:
        layer = TNMultiHeadAttention(
            2, 4, network=network, seed=0, name="layer"
        )
        layer.build((None, 5, 8), (None, 5, 8))
    return {
        w.path: keras.ops.convert_to_numpy(w).astype("float32")
        for w in layer.weights
    }


@pytest.mark.parametrize("name", CASES)
def test_same_seed_gives_the_reference_cores(name):
    reference = np.load(FILE)
    expected = {
        key.split("|", 1)[1]: reference[key]
        for key in reference.files
        if key.split("|", 1)[0] == name
    }
    assert expected, name
    got = initial_weights(name)
    assert sorted(got) == sorted(expected)
    for path, value in got.items():
        # the same NumPy draws and float64 calibration: measured identical
        # on the three backends; the tolerance only admits another
        # machine's BLAS rounding the float64 calibration differently
        np.testing.assert_allclose(
            value, expected[path], rtol=1e-6, atol=1e-7, err_msg=path
        )
