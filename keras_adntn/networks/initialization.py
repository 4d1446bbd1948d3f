"""The initialisation policy of SPEC §4, and calibration.

- latent root: `N(0, sigma0**2)`, sigma0 = 1;
- hidden cores (followed by a nonlinearity): He normal,
  `std = gain * sqrt(1 / fan_in)`, gain**2 = 2 for ELU/GELU/SiLU/ReLU-like
  activations, 1 otherwise; a package activation
  (`keras_adntn.activations`) gives its own gain (PReLU: `2 / (1 + a**2)`)
  and may draw its hidden cores itself (SIREN: uniform in
  `+-sqrt(6 / fan_in) / omega0`);
- read-out cores (last level, linear): Glorot normal,
  `std = sqrt(2 / (fan_in + fan_out))`;
- disentanglers: identity plus `1e-2 * N(0, 1)`.

`initialization="orthogonal"` (MPO only) draws instead a Kronecker product
of Haar-random orthogonal factors, one per site, on bond channel 0, and
`1e-2 * N(0, 1)` elsewhere (`site_factor`): the generated kernel is then
orthogonal up to its scale (semi-orthogonal when not square), a flat
spectrum like an orthogonal Keras initializer's instead of the low
effective rank a product of Gaussian cores has. It is exact only on the
whole Kronecker product: `GeneratedKernel` refuses it for kernels whose
padding would be cropped or that are sliced into parts, and the MPO for
sites whose digits do not all map the same way.

Calibration then runs the network once in NumPy: each level's pre-activation
is rescaled to RMS 1 (SIREN: `1 / omega0`) through that level's cores,
which it is linear in, and the last level to the standard deviation the
replaced Keras layer would have had (`glorot_uniform`:
`sqrt(2 / (fan_in + fan_out))`).
"""

import math

import keras
import numpy as np

from keras_adntn import activations as tn_activations
from keras_adntn.networks.executors import numpy_ops
from keras_adntn.networks.run_plan import run_plan

INITIALIZATIONS = ("calibrated", "orthogonal")
RELU_LIKE = {"elu", "gelu", "relu", "silu", "swish", "leaky_relu", "selu"}
DISENTANGLER_NOISE = 1e-2
LATENT_STD = 1.0
MAX_DRAWS = 64


def check_initialization(initialization, cls=None) -> str:
    """Validates a generator initialisation: one of `INITIALIZATIONS`;
    `"orthogonal"` only for a network class with `has_orthogonal_init`."""
    if initialization not in INITIALIZATIONS:
        raise ValueError(
            f"`generator_init` must be one of {INITIALIZATIONS}, got "
            f"{initialization!r}."
        )
    if (
        initialization == "orthogonal"
        and cls is not None
        and not cls.has_orthogonal_init
    ):
        raise ValueError(
            f"`generator_init='orthogonal'` applies to network='mpo' only "
            f"(a Kronecker product of orthogonal factors is a bond-1 MPO), "
            f"not to {cls.__name__}."
        )
    return initialization


def constant(value):
    """An initializer returning `value` (an array or scalar) cast to the
    dtype asked for (float32 by default)."""

    def init(shape, dtype=None):
        return keras.ops.cast(value, dtype or "float32")

    return init


def glorot_std(fan_in: int, fan_out: int) -> float:
    """Standard deviation of `glorot_uniform` for the given fans."""
    return math.sqrt(2.0 / (fan_in + fan_out))


def _get_activation(identifier):
    """A package activation (`keras_adntn.activations`) or a Keras one."""
    found = tn_activations.get(identifier)
    return keras.activations.get(identifier) if found is None else found


def resolve_activations(identifier, count: int) -> list:
    """One activation callable per hidden level."""
    if isinstance(identifier, (list, tuple)):
        if len(identifier) != count:
            raise ValueError(
                f"`generator_activation` as a list needs one entry per "
                f"hidden level ({count}), got {len(identifier)}."
            )
        return [_get_activation(a) for a in identifier]
    return [_get_activation(identifier)] * count


def serialize_activations(identifier):
    """Config form of an activation or list of activations."""
    if isinstance(identifier, (list, tuple)):
        return [serialize_activations(a) for a in identifier]
    if identifier is None or isinstance(identifier, str):
        return identifier
    if isinstance(identifier, dict):
        return identifier
    if isinstance(identifier, tn_activations.GeneratorActivation):
        return tn_activations.serialize(identifier)
    return keras.activations.serialize(identifier)


def gain_squared(activation) -> float:
    """He gain**2 for the activation that follows a hidden core."""
    if isinstance(activation, tn_activations.GeneratorActivation):
        return activation.gain_squared()
    name = getattr(activation, "__name__", "")
    return 2.0 if name in RELU_LIKE else 1.0


def level_activations(network) -> dict:
    """The activation that ends each hidden level, `{level: activation}`."""
    return {
        stage[1]: network.activations[stage[2]]
        for stage in network.plan.stages
        if stage[0] == "end_level" and stage[2] is not None
    }


def level_gains(network) -> dict:
    """gain**2 of each level, from the activation that ends it."""
    gains = {}
    for stage in network.plan.stages:
        if stage[0] == "end_level" and stage[2] is not None:
            gains[stage[1]] = gain_squared(network.activations[stage[2]])
    return gains


