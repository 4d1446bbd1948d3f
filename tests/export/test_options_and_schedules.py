"""The export's plumbing that needs no converter: `ExportOptions` (checked
once, written to and read from the subprocess command line) and the one
budget rule of the device schedules."""

import argparse

import keras
import numpy as np
import pytest

from keras_adntn import TNConv2D
from keras_adntn import TNDense
from keras_adntn.export.conv_tiling import ConvTiling
from keras_adntn.export.options import ExportOptions
from keras_adntn.export.tiling import DenseTiling


def _parse(flags):
    parser = argparse.ArgumentParser()
    ExportOptions.add_arguments(parser)
    return parser.parse_args(flags)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"mode": "on_the_fly", "arena_budget": "32K", "batch_size": None},
        {"mode": "cached", "strip_strings": True, "measure": False},
        {"quantize": "float16", "batch_size": 4, "arena_budget": 5000},
    ],
)
def test_options_travel_on_the_command_line(kwargs):
    options = ExportOptions(**kwargs)
    back = ExportOptions.from_command_line(_parse(options.command_line()))
    assert vars(back) == vars(options)


def test_options_are_checked_and_frozen():
    options = ExportOptions(arena_budget="1M", batch_size=None)
    assert options.arena_budget == 1024**2 and options.rows == 1
    with pytest.raises(AttributeError):
        options.mode = "cached"
    with pytest.raises(ValueError, match="`mode` must be one of"):
        ExportOptions(mode="lazy")
    with pytest.raises(ValueError, match="representative_dataset"):
        ExportOptions(quantize="int8")
    data = np.zeros((2, 3), "float32")
    flags = ExportOptions(quantize="int8", representative_dataset=data)
    assert "--representative" not in flags.command_line()  # a file


def _fits(schedule, budget):
    """The budget rule: the fewest blocks whose estimate fits, or the
    most blocks there are."""
    fits = schedule.estimated_arena() <= budget
    last = schedule.fixed == schedule.max_fixed
    if schedule.fixed > 1:
        fewer = schedule.with_fixed(schedule.fixed - 1)
        if fewer.estimated_arena() <= budget:
            return False
    return fits or last


@pytest.mark.parametrize("budget", [None, 2048, 8192, 10**9])
def test_dense_and_conv_share_the_budget_rule(budget):
    dense = keras.Sequential([keras.Input((64,)), TNDense(64, seed=1)])
    conv = keras.Sequential(
        [keras.Input((8, 8, 16)), TNConv2D(16, 3, seed=2)]
    )
    pairs = [(DenseTiling, dense.layers[0]), (ConvTiling, conv.layers[0])]
    for cls, layer in pairs:
        schedule = cls.for_budget(layer, budget)
        assert schedule.tiled
        if budget is None:
            assert schedule.fixed == 1
        else:
            assert _fits(schedule, budget)
    # unrolled conv blocks: no loop carries anything
    tiling = ConvTiling(conv.layers[0], 1)
    assert tiling.estimated_arena(8) == 16 * tiling.block_entries


def test_schedules_keep_one_contract():
    # catches: the budget search building a schedule with another
    # schedule's arguments (`with_fixed` calling `type(self)(layer, fixed)`
    # on a schedule that takes a batch size), a contraction claiming to
    # tile, or a `smaller` / `faster` step that changes layer or kind
    from keras_adntn.export.contraction import FactorizedSchedule
    from keras_adntn.export.headed_contraction import HeadedSchedule
    from keras_adntn.export.schedule import ContractionSchedule
    from keras_adntn.export.schedule import DeviceSchedule
    from keras_adntn.export.schedule import TiledSchedule

    ttn = TNDense(256, seed=1)
    ttn.build((None, 256))
    mpo = TNDense(64, network="mpo", seed=1)
    mpo.build((None, 64))
    conv = TNConv2D(16, 3, seed=2)
    conv.build((None, 8, 8, 16))
    schedules = [
        DenseTiling(ttn, 1),
        ConvTiling(conv, 1),
        FactorizedSchedule(mpo, 4),
        HeadedSchedule(ttn, 4),
    ]
    for schedule in schedules:
        assert isinstance(schedule, DeviceSchedule)
        assert schedule.estimated_arena(4) > 0
        assert schedule.block_entries > 0
        for step in (schedule.smaller(), schedule.faster()):
            assert step is None or (
                type(step) is type(schedule) and step.layer is schedule.layer
            )
        tiled = isinstance(schedule, TiledSchedule)
        assert schedule.tiled == tiled
        if not tiled:  # a contraction generates nothing to anchor
            assert not schedule.anchored
        assert tiled != isinstance(schedule, ContractionSchedule)
    dense = schedules[0]
    assert dense.smaller().fixed == 2 and dense.smaller().faster().fixed == 1
    assert dense.faster() is None  # never untiled: that needs the anchor
    assert DenseTiling(ttn, 0).smaller() is None
    assert schedules[2].smaller() is None and schedules[2].batch_size == 4
    headed = schedules[3]
    assert not isinstance(headed, FactorizedSchedule)
    smaller = headed.smaller()
    assert smaller is None or (
        smaller.estimated_bytes < headed.estimated_bytes
    )


def test_calibration_samples_reach_the_subprocess_whole_and_in_order(
    tmp_path,
):
    # catches: the jax / torch route's calibration data reordered (keys
    # sorted as strings: s10 before s2) or truncated on its way to the
    # TensorFlow subprocess -- every int8 export from those backends would
    # be calibrated on other data, and the float exports would not tell
    from keras_adntn.export.convert import calibration_samples
    from keras_adntn.export.remote import read_samples
    from keras_adntn.export.remote import write_samples

    rng = np.random.default_rng(0)
    a = rng.standard_normal((23, 4)).astype("float32")
    b = rng.standard_normal((23, 3, 2)).astype("float32")
    path = str(tmp_path / "samples.npz")
    assert write_samples([a, b], path) == 23
    back = read_samples(path)
    want = list(calibration_samples([a, b]))
    assert len(back) == len(want) == 23
    for got, sample in zip(back, want):
        assert len(got) == 2
        for g, w in zip(got, sample):
            np.testing.assert_array_equal(g, w)

    def dataset():  # a callable representative dataset, one input
        for i in range(12):
            yield a[i : i + 1]

    assert write_samples(dataset, path) == 12
    back = read_samples(path)
    np.testing.assert_array_equal(np.concatenate([s[0] for s in back]), a[:12])
