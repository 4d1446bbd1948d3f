"""Writes tests/data/legacy/*.keras from the pre-issue-22 code.

Run from the repository root with KERAS_BACKEND=jax to rewrite the files.
"""

import os

import keras
import numpy as np

import keras_adntn as ka

out = "tests/data/legacy"
rng = np.random.default_rng(0)
cases = {}


def add(name, model, x):
    model(x)
    cases[name] = (model, x)


x = rng.normal(size=(3, 16)).astype("float32")
for net in ["ttn", "attn", "mera", "brickwall", "mpo"]:
    m = keras.Sequential(
        [
            keras.Input((16,)),
            ka.TNDense(8, network=net, activation="relu", name="tn"),
        ]
    )
    add(f"dense_{net}", m, x)
xc = rng.normal(size=(2, 6, 6, 4)).astype("float32")
m = keras.Sequential(
    [keras.Input((6, 6, 4)), ka.TNConv2D(8, 3, padding="same", name="tn")]
)
add("conv_mpo", m, xc)
m = keras.Sequential(
    [keras.Input((6, 6, 4)), ka.TNConv2D(8, 3, network="ttn", name="tn")]
)
add("conv_ttn", m, xc)
q = keras.Input((5, 16))
o = ka.TNMultiHeadAttention(num_heads=2, key_dim=8, name="tn")(q, q)
xa = rng.normal(size=(2, 5, 16)).astype("float32")
add("mha", keras.Model(q, o), xa)
m = keras.Sequential(
    [keras.Input((16,)), ka.TNLayer(16, num_sites=2, bond_dim=3, name="tn")]
)
add("tn_layer", m, x)
arrays = {}
for name, (model, xx) in cases.items():
    # perturb weights so the file is not the initializer's
    for v in model.weights:
        v.assign(v.numpy() + 0.01 * rng.normal(size=v.shape).astype(v.dtype))
    model.save(os.path.join(out, name + ".keras"))
    arrays[name + "/x"] = xx
    arrays[name + "/y"] = keras.ops.convert_to_numpy(model(xx))
np.savez(os.path.join(out, "expected.npz"), **arrays)
print(sorted(os.listdir(out)))
