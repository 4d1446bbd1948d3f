"""The kernel owns the product (issue 33): one decision of the path, one
answer to "why formed", the layer's reasons handed over at build, the
export's one `DeviceContext`."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_adntn import TNConv2D
from keras_adntn import TNDense
from keras_adntn.kernels import device_context
from keras_adntn.kernels.device_context import DeviceContext
from keras_adntn.networks import executors
from tests import layer_contract as contract


def _np(x):
    return ops.convert_to_numpy(x)


def _built(layer, shape):
    layer.build(shape)
    return layer


@pytest.mark.parametrize(
    "kwargs, path",
    [
        ({"network": "mpo", "execution": "factorized"}, "factorized"),
        ({"network": "mpo", "execution": "on_the_fly"}, "generated"),
        ({"network": "attn"}, "generated"),
        ({"network": "mpo", "kernel_regularizer": "l2"}, "generated"),
        ({"network": "mpo", "kernel_constraint": "non_neg"}, "generated"),
        ({"network": "mpo", "kernel_quantization": "int8"}, "generated"),
        ({"network": "mpo", "execution": "cached"}, "cached"),
    ],
)
def test_one_decision_says_each_path(kwargs, path):
    # catches: a path decided outside `Product.path` disagreeing with it
    # (e.g. a regularized, constrained or int8 kernel contracted without
    # being formed), or `execution_paths` reporting another path than the
    # call takes
    layer = _built(TNDense(64, seed=0, **kwargs), (None, 64))
    kernel = layer.generated_kernel
    assert kernel.execution_path((128, 64), training=False) == path
    assert layer.execution_paths(128, training=False) == {kernel.name: path}
    formed = ("kernel_regularizer", "kernel_constraint", "kernel_quantization")
    needs = kwargs["network"] == "attn" or any(k in kwargs for k in formed)
    assert (kernel.formed_reason() is not None) == needs


def test_formed_reason_names_what_needs_the_kernel():
    # catches: a reason lost on the way from the layer to its kernel (the
    # kernel would contract and silently skip the regularizer, or a conv
    # layout the factorized path does not handle)
    cases = [
        (TNDense(8, network="attn"), (None, 8), "nonlinear"),
        (TNDense(8, network="mpo", mode_order="flat"), (None, 8), "flat"),
        (
            TNDense(8, network="mpo", kernel_regularizer="l2"),
            (None, 8),
            "kernel_regularizer",
        ),
        (
            TNDense(8, network="mpo", kernel_constraint="non_neg"),
            (None, 8),
            "kernel_constraint",
        ),
        (
            TNConv2D(8, 3, network="mpo", data_format="channels_first"),
            (None, 4, 8, 8),
            "channels_first",
        ),
        (TNConv2D(8, 3, network="mpo", groups=2), (None, 8, 8, 4), "groups"),
        (TNConv2D(8, 3, network="ttn"), (None, 8, 8, 4), "convolution"),
    ]
    for layer, shape, words in cases:
        kernel = _built(layer, shape).generated_kernel
        assert words in kernel.formed_reason(), (layer, kernel.formed_reason())
    mpo = _built(TNDense(8, network="mpo"), (None, 8)).generated_kernel
    assert mpo.formed_reason() is None
    mpo.kernel_quantization = "int8"  # as Model.quantize sets it
    assert "kernel_quantization" in mpo.formed_reason()


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"data_format": "channels_first"}, "channels_first"),
        ({"groups": 2}, "groups"),
        ({"kernel_regularizer": "l2"}, "kernel_regularizer"),
    ],
)
def test_factorized_conv_refuses_what_it_cannot_contract(kwargs, words):
    # catches: a dropped blocker -- a channels-first or grouped conv taking
    # the channels-last, ungrouped factorized path (wrong results), or a
    # regularizer never applied
    with pytest.raises(ValueError, match=words):
        TNConv2D(8, 3, network="mpo", execution="factorized", **kwargs)


def test_regularizer_loss_comes_from_the_formed_kernel():
    # catches: the kernel_regularizer penalty lost when the product moved
    # into the kernel, or added twice per call
    reg = keras.regularizers.L2(0.25)
    layer = TNDense(16, network="ttn", kernel_regularizer=reg, seed=3)
    x = np.ones((2, 32), "float32")
    layer(x)
    assert len(layer.losses) == 1
    want = float(_np(reg(layer.kernel)))
    assert float(_np(layer.losses[0])) == pytest.approx(want, rel=1e-5)
    layer(x)  # a new call replaces, not adds
    assert len(layer.losses) == 1


def test_a_schedule_in_the_context_computes_the_whole_product():
    # catches: a layer that multiplies itself while the export's device
    # schedule is meant to (the device graph would generate the kernel),
    # or a schedule applied to another layer than its own
    scheduled = _built(TNDense(4, seed=1, use_bias=False), (None, 8))
    other = _built(TNDense(4, seed=2, use_bias=False), (None, 8))
    x = np.ones((2, 8), "float32")
    marker = np.full((2, 4), 7.0, "float32")
    context = DeviceContext(
        make_ops=executors.KerasOps,
        products={id(scheduled): lambda inputs: ops.convert_to_tensor(marker)},
    )
    with device_context.tracing(context):
        y = scheduled(x)
        z = other(x)
    np.testing.assert_array_equal(_np(y), marker)
    np.testing.assert_allclose(_np(z), _np(other(x)), rtol=1e-5, atol=1e-6)


def test_context_read_contracts_mpo_and_forms_the_others():
    # catches: an export trace that forms an mpo kernel it could contract
    # (the file stores the kernel), or contracts a tree in the trace (its
    # device path is the export's HeadedSchedule)
    x = np.random.default_rng(0).standard_normal((2, 16)).astype("f4")
    for network, path in (("mpo", "factorized"), ("ttn", "generated")):
        layer = _built(TNDense(16, network=network, seed=4), (None, 16))
        product = layer.generated_kernel._product
        context = DeviceContext(
            make_ops=executors.KerasOps, read=ops.convert_to_numpy
        )
        assert product.path(2, False, context) == path
        with device_context.tracing(context):
            y = layer(x)
        np.testing.assert_allclose(
            _np(y), _np(layer(x)), rtol=1e-4, atol=1e-5
        )


def test_sharing_makes_the_kernel_once_and_first():
    # catches: a joint kernel generated once per projection (3x the work
    # on torch eager), or generated lazily after the ops that use it (the
    # exported graph changes)
    layer = TNDense(8, network="ttn", execution="on_the_fly", seed=5)
    layer = _built(layer, (None, 8))
    kernel = layer.generated_kernel
    x = np.ones((2, 8), "float32")
    with contract.counting_generations(kernel) as made:
        with kernel.sharing(x.shape, training=True):
            assert len(made) == 1  # made on entry
            a = kernel.matmul(x, training=True)
            b = kernel.matmul(x, training=True)
        assert len(made) == 1
        kernel.matmul(x, training=True)
        assert len(made) == 2  # outside the block: every call
    np.testing.assert_array_equal(_np(a), _np(b))
