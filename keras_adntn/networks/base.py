"""What every generator network shares: cores, schedule, init, calibration.

A network is built from a target size (`num_modes` modes of size `radix`)
and hyper-parameters; it knows nothing about Dense or Conv. Subclasses only
describe their topology by filling a *plan* (`_make_plan`): the list of cores
and the list of stages that contract them. The plan is plain data, computed
once; `generate` walks it with `keras.ops`, and the same walk in NumPy
initialises and calibrates the cores at build time (SPEC §4).

Stages:
- `("latent", name)`: the state becomes the latent tensor, flattened.
- `("chain", names)`: the state becomes the contraction of a tensor train
  whose core `k` has shape `(b_{k-1}, q_k, b_k)`.
- `("cycle", blocks)`: one pass over all modes of the state, in order; each
  block `(in_size, out_size, name)` contracts the leading mode(s) with a core
  reshaped to `(in_size, out_size)` and appends the result as the last mode
  (`name=None` just moves the mode to the end). After the pass the modes are
  back in order: this is how expansions and disentanglers are applied with
  rank-3 contractions only.
- `("end_level", level, activation_index)`: the end of a level; calibration
  happens here, then the level's activation (None: linear).

Every core carries a leading axis of size `groups`: grouped generation is a
batch axis of the same contractions, never a Python loop at call time.
"""

import math
from dataclasses import dataclass

import keras
import numpy as np

from keras_adntn import initializers as tn_init
from keras_adntn._compute import KerasOps
from keras_adntn._compute import NumpyOps

MAX_DRAWS = 20


@dataclass
class CoreSpec:
    """One trainable core: its shape (without the group axis) and role."""

    name: str
    shape: tuple
    kind: str  # "latent", "hidden", "readout" or "gate"
    level: int
    fan_in: int
    fan_out: int


def bond(chi: int, radix: int, leaves: int) -> int:
    """Bond dimension of a leg covering `leaves` modes: `min(chi, p**n)`."""
    cap = 1
    for _ in range(leaves):
        cap *= radix
        if cap >= chi:
            return chi
    return cap


