import numpy as np
import pytest

from keras_adntn.networks.executors import KerasOps
from keras_adntn.networks.executors import NumpyOps
from keras_adntn.tensorize import Tensorization


@pytest.mark.parametrize(
    "dims,order",
    [
        ((64, 10), "paired"),
        ((64, 10), "flat"),
        ((5, 37), "paired"),
        ((1, 1), "paired"),
        ((3, 3, 5, 6), "paired"),
        ((3, 3, 5, 6), "flat"),
    ],
)
@pytest.mark.parametrize("radix", [2, 3])
def test_fold_unfold_is_exact_inverse(dims, order, radix):
    t = Tensorization(dims, radix=radix, mode_order=order)
    w = np.random.default_rng(0).standard_normal((2, *dims))
    flat = t.fold(w)
    assert flat.shape == (2, radix**t.num_modes)
    np.testing.assert_array_equal(t.unfold(flat, NumpyOps()), w)
    out = t.unfold(KerasOps().convert(flat), KerasOps())
    np.testing.assert_allclose(np.asarray(out), w, rtol=1e-6, atol=1e-6)
    limited = t.unfold(KerasOps(max_rank=5).convert(flat), KerasOps(5))
    np.testing.assert_allclose(np.asarray(limited), w, rtol=1e-6, atol=1e-6)


def test_paired_order_interleaves_input_and_output_digits():
    t = Tensorization((8, 4), radix=2)
    assert t.leaf_order == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2)]
    conv = Tensorization((3, 3, 4, 4), radix=2)
    spatial = [leaf for leaf in conv.leaf_order if leaf[0] < 2]
    assert conv.leaf_order[: len(spatial)] == spatial


def test_padding_overhead():
    assert Tensorization((4096, 4096)).padding_overhead == 0.0
    assert Tensorization((64, 10)).padding_overhead == pytest.approx(0.6)
    assert Tensorization((64, 10), mode_order="flat").padding_overhead == (
        pytest.approx(1024 / 640 - 1)
    )


def test_valid_mask_counts_weight_entries():
    t = Tensorization((5, 7), radix=3)
    assert t.valid_mask().sum() == 35


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dims": (0, 3)},
        {"dims": (3, 3), "radix": 1},
        {"dims": (3, 3), "mode_order": "zigzag"},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        Tensorization(**kwargs)
