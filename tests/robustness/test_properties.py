"""Property-based tests: random valid configurations build and behave;
random invalid ones raise ValueError and nothing else."""

import os

import keras
import numpy as np
from hypothesis import HealthCheck
from hypothesis import example
from hypothesis import given
from hypothesis import seed
from hypothesis import settings
from hypothesis import strategies as st
from keras import ops

from keras_adntn import TNDense
from keras_adntn.networks import initialization as tn_init

NETWORKS = ["ttn", "attn", "mera", "brickwall", "mpo"]
ACTIVATIONS = ["elu", "gelu", "tanh", "silu", "relu"]
# Two profiles, chosen by the environment variable ADNTN_HYPOTHESIS:
# - "fixed" (default, CI): derandomized, the same examples on every run, so
#   CI is reproducible (a random run found the example pinned below; it
#   stays pinned);
# - "random": new examples on every run, from a seed that tests/conftest.py
#   draws and prints in the pytest header; rerun a failure with
#   ADNTN_HYPOTHESIS=random ADNTN_HYPOTHESIS_SEED=<seed>.
PROFILE = os.environ.get("ADNTN_HYPOTHESIS", "fixed")
if PROFILE not in ("fixed", "random"):
    raise ValueError(
        f"ADNTN_HYPOTHESIS must be 'fixed' or 'random', got {PROFILE!r}"
    )
FAST = settings(
    max_examples=25,
    derandomize=PROFILE == "fixed",
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _seeded(test):
    if PROFILE == "random":
        return seed(int(os.environ["ADNTN_HYPOTHESIS_SEED"]))(test)
    return test


@st.composite
def valid_config(draw):
    groups = draw(st.integers(1, 4))
    units = groups * draw(st.integers(1, 300 // groups))
    return {
        "units": units,
        "network": draw(st.sampled_from(NETWORKS)),
        "bond_dim": draw(st.integers(1, 6)),
        "radix": draw(st.integers(2, 4)),
        "generator_groups": groups,
        "mode_order": draw(st.sampled_from(["paired", "flat"])),
        "generator_activation": draw(st.sampled_from(ACTIVATIONS)),
        "seed": draw(st.integers(0, 2**16)),
    }


@_seeded
@FAST
@given(config=valid_config(), input_dim=st.integers(1, 300))
@example(  # found by CI: ReLU at bond 1 kills a group 3 draws in 4
    config={
        "units": 2,
        "network": "ttn",
        "bond_dim": 1,
        "radix": 2,
        "generator_groups": 2,
        "mode_order": "paired",
        "generator_activation": "relu",
        "seed": 0,
    },
    input_dim=9,
)
def test_valid_configurations_build_and_are_calibrated(config, input_dim):
    layer = TNDense(**config)
    x = np.random.default_rng(0).standard_normal((3, input_dim))
    y = ops.convert_to_numpy(layer(x.astype("float32")))
    assert y.shape == (3, config["units"])
    assert np.isfinite(y).all()
    kernel = ops.convert_to_numpy(layer.kernel)
    if kernel.size // config["generator_groups"] > 1:
        target = tn_init.glorot_std(input_dim, config["units"])
        # per group, as calibrated: blocks of columns
        blocks = np.split(kernel, config["generator_groups"], axis=1)
        for block in blocks:
            if block.size > 1:
                ratio = block.std() / target
                assert abs(ratio - 1) <= 0.01, ratio
    keras.backend.clear_session()


@st.composite
def invalid_config(draw):
    config = draw(valid_config())
    field = draw(
        st.sampled_from(
            [
                "units",
                "bond_dim",
                "radix",
                "network",
                "mode_order",
                "generator_groups",
            ]
        )
    )
    bad = {
        "units": st.sampled_from([0, -3, 2.5, "8", None]),
        "bond_dim": st.sampled_from([0, -1, 1.5, "2"]),
        "radix": st.sampled_from([0, 1, -2, 2.5]),
        "network": st.sampled_from(["", "TTN", "peps", None, 3]),
        "mode_order": st.sampled_from(["", "rows", None, 1]),
        "generator_groups": st.sampled_from([0, -1, 7, 1.5]),
    }[field]
    config[field] = draw(bad)
    if field == "generator_groups" and isinstance(
        config["generator_groups"], int
    ):
        config["units"] = 13 * 12 + 1  # not divisible by 7
    return config


@_seeded
@FAST
@given(config=invalid_config())
def test_invalid_configurations_raise_value_error(config):
    try:
        TNDense(**config)
    except ValueError:
        return
    raise AssertionError(f"no ValueError for {config}")
