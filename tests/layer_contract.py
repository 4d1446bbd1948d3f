"""Checks every TN layer must pass: the contract of a drop-in Keras layer."""

import contextlib
import os

import keras
import numpy as np
from keras import ops


def random_inputs(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("f4")


def check_config_round_trip(layer, x):
    y = layer(x)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(
        ops.convert_to_numpy(clone(x)), ops.convert_to_numpy(y), atol=1e-6
    )
    assert clone.get_config() == config


def check_keras_file_round_trip(model, x, tmp_path):
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )
    return path


def check_every_variable_learns(model, x, y, loss="mse"):
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    before = [np.array(v) for v in model.trainable_variables]
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    for old, var in zip(before, model.trainable_variables):
        assert not np.allclose(old, np.array(var)), var.path


def check_symbolic_call(layer, input_shape):
    inputs = keras.Input(input_shape[1:])
    out = layer(inputs)
    expected = layer.compute_output_shape((None, *input_shape[1:]))
    assert tuple(out.shape) == tuple(expected)


TORCH_COMPILE_SKIP = (
    "torch.compile takes 30-170 s per model on this CPU; jit_compile=True "
    "on torch runs once per generated layer type (TNDense ttn, TNConv2D, "
    "TNMultiHeadAttention), not for every network, the factorized path, "
    "growth, the cache or the explicit family (all run under XLA on "
    "TensorFlow and JAX)"
)


def check_jit_fit(model, x, y, torch_compile=False, lr=1e-2, epochs=4):
    """`jit_compile=True` (XLA on TF/JAX, torch.compile on torch) must give
    the values of the eager model and must train: the loss goes down.

    On torch, only callers passing `torch_compile=True` run (torch.compile
    is slow on CPU); the others skip visibly.
    """
    import pytest

    if keras.backend.backend() == "torch" and not torch_compile:
        pytest.skip(TORCH_COMPILE_SKIP)
    model.compile(optimizer="sgd", loss="mse", jit_compile=False)
    eager = model.predict(x, verbose=0)
    eager_loss = model.evaluate(x, y, verbose=0)
    model.compile(
        optimizer=keras.optimizers.Adam(lr), loss="mse", jit_compile=True
    )
    jitted = model.predict(x, verbose=0)
    np.testing.assert_allclose(jitted, eager, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        model.evaluate(x, y, verbose=0), eager_loss, rtol=1e-4, atol=1e-6
    )
    history = model.fit(x, y, batch_size=len(x), epochs=epochs, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    after = model.evaluate(x, y, verbose=0)
    assert after < eager_loss, (eager_loss, history.history["loss"], after)


def check_mixed_precision(make_layer, x, policy, rtol=None):
    """Under `policy` the layer computes in the compute dtype, keeps float32
    variables, and gives the float32 layer's values within the precision of
    the compute dtype (same seed, so the same variables)."""
    keras.utils.set_random_seed(0)
    reference = make_layer()
    expected = ops.convert_to_numpy(reference(x))
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        layer = make_layer()
        y = layer(x)
        dtype = keras.backend.standardize_dtype(y.dtype)
        assert dtype == policy.split("_")[1]
        assert all(v.dtype == "float32" for v in layer.weights)
        layer.set_weights(reference.get_weights())
        got = ops.convert_to_numpy(ops.cast(layer(x), "float32"))
    finally:
        keras.config.set_dtype_policy("float32")
    if rtol is None:
        # float16 keeps 11 significant bits, bfloat16 8; a generated
        # kernel and a matmul accumulate a few roundings of each
        rtol = 1e-2 if dtype == "float16" else 5e-2
    scale = float(np.max(np.abs(expected))) or 1.0
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale)


@contextlib.contextmanager
def counting_generations(kernel):
    """Inside the block, a list that grows by one each time `kernel` (a
    `GeneratedKernel`) generates its kernels in Python (eager calls)."""
    made = []
    generate = kernel.generate

    def counting(*args, **kwargs):
        made.append(1)
        return generate(*args, **kwargs)

    kernel.generate = counting
    try:
        yield made
    finally:
        del kernel.generate
