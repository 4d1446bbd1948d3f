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
