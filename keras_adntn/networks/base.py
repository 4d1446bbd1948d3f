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

Growth (SPEC §7): with `max_bond_dim` set, the cores are allocated at the
shapes of bond dimension `max_bond_dim` and a non-trainable scalar
`active_bond_dim` selects the leading blocks that are used; every core is
multiplied by its 0/1 mask (entry active iff each of its bond-leg indices
is below the active bond) before the contractions, so inactive entries get
no gradient. `grow` raises the active bond by assigning values only (no
shape changes), keeping the generated tensor unchanged.
"""

import math
import weakref
from dataclasses import dataclass

import keras
import numpy as np

from keras_adntn.networks import initialization as tn_init
from keras_adntn.networks.executors import KerasOps
from keras_adntn.networks.executors import NumpyOps

MAX_DRAWS = 64
GROWTH_NOISE = 1e-2
ACTIVE_BOND = "active_bond_dim"


@dataclass
class CoreSpec:
    """One trainable core: its shape (without the group axis) and role."""

    name: str
    shape: tuple
    kind: str  # "latent", "hidden", "readout" or "gate"
    level: int
    fan_in: int
    fan_out: int
    # Per axis of `shape`, the `(size, grows)` factors it flattens (row
    # major): `grows` marks a bond leg, whose size follows the bond
    # dimension. Empty: no axis grows.
    legs: tuple = ()

    def thresholds(self) -> tuple:
        """`(inputs, outputs)`: int arrays of `shape`, the smallest bond
        dimension at which an entry is active, from the input legs (axis
        0, except for the latent) and from the output legs (1: always)."""
        inputs = np.ones(self.shape, dtype=np.int64)
        outputs = np.ones(self.shape, dtype=np.int64)
        for axis, factors in enumerate(self.legs):
            target = outputs if axis or self.kind == "latent" else inputs
            sizes = [size for size, _ in factors]
            for f, (size, grows) in enumerate(factors):
                if not grows:
                    continue
                index = np.arange(1, size + 1).reshape(
                    [size if i == f else 1 for i in range(len(sizes))]
                )
                index = np.broadcast_to(index, sizes).reshape(-1)
                index = index.reshape(
                    [-1 if i == axis else 1 for i in range(len(self.shape))]
                )
                np.maximum(target, index, out=target)
        return inputs, outputs


@dataclass(frozen=True)
class ModeTrace:
    """The modes a plan creates (`GeneratorNetwork.mode_trace`).

    Attributes:
        sizes: size of every mode, by id.
        stages: per plan stage, one `(consumed ids, produced ids)` per
            contraction (cycle block or chain core; none for the others).
        leaves: the id of the mode at every leaf position of the output.
        latent: the ids of the latent tensor's modes (empty: no latent).
    """

    sizes: tuple
    stages: list
    leaves: tuple
    latent: tuple = ()


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
        max_bond_dim: None (no growth), or the bond dimension the cores are
            allocated at (int >= `bond_dim`), so that `grow` can raise the
            active bond dimension up to it without changing any shape.
        initialization: `"calibrated"` (SPEC §4, every network) or
            `"orthogonal"` (a network with `has_orthogonal_init`: the MPO
            starts as a Kronecker product of orthogonal factors).
        output_leaves: None, or one bool per mode: True where the leaf is
            a digit of the kernel's output axis (what `"orthogonal"` pairs
            input digits with; None: input and output digits alternate).

    Returns (`generate()`): a float32 tensor `(groups, radix**num_modes)`
    in leaf order.
    """

    uses_latent_order = False
    uses_depth = False
    # whether `initialization="orthogonal"` applies (`_orthogonal_cores`)
    has_orthogonal_init = False
    # whether `x @ W` can be taken from the cores without forming `W`
    # (a linear network with `factorized_plan`)
    factorizable = False

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
        max_bond_dim=None,
        initialization="calibrated",
        output_leaves=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.initialization = check_initialization(initialization, type(self))
        if output_leaves is not None:
            output_leaves = tuple(bool(b) for b in output_leaves)
            if len(output_leaves) != int(num_modes):
                raise ValueError(
                    f"`output_leaves` needs one entry per mode "
                    f"({num_modes}), got {len(output_leaves)}."
                )
        self.output_leaves = output_leaves
        self.num_modes = int(num_modes)
        self.radix = int(radix)
        self.bond_dim = int(bond_dim)
        self.max_bond_dim = check_max_bond_dim(max_bond_dim, self.bond_dim)
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
    @property
    def allocated_bond_dim(self) -> int:
        """The bond dimension the cores are allocated at (`_make_plan`)."""
        return self.bond_dim if self.max_bond_dim is None else self.max_bond_dim

    def _make_plan(self):
        raise NotImplementedError

    def _add_core(
        self, name, shape, kind, level, fan_in=None, fan_out=None, legs=None
    ):
        """Adds a core; `legs` (see `CoreSpec.legs`) marks its bond legs."""
        shape = tuple(int(s) for s in shape)
        fan_in = shape[0] if fan_in is None else fan_in
        fan_out = math.prod(shape[1:]) if fan_out is None else fan_out
        legs = tuple(
            tuple((int(size), bool(grows)) for size, grows in factors)
            for factors in (legs or ())
        )
        if legs and [math.prod(s for s, _ in f) for f in legs] != list(shape):
            raise ValueError(f"legs {legs} do not match shape {shape}.")
        self.cores.append(
            CoreSpec(name, shape, kind, level, fan_in, fan_out, legs)
        )
        return name

    def _add_gate_layer(self, dims, pairs, level, name, grows=None):
        """Appends a cycle applying gates to disjoint neighbour `pairs`.

        `grows[k]`: whether mode `k` is a bond leg (default: none is).
        """
        grows = [False] * len(dims) if grows is None else list(grows)
        starts = {a: b for a, b in pairs}
        blocks, k, gate = [], 0, 0
        while k < len(dims):
            if k in starts:
                size = dims[k] * dims[k + 1]
                leg = ((dims[k], grows[k]), (dims[k + 1], grows[k + 1]))
                core = self._add_core(
                    f"{name}_{gate}",
                    (size, size),
                    "gate",
                    level,
                    fan_in=size,
                    fan_out=size,
                    legs=(leg, leg),
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
        """Trainable generator parameters (all groups).

        With `max_bond_dim` set: the allocated ones (at `max_bond_dim`);
        `active_params` counts those in use.
        """
        return self.groups * (
            sum(math.prod(c.shape) for c in self.cores) + self._num_act()
        )

    @property
    def active_params(self) -> int:
        """Trainable generator parameters in use at the current `bond_dim`
        (all groups): `num_params` of the same network without growth
        capacity. Equals `num_params` when `max_bond_dim` is None."""
        if self.max_bond_dim is None:
            return self.num_params
        used = 0
        for c in self.cores:
            inputs, outputs = c.thresholds()
            used += int(np.sum(np.maximum(inputs, outputs) <= self.bond_dim))
        return self.groups * (used + self._num_act())

    def _num_act(self):
        return sum(
            self.activations[i].param_shapes[p]
            for i, names in self._act_params.items()
            for p in names
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
    def _run(self, cores, xp, hook=None, fixed=None):
        """Walks the plan with executor `xp`.

        `fixed` (`{leaf position: index}`, the index a scalar of `xp`)
        generates only the slice of the tensor at those leaf values: the
        core that produces each fixed leaf last is sliced at its index
        (the contractions after it only move that mode, and activations
        are elementwise, so slicing there is exact), and the fixed modes
        have size 1 in the result. This is how an export generates a
        kernel block by block.
        """
        g = self.groups
        state = None
        last = max(i for i, s in enumerate(self.plan) if s[0] == "end_level")
        trace = self.mode_trace() if fixed else None
        fixed_ids = (
            {trace.leaves[leaf]: index for leaf, index in fixed.items()}
            if fixed
            else {}
        )

        def size(mode):
            return 1 if mode in fixed_ids else trace.sizes[mode]

        def sliced(core, a, produced, tail=1):
            """`core` `(g, a, prod(sizes of produced) * tail)` at the fixed
            indices of the modes it produces."""
            sizes = [trace.sizes[m] for m in produced]
            for j in reversed(range(len(produced))):
                if produced[j] not in fixed_ids:
                    continue
                before = math.prod(sizes[:j])
                after = math.prod(sizes[j + 1 :]) * tail
                core = xp.reshape(core, (g * a * before, sizes[j], after))
                core = xp.take(core, fixed_ids[produced[j]], axis=1)
                sizes[j] = 1
            return xp.reshape(core, (g, a, math.prod(sizes) * tail))

        for index, stage in enumerate(self.plan):
            kind = stage[0]
            steps = trace.stages[index] if trace else None
            if kind == "latent":
                state = xp.reshape(cores[stage[1]], (g, -1))
            elif kind == "chain":
                for k, name in enumerate(stage[1]):
                    b_in, q, b_out = self._shape(name)
                    core = xp.reshape(cores[name], (g, b_in, q * b_out))
                    if steps and any(m in fixed_ids for m in steps[k][1]):
                        core = sliced(core, b_in, steps[k][1], tail=b_out)
                        q = math.prod(size(m) for m in steps[k][1])
                    if k == 0:
                        state = xp.reshape(core, (g, q, b_out))
                        continue
                    rows = state.shape[1]
                    state = xp.reshape(
                        xp.matmul(state, core), (g, rows * q, b_out)
                    )
                state = xp.reshape(state, (g, -1))
            elif kind == "cycle":
                for k, (a, b, name) in enumerate(stage[1]):
                    core = None if name is None else cores[name]
                    if steps:
                        consumed, produced = steps[k]
                        a = math.prod(size(m) for m in consumed)
                        if name is not None and any(
                            m in fixed_ids for m in produced
                        ):
                            core = sliced(
                                xp.reshape(core, (g, a, b)), a, produced
                            )
                        b = math.prod(size(m) for m in produced)
                    rest = state.shape[1] // a
                    state = xp.reshape(state, (g, a, rest))
                    if name is None:
                        state = xp.transpose(state, (0, 2, 1))
                    else:
                        core = xp.reshape(core, (g, a, b))
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

    def sliced_peak(self, leaves) -> int:
        """Largest state (entries, all groups) of a run with `leaves`
        fixed (`generate(fixed=...)`): what a block of the tiled export
        holds at its widest."""
        trace = self.mode_trace()
        fixed = {trace.leaves[leaf] for leaf in leaves}
        modes, peak = [], 0

        def entries(ids):
            return math.prod(1 if m in fixed else trace.sizes[m] for m in ids)

        for stage, steps in zip(self.plan, trace.stages):
            if stage[0] == "latent":
                modes = list(trace.latent)
            for consumed, produced in steps:
                if stage[0] == "chain":
                    modes = modes + list(produced)
                else:
                    modes = modes[len(consumed) :] + list(produced)
                peak = max(peak, entries(modes))
            peak = max(peak, entries(modes))
        return self.groups * peak

    def mode_trace(self) -> "ModeTrace":
        """Which modes every contraction of the plan consumes and produces.

        Modes get ids in the order they appear; the trace maps each leaf
        position of the generated tensor to the id of the mode that ends
        there, and each step to `(consumed ids, produced ids)`. A move
        (`name=None`) produces the mode it consumes.
        """
        if getattr(self, "_mode_trace", None) is not None:
            return self._mode_trace
        sizes, stages, modes, latent = [], [], [], ()

        def new(size):
            sizes.append(int(size))
            return len(sizes) - 1

        for stage in self.plan:
            kind = stage[0]
            steps = []
            if kind == "latent":
                modes = [new(d) for d in self._shape(stage[1])]
                latent = tuple(modes)
            elif kind == "chain":
                modes = []
                for name in stage[1]:
                    _, q, _ = self._shape(name)
                    leaves = round(math.log(q, self.radix))
                    produced = [new(self.radix) for _ in range(leaves)]
                    steps.append(((), tuple(produced)))
                    modes += produced
            elif kind == "cycle":
                for a, b, name in stage[1]:
                    consumed, product = [], 1
                    while product < a:
                        product *= sizes[modes[len(consumed)]]
                        consumed.append(modes[len(consumed)])
                    if product != a:  # pragma: no cover - plan invariant
                        raise RuntimeError("a block does not consume modes.")
                    modes = modes[len(consumed) :]
                    if name is None:
                        produced = consumed
                    else:
                        spec = self._spec(name)
                        if len(spec.shape) == 2 and spec.legs:  # gates
                            outs = [size for size, _ in spec.legs[1]]
                        else:  # expansions: (in, *out modes)
                            outs = list(spec.shape[1:])
                        produced = [new(size) for size in outs]
                    steps.append((tuple(consumed), tuple(produced)))
                    modes = modes + produced
            stages.append(steps)
        if [sizes[m] for m in modes] != [self.radix] * self.num_modes:
            raise RuntimeError(  # pragma: no cover - plan invariant
                f"the plan of {type(self).__name__} does not end in "
                f"{self.num_modes} modes of size {self.radix}."
            )
        self._mode_trace = ModeTrace(tuple(sizes), stages, tuple(modes), latent)
        return self._mode_trace

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

    def _spec(self, name):
        for c in self.cores:
            if c.name == name:
                return c
        raise KeyError(name)

    def _shape(self, name):
        return self._spec(name).shape

    def generate(self, xp=None, fixed=None):
        """Runs the network; returns `(groups, radix**num_modes)` float32.

        `fixed` (`{leaf position: scalar index}`) generates the slice at
        those leaf values only: `(groups, radix**(num_modes - len(fixed)))`
        (see `_run`).
        """
        xp = KerasOps() if xp is None else xp
        return self._run(self.active_cores(xp), xp, fixed=fixed)

    def active_cores(self, xp=None) -> dict:
        """`{name: core}` converted by `xp`, masked to the active bond
        dimension (growth): what the contractions use."""
        xp = KerasOps() if xp is None else xp
        cores = {name: xp.convert(v) for name, v in self._vars.items()}
        if self.max_bond_dim is not None:
            cores = self._masked(cores, xp)
        return cores

    def _masked(self, cores, xp):
        """`cores` times their 0/1 masks at the active bond dimension.

        The executor's `mask` primitive does it (an executor without one
        falls back to `KerasOps.mask`); the active bond is read after the
        cores, so an executor that treats its first read specially (the
        LiteRT export's anchor) still sees a core first.
        """
        active = xp.convert(self._active)
        mask = getattr(xp, "mask", KerasOps.mask)
        for name, threshold in self._thresholds.items():
            cores[name] = mask(cores[name], threshold, active)
        return cores

    # -- weights ------------------------------------------------------------
    # -- Keras quantisation API -------------------------------------------
    def set_owner(self, layer) -> None:
        """Records the TN layer this generator belongs to (a weak
        reference, not a tracked attribute)."""
        object.__setattr__(self, "_owner_ref", weakref.ref(layer))

    def quantize(self, mode=None, type_check=True, config=None):
        """Hands `quantize` over to the TN layer that owns the generator.

        `keras.Model.quantize` calls `quantize` on leaf layers only, and
        the generator is the leaf of a TN layer: without this, Keras would
        warn that the generator "does not have a quantize method" and
        leave the TN layer as it was.
        """
        ref = getattr(self, "_owner_ref", None)
        owner = None if ref is None else ref()
        if owner is None:
            raise NotImplementedError(
                f"The generator network {self.name!r} "
                f"({type(self).__name__}) is quantised through the TN layer "
                "that owns it: call quantize('int8') on that layer or on "
                "the model."
            )
        owner.quantize(mode, type_check=type_check, config=config)

    def build(self, input_shape=None):
        values = self.initial_values()
        self._vars = {}
        self._thresholds = {}
        if self.max_bond_dim is not None:
            for c in self.cores:
                threshold = np.maximum(*c.thresholds())
                if threshold.max() > 1:
                    self._thresholds[c.name] = threshold.astype("float32")
            self._active = self.add_weight(
                name=ACTIVE_BOND,
                shape=(),
                initializer=_constant(np.float32(self.bond_dim)),
                dtype="float32",
                trainable=False,
                autocast=False,
            )
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
        """Initial cores (SPEC §4), calibrated in NumPy; dict of arrays.

        With `max_bond_dim` set: the cores the same network without growth
        capacity would have (same seed, same calibration), embedded as the
        leading blocks of zero cores of the allocated shapes.
        """
        if self.max_bond_dim is not None:
            return self._embedded_initial_values()
        seed = self.seed
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        rng = np.random.default_rng(seed)
        gains = tn_init.level_gains(self)
        acts = tn_init.level_activations(self)
        values, alive = None, None
        for _ in range(MAX_DRAWS):
            draw = {
                c.name: tn_init.draw_core(rng, c, self.groups, gains, acts)
                for c in self.cores
            }
            if self.initialization == "orthogonal":
                draw = self._orthogonal_cores(rng, draw)
            if values is None:
                values = draw
            else:
                for name, value in values.items():
                    value[~alive] = draw[name][~alive]
            # A group's draw can be dead (e.g. ReLU with bond_dim 1 zeroes a
            # whole level): its cores are drawn again from the same
            # generator, deterministically; live groups are kept.
            alive = tn_init.calibrate(self, values)
            if alive.all():
                break
        return values

    def _active_network(self):
        """This network at the current bond dimension, without growth."""
        return type(self)(
            num_modes=self.num_modes,
            radix=self.radix,
            bond_dim=self.bond_dim,
            activation=self.activation,
            groups=self.groups,
            latent_order=self.latent_order,
            depth=self.depth,
            seed=self.seed,
            target_std=self.target_std,
            valid_mask=self.valid_mask,
            initialization=self.initialization,
            output_leaves=self.output_leaves,
            name=f"{self.name}_active",
        )

    def _orthogonal_cores(self, rng, draw: dict) -> dict:
        """The cores of `initialization="orthogonal"` (a subclass with
        `has_orthogonal_init`), replacing the drawn ones."""
        raise NotImplementedError

    def leaf_roles(self) -> tuple:
        """Per leaf, True where it is a digit of the kernel's output axis:
        `output_leaves`, or (None) the paired order of a square matrix,
        input and output digits alternating."""
        if self.output_leaves is not None:
            return self.output_leaves
        return tuple(bool(k % 2) for k in range(self.num_modes))

    def _embedded_initial_values(self):
        small = self._active_network()
        values = small.initial_values()
        out = {}
        for big, spec in zip(self.cores, small.cores):
            if big.name != spec.name:  # pragma: no cover - plan invariant
                raise RuntimeError("growth changed the network topology.")
            out[big.name] = _embed(values[big.name], spec, big)
        return out

    # -- growth (SPEC §7) -----------------------------------------------------
    def grow(self, bond_dim: int, noise: float = GROWTH_NOISE) -> None:
        """Raises the active bond dimension to `bond_dim`, in place.

        Only variable values change (the cores are allocated at
        `max_bond_dim`), so compiled train functions and the optimizer's
        state stay valid. The newly active entries are set so that the
        generated tensor does not change while gradients reach them: for
        a bond whose new channel is zero after its level's activation
        (act(0) == 0, or no activation), the entries producing the channel
        are 0 and those consuming it are random; otherwise the producers
        are random and the consumers 0. New diagonal entries of a
        disentangler are 1 (the identity on the new channels). "Random"
        is `noise` times the RMS of the core's active entries times
        N(0, 1), per group.

        Args:
            bond_dim: the new bond dimension, between the current one and
                `max_bond_dim`.
            noise: relative scale of the random new entries.

        Raises:
            ValueError: without `max_bond_dim`, or if `bond_dim` is
                smaller than the current bond dimension or larger than
                `max_bond_dim`.
        """
        self.sync_bond_dim()
        new = check_grow(bond_dim, self.bond_dim, self.max_bond_dim)
        old = self.bond_dim
        if new == old:
            return
        if not self.built:
            self.bond_dim = new
            return
        values = {
            name: np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float64)
            for name, v in self._vars.items()
        }
        zero = self._zero_channel_levels(values)
        seed = self.seed
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        rng = np.random.default_rng([int(seed), old, new])
        g = self.groups
        for spec in self.cores:
            if spec.name not in self._thresholds:
                continue
            inputs, outputs = spec.thresholds()
            both = np.maximum(inputs, outputs)
            fresh = (both > old) & (both <= new)
            if not fresh.any():
                continue
            value = values[spec.name]
            used = (both <= old).reshape(1, -1)
            flat = value.reshape(g, -1)
            rms = np.sqrt(
                np.sum(np.square(flat) * used, axis=1) / max(used.sum(), 1)
            )
            rms = np.where(rms > 0, rms, 1.0).reshape(
                (g,) + (1,) * len(spec.shape)
            )
            random = noise * rms * rng.standard_normal(value.shape)
            produces = fresh & (outputs > old)
            consumes = fresh & ~produces
            in_level = spec.level if spec.kind == "gate" else spec.level - 1
            new_value = np.where(
                produces, 0.0 if zero[spec.level] else random, value
            )
            new_value = np.where(
                consumes, random if zero.get(in_level, True) else 0.0, new_value
            )
            if spec.kind == "gate":
                diagonal = np.eye(spec.shape[0], dtype=bool) & fresh
                new_value = np.where(diagonal, 1.0, new_value)
            values[spec.name] = new_value
            self._vars[spec.name].assign(new_value.astype("float32"))
        self._active.assign(np.float32(new))
        self.bond_dim = new

    def sync_bond_dim(self) -> int:
        """Sets `bond_dim` from the `active_bond_dim` variable (the one
        generation uses; `set_weights` or loading weights may have changed
        it) and returns it."""
        if self.built and self.max_bond_dim is not None:
            value = np.asarray(keras.ops.convert_to_numpy(self._active))
            self.bond_dim = int(round(float(value)))
        return self.bond_dim

    def load_own_variables(self, store):
        super().load_own_variables(store)
        self.sync_bond_dim()

    def _zero_channel_levels(self, values):
        """`{level: whether a zero pre-activation stays zero}` (act(0) == 0,
        evaluated with the current coefficients of learnable ones)."""
        xp = NumpyOps()
        zero = {}
        for stage in self.plan:
            if stage[0] != "end_level":
                continue
            _, level, act = stage
            if act is None:
                zero[level] = True
                continue
            fn = self.activations[act]
            if self._act_params.get(act):
                fn = fn.bind(self._bind_params(act, values, xp))
            out = xp.activate(fn, np.zeros((self.groups, 1)))
            zero[level] = bool(np.all(np.abs(np.asarray(out)) < 1e-12))
        return zero

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_modes": self.num_modes,
                "radix": self.radix,
                "bond_dim": self.bond_dim,
                "max_bond_dim": self.max_bond_dim,
                "activation": tn_init.serialize_activations(self.activation),
                "groups": self.groups,
                "latent_order": self.latent_order,
                "depth": self.depth,
                "seed": self.seed,
                "target_std": self.target_std,
                "initialization": self.initialization,
                "output_leaves": None
                if self.output_leaves is None
                else list(self.output_leaves),
            }
        )
        return config


