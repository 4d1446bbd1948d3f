import keras
import numpy as np
import pytest
from keras import ops

from keras_adntn import networks
from keras_adntn.kernels import GeneratorSpec
from keras_adntn.networks import initialization as tn_init
from keras_adntn.networks.executors import KerasOps
from keras_adntn.networks.executors import NumpyOps
from keras_adntn.networks.executors import numpy_ops
from keras_adntn.networks.run_plan import run_plan
from keras_adntn.tensorize import Tensorization

NAMES = ["ttn", "attn", "mera", "brickwall", "mpo"]

# The 4096 x 4096 kernels are made by the NumPy executor (float64), which
# no Keras backend touches: they run once, in the tensorflow pass.
numpy_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="NumPy executor only, no backend involved; runs in the "
    "tensorflow pass",
)


def _kernel_std(name, dims, bond_dim, **kwargs):
    t = Tensorization(dims)
    net = networks.get(name)(
        num_modes=t.num_modes,
        bond_dim=bond_dim,
        target_std=tn_init.glorot_std(*dims),
        valid_mask=t.valid_mask(),
        seed=3,
        **kwargs,
    )
    values = net.initial_values()
    xp = numpy_ops(t.size)
    kernel = t.unfold(run_plan(net.plan, values, xp), xp)
    return kernel, net


def test_parameter_counts_for_4096_square():
    counts = {
        name: networks.get(name)(num_modes=24, bond_dim=2).num_params
        for name in NAMES
    }
    assert counts == {
        "ttn": 176,
        "attn": 352,
        "mera": 464,
        "brickwall": 920,
        "mpo": 176,
    }


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bond_dim", [1, 2, 4, 8])
@pytest.mark.parametrize("dims", [(64, 10), (300, 17), (1024, 1024)])
def test_initial_std_is_glorot_scale(name, bond_dim, dims):
    kernel, _ = _kernel_std(name, dims, bond_dim)
    ratio = kernel.std() / tn_init.glorot_std(*dims)
    assert np.isfinite(kernel).all()
    # calibrated exactly (float64 here): 1 within 1e-14 at these sizes
    assert ratio == pytest.approx(1.0, rel=1e-6)


@numpy_only
@pytest.mark.parametrize("name", NAMES)
def test_initial_std_at_4096_square(name):
    kernel, _ = _kernel_std(name, (4096, 4096), 2)
    ratio = kernel.std() / tn_init.glorot_std(4096, 4096)
    assert ratio == pytest.approx(1.0, rel=1e-5)


@numpy_only
@pytest.mark.parametrize("bond_dim", [1, 8])
def test_initial_std_at_4096_square_bond_extremes(bond_dim):
    kernel, _ = _kernel_std("ttn", (4096, 4096), bond_dim)
    ratio = kernel.std() / tn_init.glorot_std(4096, 4096)
    assert ratio == pytest.approx(1.0, rel=1e-5)


def test_same_seed_same_cores_other_seed_other_cores():
    make = lambda seed: networks.get("mera")(num_modes=10, seed=seed)  # noqa
    a, b, c = (make(s).initial_values() for s in (1, 1, 2))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert any(not np.array_equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("name", NAMES)
def test_keras_generation_matches_numpy_walk(name):
    t = Tensorization((20, 12))
    net = networks.get(name)(num_modes=t.num_modes, groups=2, seed=0)
    net.build()
    values = {c.name: np.asarray(net._vars[c.name]) for c in net.cores}
    expected = run_plan(net.plan, values, numpy_ops(t.size))
    out = ops.convert_to_numpy(net.generate())
    assert out.shape == (2, t.size)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 11, 17])
def test_any_number_of_modes(n):
    for name in NAMES:
        net = networks.get(name)(num_modes=n, bond_dim=2, seed=0)
        out = run_plan(net.plan, net.initial_values(), numpy_ops(2**n))
        assert out.shape == (1, 2**n)
        assert np.isfinite(out).all()


def test_tree_depth_and_latent_order():
    net = networks.get("ttn")(num_modes=24, latent_order=3)
    assert net.plan.shape("latent") == (2, 2, 2)
    assert sum(1 for s in net.plan.stages if s[0] == "end_level") == 4
    deep = networks.get("ttn")(num_modes=24, latent_order=3, depth=5)
    assert sum(1 for s in deep.plan.stages if s[0] == "end_level") == 6
    with pytest.raises(ValueError, match="latent_order"):
        networks.get("ttn")(num_modes=24, latent_order=30)
    with pytest.raises(ValueError, match="depth"):
        networks.get("ttn")(num_modes=24, latent_order=1, depth=2)
    with pytest.raises(ValueError, match="latent_order"):
        GeneratorSpec("mpo", latent_order=2)  # checked once, in the spec


class _RankRecorder(NumpyOps):
    """NumPy executor that records the rank of every tensor it makes."""

    def __init__(self, max_rank):
        self.max_rank = max_rank
        self.ranks = []

    def reshape(self, x, shape):
        self.ranks.append(len(shape))
        return super().reshape(x, shape)

    def transpose(self, x, axes):
        self.ranks.append(len(axes))
        return super().transpose(x, axes)


@pytest.mark.parametrize("name", NAMES)
def test_rank_limited_walk_stays_within_rank_five(name):
    t = Tensorization((64, 32))
    net = networks.get(name)(num_modes=t.num_modes, groups=2, seed=0)
    values = net.initial_values()
    xp = _RankRecorder(max_rank=5)
    limited = t.unfold(run_plan(net.plan, values, xp), xp)
    assert max(xp.ranks) <= 5
    full = t.unfold(run_plan(net.plan, values, NumpyOps()), NumpyOps())
    np.testing.assert_allclose(limited, full)


def test_schedule_is_printable():
    text = networks.get("mera")(num_modes=8).schedule()
    assert "latent" in text and "gate" in text and "elu" in text


def test_unknown_network():
    with pytest.raises(ValueError, match="network"):
        networks.get("peps")


def test_run_plan_is_a_function_of_arrays():
    net = networks.get("mera")(num_modes=8, groups=2, seed=0)
    net.build()
    xp = NumpyOps()
    got = run_plan(net.plan, net.active_cores(xp), xp)
    want = ops.convert_to_numpy(net.generate())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("xp", [NumpyOps(), KerasOps()])
def test_executors_share_the_plan_helpers(xp):
    x = np.arange(6.0).reshape(2, 3)
    padded = ops.convert_to_numpy(xp.pad_last(xp.convert(x), 2))
    np.testing.assert_allclose(padded, np.pad(x, [(0, 0), (0, 2)]))
    cropped = ops.convert_to_numpy(xp.crop_axis(xp.convert(x), 2, 1))
    np.testing.assert_allclose(cropped, x[:, :2])
