"""Data-parallel training on 2 devices matches 1 device, on JAX and TF.

`_distributed_worker.py` runs in a fresh process per engine (the 2 virtual
CPU devices must be configured before the backend starts): it trains a
TNConv2D + TNMultiHeadAttention + TNDense model with SGD for a few full-batch
steps on one device, then with the same initial weights and global batch on
two (`keras.distribution.DataParallel` on JAX,
`tf.distribute.MirroredStrategy` on TensorFlow), and reports where the
variables and the generated kernels live.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "_distributed_worker.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(WORKER)))
# float32 sums in another order. Measured (5 SGD steps, 587 weights): loss
# relative difference <= 9e-8 and weight difference <= 6e-8 (one float32
# ulp at |w| ~ 0.5) on both JAX and TF; the README claims < 1e-6.
RTOL = 1e-6
ATOL = 1e-6


def _run(backend):
    path = os.environ.get("PYTHONPATH", "")
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=os.pathsep.join(p for p in (ROOT, path) if p),
    )
    env.pop("XLA_FLAGS", None)
    result = subprocess.run(
        [sys.executable, WORKER, backend],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _check_same_training(report):
    assert report["device_count"] == 2
    one, two = report["one"], report["two"]
    # Same start, weight by weight.
    np.testing.assert_array_equal(two["init_weights"], one["init_weights"])
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=RTOL)
    # It trained: the loss went down and the weights moved (by ~0.1, so a
    # replica that skipped the gradient all-reduce, or applied half of it,
    # would miss the tolerance below by five orders of magnitude).
    assert one["losses"][-1] < one["losses"][0]
    moved = np.abs(
        np.subtract(one["final_weights"], one["init_weights"])
    ).max()
    assert moved > 1e-2
    # Every final weight, not a sum of them (a sum hides opposite errors).
    np.testing.assert_allclose(
        two["final_weights"], one["final_weights"], rtol=RTOL, atol=ATOL
    )


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="spawns its backends itself; runs once, in the tensorflow pass",
)
def test_jax_data_parallel_matches_one_device():
    report = _run("jax")
    _check_same_training(report)
    layout = report["layout"]
    # Every variable (cores included) is replicated, not sharded...
    assert layout["all_variables_replicated"]
    # ...and the TNDense(1024) model's whole trainable state is a few KB.
    assert layout["big_model_variable_bytes"] < 10_000
    # The kernel is generated whole on each device, never sharded.
    assert layout["half_kernel_in_per_device_hlo"] == 0
    assert layout["full_kernel_in_per_device_hlo"] > 0
    shards = layout["generated_kernel_shards"]
    assert [shape for _, shape in shards] == [[1024, 1024]] * 2
    # A shard_map step only all-reduces gradients of stored variables (the
    # largest is the 1024 bias), never a kernel-sized tensor.
    # (positive controls: the bias's all-reduce is found, so a pattern that
    # stops matching fails instead of passing at 0)
    assert 0 < layout["shard_map_largest_all_reduce"] <= 1024
    # With the factorized path (mpo), the GSPMD-compiled step itself sends
    # only core-sized gradients (the merged sites' block matrices, at most
    # factorized.MAX_BLOCK_ENTRIES = 4096 numbers, and the bias)
    # across devices, not the 1M-entry kernel gradient, and holds no
    # kernel: catches a path that forms the kernel in training.
    assert 1024 <= layout["mpo_largest_all_reduce"] <= 4096
    assert layout["mpo_full_kernel_in_hlo"] == 0
    # A ttn's factorized path forms a head (1/8 of the kernel at 1024x1024)
    # from the cores on each device; GSPMD all-reduces that head's gradient
    # (measured 131,072 numbers), not the kernel's: catches a ttn step that
    # forms or all-reduces the whole kernel again.
    assert layout["ttn_full_kernel_in_hlo"] == 0
    assert 1024 < layout["ttn_largest_all_reduce"] <= 1024 * 1024 // 8


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="spawns its backends itself; runs once, in the tensorflow pass",
)
def test_tf_mirrored_strategy_matches_one_device():
    report = _run("tensorflow")
    _check_same_training(report)
    assert report["replicas"] == 2
    layout = report["layout"]
    assert layout["variable_types"] == ["MirroredVariable"]
    assert layout["copies_per_variable"] == [2]
    # Each replica generates its own kernel on its own device.
    devices = [device for device, _ in layout["generated_kernel"]]
    assert devices == layout["devices"]
