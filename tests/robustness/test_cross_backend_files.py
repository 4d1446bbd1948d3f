"""A `.keras` file saved under each backend loads under each other one."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

BACKENDS = ["tensorflow", "jax", "torch"]

SAVE = textwrap.dedent(
    """
    import json, sys
    import keras, numpy as np
    import keras_adntn as tn
    keras.utils.set_random_seed(0)
    out = sys.argv[1]
    x = np.random.default_rng(0).standard_normal((4, 8, 8, 3))
    x = x.astype("float32")
    inputs = keras.Input((8, 8, 3))
    h = inputs
    if hasattr(tn, "TNConv2D"):
        h = tn.TNConv2D(4, 3, padding="same", network="mera", seed=0)(h)
    h = keras.layers.Reshape((-1, h.shape[-1]))(h)
    if hasattr(tn, "TNMultiHeadAttention"):
        h = tn.TNMultiHeadAttention(2, 4, seed=0)(h, h)
    h = keras.layers.Flatten()(h)
    for i, net in enumerate(["ttn", "attn", "mera", "brickwall", "mpo"]):
        h = tn.TNDense(12, network=net, activation="tanh", seed=i)(h)
    model = keras.Model(inputs, h)
    model.compile(optimizer="adam", loss="mse")
    # weights moved off their seeded initial values, so a file whose
    # weights do not load cannot match by rebuilding (no fit: compiling
    # a train step under each backend cost most of this test's time)
    rng = np.random.default_rng(1)
    for w in model.weights:
        shape = tuple(w.shape)
        w.assign(w + 0.1 * rng.standard_normal(shape).astype(w.dtype))
    model.save(out + ".keras")
    np.save(out + "_x.npy", x)
    np.save(out + "_y.npy", model.predict(x, verbose=0))
    """
)

LOAD = textwrap.dedent(
    """
    import json, sys
    import keras, numpy as np
    import keras_adntn  # registers the layers
    diffs = {}
    for path in sys.argv[1:]:
        model = keras.models.load_model(path + ".keras")
        y = model.predict(np.load(path + "_x.npy"), verbose=0)
        diffs[path] = float(np.abs(y - np.load(path + "_y.npy")).max())
    print(json.dumps(diffs))
    """
)


def _run_all(jobs):
    """Runs `(backend, script, *args)` jobs side by side; their stdouts."""
    procs = []
    for backend, script, *args in jobs:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", script, *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = []
    for proc, job in zip(procs, jobs):
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, (job[0], err[-3000:])
        outputs.append(out)
    return outputs


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="spawns every backend itself; runs once, in the tensorflow pass",
)
def test_keras_files_move_between_backends(tmp_path):
    stems = [os.path.join(tmp_path, backend) for backend in BACKENDS]
    _run_all([(b, SAVE, stem) for b, stem in zip(BACKENDS, stems)])
    outputs = _run_all([(b, LOAD, *stems) for b in BACKENDS])
    for backend, out in zip(BACKENDS, outputs):
        diffs = json.loads(out.strip().splitlines()[-1])
        assert max(diffs.values()) <= 1e-5, (backend, diffs)
    assert np.load(stems[0] + "_y.npy").shape == (4, 12)