INITIALIZATIONS = ("calibrated", "orthogonal")


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


def check_max_bond_dim(max_bond_dim, bond_dim: int):
    """Validates `max_bond_dim` (None, or an int >= `bond_dim`)."""
    if max_bond_dim is None:
        return None
    if (
        isinstance(max_bond_dim, bool)
        or not hasattr(max_bond_dim, "__index__")
        or int(max_bond_dim) < int(bond_dim)
    ):
        raise ValueError(
            f"`max_bond_dim` must be None or an int >= `bond_dim` "
            f"({bond_dim}), got {max_bond_dim!r}."
        )
    return int(max_bond_dim)


def check_grow(bond_dim, current: int, max_bond_dim) -> int:
    """Validates the target of a growth; returns it as an int."""
    if max_bond_dim is None:
        raise ValueError(
            "`grow` needs growth capacity: build the layer with "
            "`max_bond_dim` (>= the largest bond dimension to grow to)."
        )
    if (
        isinstance(bond_dim, bool)
        or not hasattr(bond_dim, "__index__")
        or not current <= int(bond_dim) <= max_bond_dim
    ):
        raise ValueError(
            f"`bond_dim` to grow to must be an int between the current bond "
            f"dimension ({current}) and `max_bond_dim` ({max_bond_dim}), got "
            f"{bond_dim!r}."
        )
    return int(bond_dim)


def _embed(value, small, big):
    """`value` (cores of spec `small`) as the leading blocks of zero cores
    of spec `big`, factor by factor (flattened gate legs included)."""
    g = value.shape[0]

    def factors(spec):
        if not spec.legs:
            return [(s,) for s in spec.shape]
        return [tuple(s for s, _ in f) for f in spec.legs]

    small_f, big_f = factors(small), factors(big)
    small_sizes = [s for f in small_f for s in f]
    big_sizes = [s for f in big_f for s in f]
    out = np.zeros((g, *big_sizes), dtype=value.dtype)
    index = (slice(None),) + tuple(slice(0, s) for s in small_sizes)
    out[index] = value.reshape(g, *small_sizes)
    return out.reshape(g, *big.shape)


def _constant(value):
    def init(shape, dtype=None):
        return keras.ops.cast(value, dtype or "float32")

    return init
