"""GeneratedKernel: a weight made by a tensor network instead of stored."""

import math
import weakref

import keras
import numpy as np
from keras import ops

from keras_adntn.kernels import calibration
from keras_adntn.kernels import kernel_quantization as kq
from keras_adntn.kernels.generator_spec import GeneratorSpec
from keras_adntn.kernels.kernel_cache import KernelCache
from keras_adntn.kernels.kernel_cache import check_execution
from keras_adntn.kernels.kernel_cache import state_variable
from keras_adntn.networks import executors
from keras_adntn.networks import factorized
from keras_adntn.tensorize import Tensorization


class GeneratedKernel(keras.layers.Layer):
    """One generated weight (or a few made jointly) of a TN layer.

    It owns everything between the generator's cores and the kernel a layer
    multiplies with: the tensorisation of `dims`, the generator network
    (built from a `GeneratorSpec`, calibrated at build to the std of the
    layer's `kernel_initializer`), the `generator_groups` layout along the
    last axis, the `kernel_constraint`, int8 fake quantisation, the
    inference cache (`execution`), growth and the parameter counts. A TN
    layer creates its generated kernels in `build` and multiplies with
    `kernels(training)`; it holds no generator logic itself.

    Args:
        spec: the `GeneratorSpec` (network, bond, radix, groups, seed...).
        dims: the tensorised shape; the last axis is the output axis, split
            into `spec.generator_groups` blocks (one generator each).
        shape: the shape the kernel is returned in (default: `dims`), same
            number of entries.
        fan_in, fan_out: fans of the kernel for the calibration target
            (`kernel_initializer`'s std), or
        target_std: that std given directly.
        key: the name the kernel is returned under (default `"kernel"`;
            without `parts`).
        parts: None, or a list of `(name, rows, cols, shape, fan_in,
            fan_out)`: the columns of `dims` hold several kernels made by
            one generator (joint generation, e.g. `[Wq, Wk, Wv]`). Part `p`
            is the leading `rows` rows of its `cols` columns (in each group
            its `cols / groups` block); a fixed, non-trainable `(groups,
            len(parts))` weight `part_scale`, set at build, gives each its
            own calibrated std.
        kernel_initializer: a Keras initializer checked by
            `calibration.get_kernel_initializer` (default glorot_uniform).
        kernel_constraint: None or a constraint applied to every kernel
            each time it is generated.
        kernel_quantization: None or `"int8"` (per output channel fake
            quantisation; setting it later flips a state switch that compiled
            functions and the cache tag read).
        core_regularizer: None or a regularizer of every core.
        execution: `"on_the_fly"` or `"cached"` (see `KernelCache`).
        **kwargs: base layer arguments (`name`, ...).

    Call arguments:
        Not called as a layer: `kernels(training=None)` returns the dict
        `{name: float32 kernel}` (`{key: ...}` without `parts`).

    Returns:
        `kernels()`: float32 tensors of `shape` (or of each part's shape).

    Example:

    >>> spec = GeneratorSpec("ttn", bond_dim=2, seed=0)
    >>> gk = GeneratedKernel(spec, (64, 32), fan_in=64, fan_out=32)
    >>> gk.build()
    >>> tuple(gk.kernels()["kernel"].shape)
    (64, 32)
    """

    def __init__(
        self,
        spec: GeneratorSpec,
        dims,
        shape=None,
        fan_in=None,
        fan_out=None,
        target_std=None,
        key="kernel",
        parts=None,
        kernel_initializer="glorot_uniform",
        kernel_constraint=None,
        kernel_quantization=None,
        core_regularizer=None,
        execution="on_the_fly",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(spec, GeneratorSpec):
            raise ValueError(
                f"`spec` must be a GeneratorSpec, got {type(spec).__name__}."
            )
        self.spec = spec
        self.dims = tuple(int(d) for d in dims)
        g = spec.generator_groups
        self.shape = tuple(
            int(d) for d in (shape or self.dims[:-1] + (self.dims[-1] * g,))
        )
        self.key = str(key)
        self.parts = None if parts is None else [tuple(p) for p in parts]
        if self.parts is not None and len(self.dims) != 2:
            raise ValueError(
                f"`parts` needs 2-D `dims` (rows, columns), got {self.dims}."
            )
        if self.parts is None and math.prod(self.shape) != math.prod(
            self.dims[:-1] + (self.dims[-1] * g,)
        ):
            raise ValueError(
                f"`shape` {self.shape} must have as many entries as `dims` "
                f"{self.dims} with {g} generator groups."
            )
        self.fan_in = fan_in
        self.fan_out = fan_out
        self.target_std = target_std
        self.kernel_initializer = calibration.get_kernel_initializer(
            kernel_initializer
        )
        self.kernel_constraint = kernel_constraint
        self._kernel_quantization = kq.check_kernel_quantization(
            kernel_quantization
        )
        self.core_regularizer = core_regularizer
        self.execution = check_execution(execution)
        self._owner_ref = None

    # -- build -----------------------------------------------------------------
    def build(self, input_shape=None):
        spec = self.spec
        std = self.target_std
        if self.parts is not None and std is None:
            std = _mixed_std(
                [(p[4], p[5], p[2]) for p in self.parts],
                self.kernel_initializer,
            )
        if std is None:
            std = calibration.kernel_std(
                self.kernel_initializer, self.fan_in, self.fan_out
            )
        self.tensorization = Tensorization(
            self.dims, spec.radix, spec.mode_order
        )
        if spec.generator_init == "orthogonal":
            self._check_orthogonal()
        self.network = spec.network_class()(
            num_modes=self.tensorization.num_modes,
            radix=spec.radix,
            bond_dim=spec.bond_dim,
            activation=spec.generator_activation,
            groups=spec.generator_groups,
            latent_order=spec.latent_order,
            depth=spec.depth,
            seed=spec.seed,
            target_std=std,
            valid_mask=self.tensorization.valid_mask(),
            max_bond_dim=spec.max_bond_dim,
            initialization=spec.generator_init,
            output_leaves=self.tensorization.output_leaves(),
            name=spec.network,
        )
        self.network.build()
        if self._owner_ref is not None:
            self.network.set_owner(self._owner_ref())
        if self.core_regularizer is not None:
            for variable in self.network.trainable_variables:
                variable.regularizer = self.core_regularizer
        if self.parts is not None:
            self.part_scale = self.add_weight(
                name="part_scale",
                shape=(spec.generator_groups, len(self.parts)),
                initializer=_constant(self._initial_part_scale()),
                trainable=False,
                autocast=False,
            )
        shapes = (
            {self.key: self.shape}
            if self.parts is None
            else {p[0]: tuple(p[3]) for p in self.parts}
        )
        # The int8 switch is state read by the compiled functions, so that
        # setting `kernel_quantization` after a `predict` or `fit` takes
        # effect there too (a Python attribute would be frozen into them).
        # (not a tracked attribute: it is state, not a weight)
        object.__setattr__(
            self,
            "_int8",
            state_variable(
                self,
                "int8_switch",
                (),
                _constant(np.float32(self._kernel_quantization == "int8")),
            ),
        )
        self._cache = KernelCache(
            self, shapes, self.execution, extra_sources=[self._int8]
        )
        self.built = True
        if self.execution == "factorized":
            reason = self.factorized_reason()
            if reason is not None:
                raise factorized_error(reason)

    def _check_orthogonal(self):
        """`generator_init="orthogonal"` is exact only where the kernel is
        the whole Kronecker product: nothing cropped, not sliced in parts."""
        if self.parts is not None:
            raise ValueError(
                "`generator_init='orthogonal'` does not apply to a kernel "
                "made jointly with others (`parts`, e.g. the joint query / "
                "key / value kernel): slicing a Kronecker product does not "
                "keep it orthogonal. Use generator_init='calibrated', or "
                "separate kernels (TNMultiHeadAttention: joint_qkv=False)."
            )
        if self.tensorization.padding_overhead > 0:
            raise ValueError(
                "`generator_init='orthogonal'` needs every axis of the "
                f"kernel to be a power of `radix` ({self.spec.radix}), got "
                f"{self.dims}: cropping the padding of a Kronecker product "
                "leaves it far from orthogonal (rank deficient). Use "
                "generator_init='calibrated', or sizes that are powers of "
                "the radix."
            )

    def set_owner(self, layer) -> None:
        """Records the TN layer this kernel belongs to (weakly): Keras's
        `Model.quantize` reaches the generator, which hands over to it."""
        self._owner_ref = weakref.ref(layer)
        if getattr(self, "network", None) is not None:
            self.network.set_owner(layer)

    def _initial_part_scale(self):
        """`(groups, parts)` factors giving each part its own std."""
        xp = executors.NumpyOps()
        cores = {
            name: xp.convert(ops.convert_to_numpy(v))
            for name, v in self.network._vars.items()
        }
        blocks = self.tensorization.unfold(self.network._run(cores, xp), xp)
        g = self.spec.generator_groups
        scale = np.ones((g, len(self.parts)))
        start = 0
        for i, (_, rows, cols, _, fan_in, fan_out) in enumerate(self.parts):
            part = blocks[:, :rows, start : start + cols // g]
            start += cols // g
            std = part.reshape(g, -1).std(axis=1)
            wanted = calibration.kernel_std(
                self.kernel_initializer, fan_in, fan_out
            )
            ok = np.isfinite(std) & (std > 0)
            scale[:, i] = np.where(ok, wanted / np.where(ok, std, 1.0), 1.0)
        return scale.astype("float32")

    # -- the kernels -----------------------------------------------------------
    @property
    def kernel_quantization(self):
        return self._kernel_quantization

    @kernel_quantization.setter
    def kernel_quantization(self, value):
        value = kq.check_kernel_quantization(value)
        self._kernel_quantization = value
        if self.built:
            self._int8.assign(np.float32(value == "int8"))

    def blocks(self, xp=None, fixed=None):
        """The generator's raw `(groups, *dims)` float32 output.

        `xp` is the executor (default `executors.default_ops()`: keras.ops
        unless an export chose another); `fixed` generates a slice (see
        `GeneratorNetwork.generate`), returned in leaf order.
        """
        xp = executors.default_ops() if xp is None else xp
        if fixed is not None:
            return self.network.generate(xp, fixed=fixed)
        return self.tensorization.unfold(self.network.generate(xp), xp)

    def generate(self, xp=None) -> dict:
        """The kernels, generated now (no cache): `{name: kernel}`."""
        blocks = self.blocks(xp)
        g = self.spec.generator_groups
        if self.parts is None:
            kernels = {self.key: _merge(blocks, g, self.shape)}
        else:
            scale = ops.cast(self.part_scale, blocks.dtype)
            kernels, start = {}, 0
            for i, (name, rows, cols, shape, _, _) in enumerate(self.parts):
                part = ops.slice(blocks, (0, 0, start), (g, rows, cols // g))
                factor = ops.reshape(
                    ops.slice(scale, (0, i), (g, 1)), (g, 1, 1)
                )
                kernels[name] = _merge(ops.multiply(part, factor), g, shape)
                start += cols // g
        return {name: self._finish(k) for name, k in kernels.items()}

    def _finish(self, kernel):
        if self.kernel_constraint is not None:
            kernel = self.kernel_constraint(kernel)
        if executors.generation_ops_active() or not self.built:
            # an export traces the mode it is given, nothing else
            return kq.fake_quantize(kernel, self._kernel_quantization)
        return ops.cond(
            ops.greater(self._int8, 0.5),
            lambda: kq.fake_quantize(kernel, "int8"),
            lambda: kernel,
        )

    def kernels(self, training=None) -> dict:
        """The kernels a call multiplies with (cached or generated)."""
        return self._cache.fetch(self.generate, training)

    # -- factorized execution --------------------------------------------------
    def factorized_reason(self):
        """Why `x @ kernel` cannot be taken from the cores without forming
        the kernel (a sentence), or None where it can."""
        reason = spec_factorized_reason(self.spec)
        if reason is not None:
            return reason
        if len(self.dims) not in (2, 4):
            return (
                f"a kernel of rank {len(self.dims)} is neither a matrix nor "
                "a 2-D convolution"
            )
        if len(self.dims) == 4 and self._spatial_sites() is None:
            return (
                f"the kernel's spatial digits ({self._spatial_leaves()} "
                "leaves) end inside an MPO site, so the spatial and channel "
                "factors do not separate (an odd number of spatial digits, "
                "e.g. kernel_size (3, 1))"
            )
        if self.kernel_constraint is not None:
            return "`kernel_constraint` acts on the formed kernel"
        return None

    def _spatial_leaves(self) -> int:
        """Leaves of a conv kernel's spatial digits (they come first)."""
        return sum(self.tensorization.digits[:-2])

    def _spatial_sites(self):
        """The MPO sites holding exactly a conv kernel's spatial digits
        (None where a site mixes spatial and channel digits)."""
        return self.network.lead_sites(self._spatial_leaves())

    def factorized_plan(self, rows=None, in_dim=None):
        """The `networks.factorized.FactorizedPlan` for `rows` input rows
        of `in_dim` features (default: the kernel's rows); for a conv
        kernel, the plan of its channel sites (input channels to output
        channels, with the bond to the spatial sites). One per pair,
        computed once."""
        plans = self.__dict__.setdefault("_plans", {})
        in_dim = self.dims[-2] if in_dim is None else int(in_dim)
        key = (128 if rows is None else int(rows), in_dim)
        if key not in plans:
            first = 0 if len(self.dims) == 2 else len(self._spatial_sites())
            plans[key] = self.network.factorized_plan(
                in_dim, self.dims[-1], rows=key[0], first_site=first
            )
        return plans[key]

    def _factorized_wins(self, rows) -> bool:
        """The cost model: contracting beats generating for `rows`
        input rows (pixels, for a conv kernel)."""
        plan = self.factorized_plan(rows)
        if len(self.dims) == 2:
            return plan.factorized_seconds(rows) < plan.generated_seconds(
                rows
            )
        # conv: channel sites per pixel, then a depthwise conv over
        # (groups, out channels, bond) with the spatial factor; against
        # generating the kernel and a conv (im2col-sized matmul)
        taps = math.prod(self.dims[:-2])
        g, out = self.spec.generator_groups, self.dims[-1]
        fac = plan.factorized_seconds(rows) + factorized.move_seconds(
            rows * g * out * plan.lead_bond * taps
        )
        whole = self.network.factorized_plan(
            math.prod(self.dims[:-1]), out, rows=rows
        )
        return fac < whole.generated_seconds(rows)

    def execution_path(self, shape, training=None) -> str:
        """Which path a call with inputs of `shape` takes: `"factorized"`
        (the input contracted with the cores), `"generated"` (the kernel
        made, then multiplied) or `"cached"` (the cached kernel)."""
        if self.execution == "cached" and not training:
            return "cached"
        if (
            self.factorized_reason() is not None
            # int8 QAT rounds the formed kernel: decided when a function
            # is traced (no branch that XLA would allocate and partition)
            or self._kernel_quantization is not None
        ):
            return "generated"
        if executors.generation_ops_active():  # an export trace decides
            if executors.device_contraction_active():
                return "factorized"
            return "generated"
        if self.execution == "on_the_fly":
            return "generated"
        if self.execution == "factorized":
            return "factorized"
        rows = factorized.rows_of(tuple(shape))
        return "factorized" if self._factorized_wins(rows) else "generated"

    def factorized_matmul(self, x, part=None):
        """`x @ kernel` (float32, `(..., rows)` -> `(..., columns)`) taken
        from the cores: the kernel is never formed. `part`: the name of a
        part of a joint kernel (its rows and columns only). Not with
        `kernel_quantization="int8"` (QAT rounds the formed kernel:
        `execution_path` then says `"generated"`)."""
        x = ops.cast(x, "float32")
        rank = len(x.shape)
        in_dim = int(x.shape[-1])
        plan = self.factorized_plan(
            factorized.rows_of(tuple(x.shape)), in_dim
        )
        flat = x if rank == 2 else ops.reshape(x, (-1, in_dim))
        name = self.key if part is None else part
        g = self.spec.generator_groups
        xp = factorized.KerasFactorOps()
        _, matrices = self._block_matrices(plan)
        y = plan.apply(flat, matrices, xp)
        if self.parts is not None:
            start, i, cols = self._part_columns(name)
            y = ops.reshape(y, (-1, g, self.dims[1]))
            y = y[:, :, start : start + cols // g]
            scale = ops.cast(self.part_scale, "float32")[:, i]
            y = ops.multiply(y, ops.reshape(scale, (1, g, 1)))
            y = ops.reshape(y, (-1, cols))
        if rank == 2:
            return y
        lead = ops.shape(x)[:-1]
        return ops.reshape(y, (*lead, y.shape[-1]))

    def factorized_conv(self, x, strides, padding, dilation_rate):
        """A channels-last 2-D convolution of `x` (float32, `(batch, h, w,
        c_in)`) with the kernel, taken from the cores: the channel sites
        map every pixel to `(groups, filters, a)` (`a`: the bond to the
        spatial sites), then a depthwise convolution with the spatial
        factor `(kh, kw, a)` and a sum over `a`. The kernel is never
        formed."""
        x = ops.cast(x, "float32")
        kh, kw, c_in, out = self.dims
        g = self.spec.generator_groups
        rows = factorized.rows_of(tuple(x.shape))
        plan = self.factorized_plan(rows, c_in)
        a = plan.lead_bond
        xp = factorized.KerasFactorOps()
        cores, matrices = self._block_matrices(plan)
        lead = ops.shape(x)[:3]
        z = plan.apply(ops.reshape(x, (-1, c_in)), matrices, xp)
        z = ops.reshape(z, (*lead, g * out * a))
        # the spatial factor: (G, P_kh * P_kw, a), cropped to (kh, kw)
        spatial = None
        for name in self._spatial_sites():
            core = cores[name]
            _, b_in, q, b_out = core.shape
            if spatial is None:
                spatial = ops.reshape(core, (g, q, b_out))
                continue
            spatial = ops.matmul(spatial, ops.reshape(core, (g, b_in, -1)))
            spatial = ops.reshape(spatial, (g, -1, b_out))
        p_kh, p_kw = self.tensorization.padded[:2]
        spatial = ops.reshape(spatial, (g, p_kh, p_kw, a))[:, :kh, :kw, :]
        spatial = ops.transpose(spatial, (1, 2, 0, 3))
        depthwise = ops.reshape(spatial, (kh, kw, g, 1, a))
        depthwise = ops.multiply(
            depthwise, ops.ones((1, 1, 1, out, 1), "float32")
        )
        depthwise = ops.reshape(depthwise, (kh, kw, g * out * a, 1))
        y = ops.depthwise_conv(
            z,
            depthwise,
            strides=strides,
            padding=padding,
            data_format="channels_last",
            dilation_rate=dilation_rate,
        )
        y = ops.reshape(y, (*ops.shape(y)[:3], g * out, a))
        return ops.sum(y, axis=-1)

    def _block_matrices(self, plan):
        """`(cores, plan's block matrices)`: tensors of the variables, or,
        inside an export's `device_contraction`, float32 constants of
        their current values (what the device stores)."""
        if not executors.device_contraction_active():
            cores = self.network.active_cores()
            xp = factorized.KerasFactorOps()
            return cores, plan.block_matrices(cores, xp)
        cores = self.network.active_cores(executors.constant_cores_ops())
        matrices = plan.block_matrices(cores, factorized.NumpyFactorOps())
        cores = {k: np.asarray(v, "float32") for k, v in cores.items()}
        return cores, [ops.convert_to_tensor(np.float32(m)) for m in matrices]

    def _part_columns(self, name):
        """`(start column within a group, index, columns)` of a part."""
        start = 0
        g = self.spec.generator_groups
        for i, p in enumerate(self.parts):
            if p[0] == name:
                return start, i, p[2]
            start += p[2] // g
        raise KeyError(name)

    # -- size and growth -------------------------------------------------------
    @property
    def dense_size(self) -> int:
        """Entries of the stored kernel(s) this object replaces."""
        if self.parts is None:
            return math.prod(self.shape)
        return sum(math.prod(p[3]) for p in self.parts)

    @property
    def active_params(self) -> int:
        """`count_params()` without growth capacity the bond does not
        use."""
        unused = self.network.count_params() - self.network.active_params
        return self.count_params() - unused

    def sync_bond_dim(self) -> int:
        """The generator's active bond dimension (from its variable)."""
        return self.network.sync_bond_dim()

    def grow(self, bond_dim: int, noise: float) -> None:
        """Grows the generator to `bond_dim` keeping the kernel."""
        # the cache sees the grown cores through its tag (no invalidation)
        self.network.grow(bond_dim, noise)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "spec": self.spec.get_config(),
                "dims": self.dims,
                "shape": self.shape,
                "fan_in": self.fan_in,
                "fan_out": self.fan_out,
                "target_std": self.target_std,
                "key": self.key,
                "parts": self.parts,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "kernel_constraint": keras.constraints.serialize(
                    self.kernel_constraint
                ),
                "kernel_quantization": self._kernel_quantization,
                "core_regularizer": keras.regularizers.serialize(
                    self.core_regularizer
                ),
                "execution": self.execution,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["spec"] = GeneratorSpec.from_config(config["spec"])
        config["kernel_constraint"] = keras.constraints.get(
            config.get("kernel_constraint")
        )
        config["core_regularizer"] = keras.regularizers.get(
            config.get("core_regularizer")
        )
        return cls(**config)


def spec_factorized_reason(spec: GeneratorSpec):
    """Why no kernel made from `spec` can be contracted with an input
    without forming it (a sentence), or None."""
    if not spec.network_class().factorizable:
        return (
            f"network={spec.network!r} is nonlinear in its cores, so its "
            "kernel must be formed; only network='mpo' contracts the input "
            "with the cores"
        )
    if spec.mode_order != "paired":
        return (
            "mode_order='flat' mixes the kernel's input and output digits; "
            "use mode_order='paired'"
        )
    return None


def factorized_error(reason: str) -> ValueError:
    """The error of `execution="factorized"` where `reason` holds."""
    return ValueError(
        "`execution='factorized'` contracts the input with the generator's "
        f"cores and never forms the kernel, but {reason}. Use "
        "execution='auto' (it forms the kernel where it must) or "
        "'on_the_fly'."
    )


def _merge(blocks, groups, shape):
    """`(G, *dims)` group blocks -> one kernel of `shape`, the groups side
    by side along the last axis of `dims`."""
    if groups > 1:
        n = len(blocks.shape)
        blocks = ops.transpose(blocks, (*range(1, n - 1), 0, n - 1))
    return ops.reshape(blocks, shape)


def _mixed_std(parts, initializer):
    """RMS of the stds `initializer` gives the `(fan_in, fan_out, weight)`
    parts."""
    stds = {
        (a, b): calibration.kernel_std(initializer, a, b) for a, b, _ in parts
    }
    if len(stds) == 1:
        return stds.popitem()[1]
    total = sum(w for _, _, w in parts)
    var = sum(w * stds[(a, b)] ** 2 for a, b, w in parts) / total
    return math.sqrt(var)


def _constant(value):
    def init(shape, dtype=None):
        return ops.cast(value, dtype or "float32")

    return init
