"""GeneratedKernel: a weight made by a tensor network instead of stored."""

import math
import weakref

import keras
import numpy as np
from keras import ops

from keras_adntn import factorized
from keras_adntn.factorized import FactorizedExecution
from keras_adntn.kernels import calibration
from keras_adntn.kernels import kernel_quantization as kq
from keras_adntn.kernels.generator_spec import GeneratorSpec
from keras_adntn.kernels.kernel_cache import KernelCache
from keras_adntn.kernels.kernel_cache import check_execution
from keras_adntn.kernels.kernel_cache import state_variable
from keras_adntn.kernels.products import Product
from keras_adntn.kernels.products import spec_formed_reason
from keras_adntn.networks import executors
from keras_adntn.networks import initialization as tn_init
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
        kernel_regularizer: None or a regularizer of the formed kernel
            (added as this object's loss each time a product forms it).
        layer_reasons: sentences saying why the owner layer needs the
            formed kernel (e.g. a channels-first convolution), handed over
            once, at build (see `products.spec_formed_reason`).
        execution: `"auto"`, `"factorized"`, `"on_the_fly"` or `"cached"`
            (see `TNDense`).
        **kwargs: base layer arguments (`name`, ...).

    Call arguments:
        Not called as a layer. A TN layer takes one of its products
        (`products.Product`, which decides how each is computed):
        `matmul(inputs, training)`, `conv(inputs, strides, padding,
        data_format, dilation_rate, training)` or `project(inputs,
        equation, part, training)`; `kernels(training=None)` returns the
        dict `{name: float32 kernel}` (`{key: ...}` without `parts`).

    Returns:
        The products: tensors in the owner layer's compute dtype;
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
        kernel_regularizer=None,
        layer_reasons=(),
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
        self.kernel_regularizer = kernel_regularizer
        self.layer_reasons = tuple(str(r) for r in layer_reasons)
        self.execution = check_execution(execution)
        self._owner_ref = None
        # (not tracked attributes: they hold the kernel itself)
        object.__setattr__(
            self, "factorized_execution", FactorizedExecution(self)
        )
        object.__setattr__(self, "_product", Product(self))

    # -- build -----------------------------------------------------------------
    def build(self, input_shape=None):
        spec = self.spec
        std = self.target_std
        if self.parts is not None and std is None:
            std = calibration.mixed_std(
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
            calibration.check_orthogonal(self)
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
                initializer=tn_init.constant(
                    calibration.part_scale(self)
                ),
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
            reason = self.formed_reason()
            if reason is not None:
                raise factorized.factorized_error(reason)

    def owner(self):
        """The TN layer this kernel belongs to, or None (a method: Keras's
        saving walks public attributes, and would walk back to it)."""
        return None if self._owner_ref is None else self._owner_ref()

    @property
    def product_dtype(self):
        """The dtype the products are returned in: the owner layer's
        compute dtype (the kernel's own without an owner)."""
        owner = self.owner()
        return self.compute_dtype if owner is None else owner.compute_dtype

    def set_owner(self, layer) -> None:
        """Records the TN layer this kernel belongs to (weakly): Keras's
        `Model.quantize` reaches the generator, which hands over to it."""
        self._owner_ref = weakref.ref(layer)
        if getattr(self, "network", None) is not None:
            self.network.set_owner(layer)

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

        `xp` is the executor (default `executors.KerasOps()`); `fixed`
        generates a slice (see `GeneratorNetwork.generate`), returned in
        leaf order.
        """
        xp = executors.KerasOps() if xp is None else xp
        if fixed is not None:
            return self.network.generate(xp, fixed=fixed)
        return self.tensorization.unfold(self.network.generate(xp), xp)

    def generate(self, xp=None, export: bool = False) -> dict:
        """The kernels, generated now (no cache): `{name: kernel}`.

        `xp`: the executor (see `blocks`). `export`: traced for an export,
        which takes the int8 rounding its `kernel_quantization` says now
        (no switch read in the graph)."""
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
        return {name: self._finish(k, export) for name, k in kernels.items()}

    def _finish(self, kernel, export):
        if self.kernel_constraint is not None:
            kernel = self.kernel_constraint(kernel)
        if export or not self.built:
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

    # -- the products (`products.Product`) -----------------------------------
    def matmul(self, inputs, training=None):
        """`inputs @ kernel` (see `products.Product.matmul`)."""
        return self._product.matmul(inputs, training)

    def conv(
        self,
        inputs,
        strides,
        padding,
        data_format="channels_last",
        dilation_rate=(1, 1),
        training=None,
    ):
        """A 2-D convolution with the kernel (`Product.conv`)."""
        return self._product.conv(
            inputs, strides, padding, data_format, dilation_rate, training
        )

    def project(self, inputs, equation, part=None, training=None):
        """`einsum(equation, inputs, kernel or part)` (`Product.project`)."""
        return self._product.project(inputs, equation, part, training)

    def sharing(self, shape=None, training=None):
        """A context manager: inside the block every product takes one
        path and the formed kernels are made once (e.g. the three
        projections of a joint kernel in one attention call); with the
        `shape` of the call's input, both are settled on entry (the
        kernels made first: `Product.sharing`)."""
        return self._product.sharing(shape, training)

    def formed_reason(self):
        """Why the products need the formed kernel (a sentence), or None
        where they can be taken from the cores (`products.
        spec_formed_reason`: the one answer)."""
        return spec_formed_reason(
            self.spec,
            kernel_constraint=self.kernel_constraint,
            kernel_regularizer=self.kernel_regularizer,
            kernel_quantization=self._kernel_quantization,
            layer_reasons=self.layer_reasons,
            built_reason=(
                self.factorized_execution.reason() if self.built else None
            ),
        )

    def execution_path(self, shape, training=None) -> str:
        """How a product with inputs of `shape` is computed outside an
        export: `"factorized"`, `"generated"` or `"cached"`."""
        rows = factorized.rows_of(shape)
        return self._product.path(rows, training)

    def part_shape(self, name) -> tuple:
        """The shape of the kernel (or part) returned under `name`."""
        if self.parts is None:
            return self.shape
        return next(tuple(p[3]) for p in self.parts if p[0] == name)

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
                "kernel_regularizer": keras.regularizers.serialize(
                    self.kernel_regularizer
                ),
                "layer_reasons": self.layer_reasons,
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
        for name in ("core_regularizer", "kernel_regularizer"):
            config[name] = keras.regularizers.get(config.get(name))
        return cls(**config)


def _merge(blocks, groups, shape):
    """`(G, *dims)` group blocks -> one kernel of `shape`, the groups side
    by side along the last axis of `dims`."""
    if groups > 1:
        n = len(blocks.shape)
        blocks = ops.transpose(blocks, (*range(1, n - 1), 0, n - 1))
    return ops.reshape(blocks, shape)