def draw_core(
    rng, spec, groups: int, gains: dict, activations: dict | None = None
) -> np.ndarray:
    """Draws one core `(groups, *spec.shape)` following the policy.

    `activations` (`{level: activation}`) lets an activation with its own
    rule (SIREN) draw the hidden cores of its level.
    """
    shape = (groups, *spec.shape)
    act = (activations or {}).get(spec.level)
    if spec.kind == "hidden" and hasattr(act, "draw_hidden"):
        drawn = act.draw_hidden(rng, shape, spec.fan_in)
        if drawn is not None:
            return drawn
    if spec.kind == "gate":
        eye = np.eye(spec.shape[0]).reshape(spec.shape)
        return eye + DISENTANGLER_NOISE * rng.standard_normal(shape)
    if spec.kind == "latent":
        std = LATENT_STD
    elif spec.kind == "hidden":
        std = math.sqrt(gains.get(spec.level, 1.0) / spec.fan_in)
    else:
        std = glorot_std(spec.fan_in, spec.fan_out)
    return std * rng.standard_normal(shape)


ORTHOGONAL_NOISE = 1e-2


def haar_isometry(rng, rows: int, cols: int) -> np.ndarray:
    """A Haar-random `(rows, cols)` matrix with orthonormal columns
    (`rows >= cols`) or rows (`rows < cols`)."""
    q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    q = q * np.sign(np.diag(r))
    return q if rows >= cols else q.T


def site_factor(rng, roles, radix: int) -> np.ndarray:
    """One Kronecker factor over a site's leaves, flattened in leaf order.

    `roles[j]` is True where leaf `j` of the site is an output digit: the
    factor is a Haar isometry from the site's input digits to its output
    digits, laid out over the leaves; returns `(radix**len(roles),)`.
    """
    ins = [j for j, out in enumerate(roles) if not out]
    outs = [j for j, out in enumerate(roles) if out]
    factor = haar_isometry(rng, radix ** len(ins), radix ** len(outs))
    factor = factor.reshape((radix,) * len(roles))
    return np.transpose(factor, np.argsort(ins + outs)).reshape(-1)


def calibrate(network, values: dict) -> np.ndarray:
    """Rescales `values` in place (see the module docstring).

    Returns, per group, whether the generated tensor is alive: finite and,
    where it has more than one used entry, not constant (boolean
    `(groups,)`). Calibration is per group, so recalibrating a calibrated
    group leaves it unchanged.
    """
    xp = numpy_ops(network.radix**network.num_modes)
    cores = {k: xp.convert(v) for k, v in values.items()}
    mask = network.valid_mask
    g = network.groups
    acts = level_activations(network)

    def hook(level, final, state):
        scaled = [
            c.name
            for c in network.cores
            if c.level == level and c.kind != "gate"
        ]
        if not scaled:
            return state
        if final:
            if network.target_std is None:
                return state
            sel = state if mask is None else state[:, mask]
            if sel.shape[1] > 1:
                current = sel.std(axis=1)
            else:  # a single entry has no spread: match its magnitude
                current = np.sqrt(np.mean(np.square(sel), axis=1))
            wanted = float(network.target_std)
        else:
            current = np.sqrt(np.mean(np.square(state), axis=1))
            wanted = getattr(acts.get(level), "preactivation_rms", None)
            wanted = 1.0 if wanted is None else wanted()
        ok = np.isfinite(current) & (current > 0)
        factor = np.where(ok, wanted / np.where(ok, current, 1.0), 1.0)
        per_core = factor ** (1.0 / len(scaled))
        for name in scaled:
            values[name] = values[name] * per_core.reshape(
                (g,) + (1,) * (values[name].ndim - 1)
            )
        return state * factor.reshape(g, 1).astype(state.dtype)

    out = run_plan(network.plan, cores, xp, hook=hook)
    used = out if mask is None else out[:, mask]
    alive = np.isfinite(used).all(axis=1)
    if used.shape[1] > 1:
        with np.errstate(invalid="ignore"):
            alive &= used.std(axis=1) > 0
    return alive


def initial_values(network) -> dict:
    """Initial cores of `network` (SPEC §4): drawn with its seed (None:
    one from NumPy's global generator), then calibrated (`calibrate`);
    `{name: float64 (groups, *shape)}`. A group whose draw is dead is
    drawn again, up to `MAX_DRAWS` times."""
    seed = network.seed
    if seed is None:
        seed = int(np.random.randint(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    gains = level_gains(network)
    acts = level_activations(network)
    values, alive = None, None
    for _ in range(MAX_DRAWS):
        draw = {
            c.name: draw_core(rng, c, network.groups, gains, acts)
            for c in network.cores
        }
        if network.initialization == "orthogonal":
            draw = network._orthogonal_cores(rng, draw)
        if values is None:
            values = draw
        else:
            for name, value in values.items():
                value[~alive] = draw[name][~alive]
        # A group's draw can be dead (e.g. ReLU with bond_dim 1 zeroes a
        # whole level): its cores are drawn again from the same
        # generator, deterministically; live groups are kept.
        alive = calibrate(network, values)
        if alive.all():
            break
    return values
