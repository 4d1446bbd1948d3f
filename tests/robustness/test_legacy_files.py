"""`.keras` files written by an earlier release still load and compute.

The files in tests/data/legacy were saved (JAX backend, weights perturbed
away from their initializers) by `tests/data/legacy/make_legacy.py` before
the package's second structural step (issue 22). A refactor that renames a
weight path, a registered class, a config key or changes what a config
rebuilds makes `load_model` fail or the outputs differ, and this test fails.
"""

import os

import keras
import numpy as np
import pytest

import keras_adntn  # noqa: F401  (registers the serializable classes)

HERE = os.path.join(os.path.dirname(__file__), "..", "data", "legacy")
EXPECTED = np.load(os.path.join(HERE, "expected.npz"))
NAMES = sorted({k.split("/")[0] for k in EXPECTED.files})


def test_every_legacy_case_is_present():
    assert len(NAMES) == 9


@pytest.mark.parametrize("name", NAMES)
def test_legacy_file_loads_and_computes_the_same(name):
    model = keras.saving.load_model(os.path.join(HERE, name + ".keras"))
    y = keras.ops.convert_to_numpy(model(EXPECTED[name + "/x"]))
    np.testing.assert_allclose(y, EXPECTED[name + "/y"], rtol=1e-4, atol=1e-5)
