"""The default latent order: balanced trees, and files saved with the
default of 0.1.0 (`latent_order=None`, `ceil(N / 8)` roots) still load."""

import json
import zipfile

import keras
import numpy as np
import pytest

from keras_adntn import TNDense
from keras_adntn.networks.ttn import default_latent_order


@pytest.mark.parametrize(
    "modes, auto, legacy",
    [(20, 5, 3), (24, 3, 3), (12, 3, 2), (14, 2, 2), (22, 3, 3)],
)
def test_default_rule(modes, auto, legacy):
    assert default_latent_order(modes) == auto
    assert default_latent_order(modes, rule="legacy") == legacy


def test_1024_default_tree_is_balanced():
    layer = TNDense(1024)
    layer.build((None, 1024))
    counts, depth = layer.generated_kernels[0].network._tree_shape()
    assert counts == [4] * 5 and depth == 2
    # 2**5 latent + 5 roots x (one (2,2,2) + two (2,2,2) read-out cores)
    assert layer.count_params() == 152 + 1024
    assert layer.get_config()["latent_order"] == "auto"


def test_large_bond_keeps_a_small_latent():
    # 4**5 = 1024 latent numbers would be too many: the legacy count
    assert default_latent_order(20, bond_dim=4) == 3


def _model(latent_order):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((64,)),
            TNDense(64, latent_order=latent_order, seed=1, name="tn"),
        ]
    )


def test_file_saved_with_the_old_default_loads(tmp_path):
    # 64 x 64 (12 modes): 0.1.0's default made 2 roots, the default now 3
    old = _model("legacy")
    assert (
        old.get_layer("tn").count_params()
        != _model(None).get_layer("tn").count_params()
    )
    path = str(tmp_path / "old.keras")
    old.save(path)
    # what 0.1.0 wrote: `"latent_order": null`
    patched = str(tmp_path / "patched.keras")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(patched, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                text = data.decode()
                assert '"latent_order": "legacy"' in text
                data = text.replace(
                    '"latent_order": "legacy"', '"latent_order": null'
                ).encode()
            dst.writestr(item, data)
    loaded = keras.saving.load_model(patched)
    x = np.random.default_rng(0).normal(size=(4, 64)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)),
        keras.ops.convert_to_numpy(old(x)),
        rtol=1e-5,
        atol=1e-6,
    )


def test_default_round_trips(tmp_path):
    model = _model(None)
    path = str(tmp_path / "new.keras")
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    layer = config["config"]["layers"][-1]["config"]
    assert layer["latent_order"] == "auto"
    loaded = keras.saving.load_model(path)
    assert (
        loaded.get_layer("tn").count_params()
        == model.get_layer("tn").count_params()
    )
