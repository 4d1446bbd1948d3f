"""GeneratedKernel: a weight made by a tensor network instead of stored."""

import math
import weakref

import keras
import numpy as np
from keras import ops

from keras_adntn.kernels import calibration
from keras_adntn.kernels import kernel_products
from keras_adntn.kernels import kernel_quantization as kq
from keras_adntn.kernels.factorized_execution import FactorizedExecution
from keras_adntn.kernels.generator_spec import GeneratorSpec
from keras_adntn.kernels.kernel_cache import KernelCache
from keras_adntn.kernels.kernel_cache import check_execution
from keras_adntn.kernels.kernel_cache import state_variable
from keras_adntn.networks import executors
from keras_adntn.networks import initialization as tn_init
from keras_adntn.networks.run_plan import run_plan
from keras_adntn.tensorize import Tensorization


class GeneratedKernel(keras.layers.Layer):
    """One generated weight (or a few made jointly) of a TN layer.

    It owns everything between the generator's cores and the kernel a layer
    multiplies with: the tensorisation of `dims`, the generator network
    (built from a `GeneratorSpec`, calibrated at build to the std of the
    layer's `kernel_initializer`), the `generator_groups` layout along the
    last axis, the `kernel_constraint`, int8 fake quantisation, the
    inference cache (`execution`; its factorized path is
    `FactorizedExecution`), growth and the parameter counts. A TN
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
        # (not a tracked attribute: it holds the kernel itself)
        object.__setattr__(self, "_factorized", FactorizedExecution(self))

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
                initializer=tn_init.constant(self._initial_part_scale()),
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
                tn_init.constant(
                    np.float32(self._kernel_quantization == "int8")
                ),
            ),
        )
        self._cache = KernelCache(
            self, shapes, self.execution, extra_sources=[self._int8]
        )
        self.built = True
        if self.execution == "factorized":
            self._factorized.check()

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
        blocks = run_plan(self.network.plan, cores, xp)
        blocks = self.tensorization.unfold(blocks, xp)
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
        """The kernels a call multiplies with (cached or generated; inside
        `sharing()`, those the block's first call made)."""
        return kernel_products.shared_kernels(self, training)

    # -- products (provisional: replaced at merge) --
    def sharing(self):
        """Generate once: inside `with kernel.sharing():` every `project`
        or `kernels()` call reuses what the block's first call made."""
        return kernel_products.sharing(self)

    def project(self, inputs, equation: str, part=None, training=None):
        """`einsum(equation, inputs, W)` in the owner's compute dtype (`W`:
        the kernel, or its part `part`; see `kernel_products.project`)."""
        return kernel_products.project(self, inputs, equation, part, training)

    # -- factorized execution (`FactorizedExecution`) --------------------------
    def factorized_reason(self):
        """Why `x @ kernel` cannot be taken from the cores without forming
        the kernel (a sentence), or None where it can."""
        return self._factorized.reason()

    def factorized_plan(self, rows=None, in_dim=None):
        """The `FactorizedPlan` for `rows` input rows of `in_dim`
        features (see `FactorizedExecution.plan`)."""
        return self._factorized.plan(rows, in_dim)

    def execution_path(self, shape, training=None) -> str:
        """Which path a call with inputs of `shape` takes: `"factorized"`,
        `"generated"` or `"cached"` (see `FactorizedExecution.path`)."""
        return self._factorized.path(shape, training)

    def factorized_matmul(self, x, part=None):
        """`x @ kernel` taken from the cores, the kernel never formed (see
        `FactorizedExecution.matmul`)."""
        return self._factorized.matmul(x, part)

    def factorized_conv(self, x, strides, padding, dilation_rate):
        """A 2-D convolution with the kernel taken from the cores, the
        kernel never formed (see `FactorizedExecution.conv`)."""
        return self._factorized.conv(x, strides, padding, dilation_rate)

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