class GeneratorNetwork(keras.layers.Layer):
    """Base class of the generator networks.

    Args:
        num_modes: order N of the generated tensor.
        radix: size p of every generated mode.
        bond_dim: bond (virtual) dimension chi.
        activation: activation between levels: a name, a callable, or a list
            with one entry per hidden level.
        groups: number of independent generators run as one batch.
        latent_order: order of the latent tensor (tree networks only).
        depth: number of levels (tree networks) or gate layers (brick wall).
        seed: seed of the NumPy initialisation; None draws one from NumPy's
            global generator (so `keras.utils.set_random_seed` fixes it).
        target_std: standard deviation the generated tensor is calibrated
            to at initialisation (None: leave the raw scale).
        valid_mask: optional boolean `(radix**N,)` of the entries that are
            used (the rest is padding); calibration looks only at those.

    Returns (`generate()`): a float32 tensor `(groups, radix**num_modes)`
    in leaf order.
    """

    uses_latent_order = False
    uses_depth = False

    def __init__(
        self,
        num_modes,
        radix=2,
        bond_dim=2,
        activation="elu",
        groups=1,
        latent_order=None,
        depth=None,
        seed=None,
        target_std=None,
        valid_mask=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_modes = int(num_modes)
        self.radix = int(radix)
        self.bond_dim = int(bond_dim)
        self.groups = int(groups)
        self.latent_order = latent_order
        self.depth = depth
        self.seed = seed
        self.target_std = target_std
        self.valid_mask = valid_mask
        self.activation = activation
        if latent_order is not None and not self.uses_latent_order:
            raise ValueError(
                f"`latent_order` applies to the tree networks ('ttn', "
                f"'attn', 'mera'), not to {type(self).__name__}; got "
                f"latent_order={latent_order}."
            )
        if depth is not None and not self.uses_depth:
            raise ValueError(
                f"`depth` does not apply to {type(self).__name__}; got "
                f"depth={depth}."
            )
        self.cores, self.plan = [], []
        self._make_plan()
        n_act = sum(
            1 for s in self.plan if s[0] == "end_level" and s[2] is not None
        )
        self.activations = tn_init.resolve_activations(activation, n_act)
        self._act_params = self._activation_param_specs()

    # -- topology, filled by subclasses -------------------------------------
    def _make_plan(self):
        raise NotImplementedError

    def _add_core(self, name, shape, kind, level, fan_in=None, fan_out=None):
        shape = tuple(int(s) for s in shape)
        fan_in = shape[0] if fan_in is None else fan_in
        fan_out = math.prod(shape[1:]) if fan_out is None else fan_out
        self.cores.append(CoreSpec(name, shape, kind, level, fan_in, fan_out))
        return name

    def _add_gate_layer(self, dims, pairs, level, name):
        """Appends a cycle applying gates to disjoint neighbour `pairs`."""
        starts = {a: b for a, b in pairs}
        blocks, k, gate = [], 0, 0
        while k < len(dims):
            if k in starts:
                size = dims[k] * dims[k + 1]
                core = self._add_core(
                    f"{name}_{gate}",
                    (size, size),
                    "gate",
                    level,
                    fan_in=size,
                    fan_out=size,
                )
                blocks.append((size, size, core))
                k, gate = k + 2, gate + 1
            else:
                blocks.append((dims[k], dims[k], None))
                k += 1
        self.plan.append(("cycle", blocks))

    def _activation_param_specs(self):
        """`{act index: {param: weight name}}` of learnable activations."""
        specs = {}
        for stage in self.plan:
            if stage[0] != "end_level" or stage[2] is None:
                continue
            fn = self.activations[stage[2]]
            names = getattr(fn, "param_shapes", None) or {}
            if names:
                specs[stage[2]] = {p: f"act{stage[1]}_{p}" for p in names}
        return specs

    @property
    def num_params(self) -> int:
        """Trainable generator parameters (all groups)."""
        acts = sum(
            self.activations[i].param_shapes[p]
            for i, names in self._act_params.items()
            for p in names
        )
        return self.groups * (
            sum(math.prod(c.shape) for c in self.cores) + acts
        )

    def schedule(self) -> str:
        """A readable listing of the contraction schedule."""
        shapes = {c.name: c.shape for c in self.cores}
        lines = []
        for stage in self.plan:
            if stage[0] == "cycle":
                ops = [
                    f"{n}{shapes[n]}" if n else f"move({a})"
                    for a, _, n in stage[1]
                ]
                lines.append("cycle: " + " ".join(ops))
            elif stage[0] == "chain":
                lines.append(
                    "chain: " + " ".join(f"{n}{shapes[n]}" for n in stage[1])
                )
            elif stage[0] == "latent":
                lines.append(f"latent: {stage[1]}{shapes[stage[1]]}")
            else:
                act = stage[2]
                act = "linear" if act is None else self.activations[act]
                lines.append(f"end of level {stage[1]}: {act}")
        return "\n".join(lines)

    # -- execution ------------------------------------------------------------
    def _run(self, cores, xp, hook=None):
        g = self.groups
        state = None
        last = max(i for i, s in enumerate(self.plan) if s[0] == "end_level")
        for index, stage in enumerate(self.plan):
            kind = stage[0]
            if kind == "latent":
                state = xp.reshape(cores[stage[1]], (g, -1))
            elif kind == "chain":
                for k, name in enumerate(stage[1]):
                    b_in, q, b_out = self._shape(name)
                    core = xp.reshape(cores[name], (g, b_in, q * b_out))
                    if k == 0:
                        state = xp.reshape(core, (g, q, b_out))
                        continue
                    size = state.shape[1]
                    state = xp.reshape(
                        xp.matmul(state, core), (g, size * q, b_out)
                    )
                state = xp.reshape(state, (g, -1))
            elif kind == "cycle":
                for a, b, name in stage[1]:
                    rest = state.shape[1] // a
                    state = xp.reshape(state, (g, a, rest))
                    if name is None:
                        state = xp.transpose(state, (0, 2, 1))
                    else:
                        core = xp.reshape(cores[name], (g, a, b))
                        state = xp.lead_matmul(state, core)
                    state = xp.reshape(state, (g, rest * b))
            else:
                _, level, act = stage
                if hook is not None:
                    state = hook(level, index == last, state)
                if act is not None:
                    fn = self.activations[act]
                    if self._act_params.get(act):
                        fn = fn.bind(self._bind_params(act, cores, xp))
                    state = xp.activate(fn, state)
        return state

    def _bind_params(self, act, cores, xp):
        """A learnable activation's coefficients: from `cores` (the
        network's weights) or, where absent (calibration), initial ones."""
        initial = None
        params = {}
        for param, name in self._act_params[act].items():
            if name in cores:
                params[param] = cores[name]
                continue
            if initial is None:
                initial = self.activations[act].initial_params(self.groups)
            params[param] = xp.convert(initial[param])
        return params

    def _shape(self, name):
        for c in self.cores:
            if c.name == name:
                return c.shape
        raise KeyError(name)

    def generate(self, xp=None):
        """Runs the network; returns `(groups, radix**num_modes)` float32."""
        xp = KerasOps() if xp is None else xp
        cores = {name: xp.convert(v) for name, v in self._vars.items()}
        return self._run(cores, xp)

    # -- weights ------------------------------------------------------------
    def build(self, input_shape=None):
        values = self.initial_values()
        self._vars = {}
        for c in self.cores:
            value = values[c.name].astype("float32")
            self._vars[c.name] = self.add_weight(
                name=c.name,
                shape=value.shape,
                initializer=_constant(value),
                dtype="float32",
                autocast=False,
            )
        for act, names in self._act_params.items():
            initial = self.activations[act].initial_params(self.groups)
            for param, name in names.items():
                self._vars[name] = self.add_weight(
                    name=name,
                    shape=initial[param].shape,
                    initializer=_constant(initial[param]),
                    dtype="float32",
                    autocast=False,
                )
        self.built = True

    def initial_values(self):
        """Initial cores (SPEC §4), calibrated in NumPy; dict of arrays."""
        seed = self.seed
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        rng = np.random.default_rng(seed)
        gains = tn_init.level_gains(self)
        acts = tn_init.level_activations(self)
        for _ in range(MAX_DRAWS):
            values = {
                c.name: tn_init.draw_core(rng, c, self.groups, gains, acts)
                for c in self.cores
            }
            # A draw can be dead (e.g. ReLU with bond_dim 1 zeroes a whole
            # level): draw again from the same generator, deterministically.
            if tn_init.calibrate(self, values):
                break
        return values

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_modes": self.num_modes,
                "radix": self.radix,
                "bond_dim": self.bond_dim,
                "activation": tn_init.serialize_activations(self.activation),
                "groups": self.groups,
                "latent_order": self.latent_order,
                "depth": self.depth,
                "seed": self.seed,
                "target_std": self.target_std,
            }
        )
        return config


def _constant(value):
    def init(shape, dtype=None):
        return keras.ops.cast(value, dtype or "float32")

    return init


def numpy_ops(size):
    """A NumPy executor, float64 unless the tensor is large."""
    xp = NumpyOps()
    xp.dtype = np.float64 if size <= 2**22 else np.float32
    return xp
