"""GeneratorNetwork: the Keras layer holding a generator network's cores.

A network is built from a target size (`num_modes` modes of size `radix`)
and hyper-parameters; it knows nothing about Dense or Conv. Subclasses only
describe their topology by filling a `Plan` (`_make_plan`, see
`networks.plan`); `generate` walks it with `keras.ops` (`run_plan`), and
the same walk in NumPy initialises and calibrates the cores at build time
(SPEC §4, `networks.initialization`). With `max_bond_dim` set, the cores
are allocated for growth and masked to the active bond dimension (SPEC §7,
`networks.growth`).

The arguments are trusted: a TN layer validates them in its
`GeneratorSpec` (`kernels.generator_spec`).
"""

import math
import weakref

import keras
import numpy as np

from keras_adntn.networks import growth
from keras_adntn.networks import initialization as tn_init
from keras_adntn.networks.executors import KerasOps
from keras_adntn.networks.growth import ACTIVE_BOND
from keras_adntn.networks.growth import GROWTH_NOISE
from keras_adntn.networks.growth import check_grow
from keras_adntn.networks.growth import check_max_bond_dim
from keras_adntn.networks.initialization import check_initialization
from keras_adntn.networks.plan import Plan
from keras_adntn.networks.run_plan import run_plan


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
        self.plan = Plan(self.num_modes, self.radix, self.groups)
        self._make_plan()
        self.plan.set_activations(activation)

    # -- topology, filled by subclasses -------------------------------------
    @property
    def allocated_bond_dim(self) -> int:
        """The bond dimension the cores are allocated at (`_make_plan`)."""
        return self.bond_dim if self.max_bond_dim is None else self.max_bond_dim

    def _make_plan(self):
        """Fills `self.plan` (`add_core`, `add_gate_layer`, `add_stage`)."""
        raise NotImplementedError

    @property
    def cores(self) -> list:
        """The `CoreSpec`s of the plan, in creation order."""
        return self.plan.cores

    @property
    def activations(self) -> list:
        """One activation callable per activation index of the plan."""
        return self.plan.activations

    @property
    def num_params(self) -> int:
        """Trainable generator parameters (all groups).

        With `max_bond_dim` set: the allocated ones (at `max_bond_dim`);
        `active_params` counts those in use.
        """
        return self.plan.num_params

    @property
    def active_params(self) -> int:
        """Trainable generator parameters in use at the current `bond_dim`
        (all groups): `num_params` of the same network without growth
        capacity. Equals `num_params` when `max_bond_dim` is None."""
        if self.max_bond_dim is None:
            return self.num_params
        unused = sum(math.prod(c.shape) for c in self.cores)
        unused -= growth.active_entries(self.cores, self.bond_dim)
        return self.num_params - self.groups * unused

    def schedule(self) -> str:
        """A readable listing of the contraction schedule."""
        return self.plan.schedule()

    def mode_trace(self):
        """The plan's `ModeTrace` (see `Plan.mode_trace`)."""
        return self.plan.mode_trace()

    def sliced_peak(self, leaves) -> int:
        """Largest state of a run with `leaves` fixed (see
        `Plan.sliced_peak`)."""
        return self.plan.sliced_peak(leaves)

    # -- execution ------------------------------------------------------------
    def _run(self, cores, xp, hook=None, fixed=None):
        """`run_plan(self.plan, cores, xp, fixed, hook)`."""
        return run_plan(self.plan, cores, xp, fixed=fixed, hook=hook)

    def generate(self, xp=None, fixed=None):
        """Runs the network; returns `(groups, radix**num_modes)` float32.

        `fixed` (`{leaf position: scalar index}`) generates the slice at
        those leaf values only: `(groups, radix**(num_modes - len(fixed)))`
        (see `run_plan`).
        """
        xp = KerasOps() if xp is None else xp
        return run_plan(self.plan, self.active_cores(xp), xp, fixed=fixed)

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
            self._thresholds = growth.mask_thresholds(self.cores)
            self._active = self.add_weight(
                name=ACTIVE_BOND,
                shape=(),
                initializer=tn_init.constant(np.float32(self.bond_dim)),
                dtype="float32",
                trainable=False,
                autocast=False,
            )
        for c in self.cores:
            value = values[c.name].astype("float32")
            self._vars[c.name] = self.add_weight(
                name=c.name,
                shape=value.shape,
                initializer=tn_init.constant(value),
                dtype="float32",
                autocast=False,
            )
        for act, names in self.plan.act_params.items():
            initial = self.activations[act].initial_params(self.groups)
            for param, name in names.items():
                self._vars[name] = self.add_weight(
                    name=name,
                    shape=initial[param].shape,
                    initializer=tn_init.constant(initial[param]),
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
        return tn_init.initial_values(self)

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
            out[big.name] = growth.embed(values[big.name], spec, big)
        return out

    # -- growth (SPEC §7, `networks.growth`) --------------------------------
    def grow(self, bond_dim: int, noise: float = GROWTH_NOISE) -> None:
        """Raises the active bond dimension to `bond_dim`, in place.

        Only variable values change (the cores are allocated at
        `max_bond_dim`), so compiled train functions and the optimizer's
        state stay valid. The newly active entries are set so that the
        generated tensor does not change while gradients reach them (see
        `growth.grown_values`).

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
        seed = self.seed
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        grown = growth.grown_values(
            self.plan, values, self._thresholds, old, new, noise, seed
        )
        for name, value in grown.items():
            self._vars[name].assign(value.astype("float32"))
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
