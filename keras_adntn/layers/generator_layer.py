"""GeneratorLayer: what every TN layer shares, around its GeneratedKernels."""

import inspect

import keras
from keras import constraints
from keras import initializers
from keras import regularizers

from keras_adntn import factorized
from keras_adntn.kernels import calibration
from keras_adntn.kernels import kernel_quantization as kq
from keras_adntn.kernels.generated_kernel import GeneratedKernel
from keras_adntn.kernels.generator_spec import GeneratorSpec
from keras_adntn.kernels.kernel_cache import check_execution
from keras_adntn.kernels.products import spec_formed_reason
from keras_adntn.networks import base as network_base

GROWTH_NOISE = network_base.GROWTH_NOISE

# The arguments `GeneratorLayer.__init__` takes from every TN layer: the
# generator's (`GeneratorSpec.FIELDS`), then the kernel's and the bias's.
SHARED_ARGS = GeneratorSpec.FIELDS + (
    "kernel_initializer",
    "kernel_regularizer",
    "kernel_constraint",
    "bias_initializer",
    "bias_regularizer",
    "bias_constraint",
    "core_regularizer",
    "execution",
    "kernel_quantization",
)


def shared_args(arguments: dict) -> dict:
    """The `SHARED_ARGS` among a TN layer's `__init__` arguments
    (`locals()`), for `GeneratorLayer.__init__`."""
    return {name: arguments[name] for name in SHARED_ARGS}


class GeneratorLayer(keras.layers.Layer):
    """Base of `TNDense`, `TNConv2D` and `TNMultiHeadAttention`.

    It validates and stores the generator, kernel and bias arguments every
    TN layer takes (the generator's in one `GeneratorSpec`, readable as the
    layer's own attributes: `layer.network`, `layer.bond_dim`, ...), makes
    the layer's `GeneratedKernel`s in `build` (`_add_kernel`), and gives the
    layer `compression_ratio`, `active_params`, `grow`, `quantize`,
    `kernel_quantization` and their config. A subclass only wires its
    kernels to its computation and says how many parameters the Keras
    layer it replaces has (`dense_params`).

    Args:
        network: generator network (see `GeneratorSpec` for this and the
            next nine arguments).
        bond_dim: bond dimension.
        max_bond_dim: growth capacity, or None.
        radix: size of every tensor mode.
        latent_order: latent order of the tree networks, or None.
        depth: levels or gate layers, or None.
        generator_activation: activation between the generator's levels.
        generator_groups: independent generators along the output axis.
        mode_order: `"paired"` or `"flat"`.
        seed: seed of the cores, or None.
        generator_init: `"calibrated"` or `"orthogonal"` (MPO).
        kernel_initializer: the kernel's calibration target.
        kernel_regularizer: penalty on the generated kernel.
        kernel_constraint: constraint on the generated kernel.
        bias_initializer: initializer of the bias.
        bias_regularizer: regularizer of the bias.
        bias_constraint: constraint of the bias.
        core_regularizer: regularizer of every generator core.
        execution: `"auto"` (default), `"factorized"`, `"on_the_fly"` or
            `"cached"` (see `TNDense`).
        kernel_quantization: None or `"int8"`.
        **kwargs: base layer arguments.

    Call arguments:
        Those of the subclass.

    Returns:
        Those of the subclass.

    Example:

    >>> from keras_adntn import TNDense
    >>> isinstance(TNDense(8), GeneratorLayer)
    True
    """

    def __init__(
        self,
        network="ttn",
        bond_dim=2,
        max_bond_dim=None,
        radix=2,
        latent_order=None,
        depth=None,
        generator_activation="elu",
        generator_groups=1,
        mode_order="paired",
        seed=None,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        kernel_constraint=None,
        bias_initializer="zeros",
        bias_regularizer=None,
        bias_constraint=None,
        core_regularizer=None,
        execution="auto",
        kernel_quantization=None,
        generator_init="calibrated",
        **kwargs,
    ):
        if "groups" in kwargs:  # TNConv2D's `groups` is its own argument
            raise ValueError(
                f"{type(self).__name__} has no `groups`; the number of "
                "generator groups is `generator_groups`, got "
                f"groups={kwargs['groups']!r}."
            )
        super().__init__(**kwargs)
        self.generator_spec = GeneratorSpec(
            network=network,
            bond_dim=bond_dim,
            max_bond_dim=max_bond_dim,
            radix=radix,
            latent_order=latent_order,
            depth=depth,
            generator_activation=generator_activation,
            generator_groups=generator_groups,
            mode_order=mode_order,
            seed=seed,
            generator_init=generator_init,
        )
        self.kernel_initializer = calibration.get_kernel_initializer(
            kernel_initializer
        )
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_initializer = initializers.get(bias_initializer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.bias_constraint = constraints.get(bias_constraint)
        self.core_regularizer = regularizers.get(core_regularizer)
        self.execution = check_execution(execution)
        self._kernel_quantization = kq.check_kernel_quantization(
            kernel_quantization
        )
        if execution == "factorized":
            self._check_factorized()

    def _check_factorized(self):
        """`execution="factorized"` needs a kernel that is never formed:
        ValueError at construction where the arguments already say why
        (the built kernel checks the rest)."""
        reason = spec_formed_reason(
            self.generator_spec,
            kernel_constraint=self.kernel_constraint,
            kernel_regularizer=self.kernel_regularizer,
            kernel_quantization=self._kernel_quantization,
            layer_reasons=self._layer_reasons(),
        )
        if reason is not None:
            raise factorized.factorized_error(reason)

    def _layer_reasons(self) -> tuple:
        """Why this layer needs its kernels formed whatever their
        generator (sentences; none here), handed to each kernel at build.
        A subclass adds its own (a channels-first convolution...)."""
        return ()

    # -- the generator's arguments, read from the spec -------------------------
    network = property(lambda self: self.generator_spec.network)
    max_bond_dim = property(lambda self: self.generator_spec.max_bond_dim)
    radix = property(lambda self: self.generator_spec.radix)
    latent_order = property(lambda self: self.generator_spec.latent_order)
    depth = property(lambda self: self.generator_spec.depth)
    generator_activation = property(
        lambda self: self.generator_spec.generator_activation
    )
    generator_groups = property(
        lambda self: self.generator_spec.generator_groups
    )
    mode_order = property(lambda self: self.generator_spec.mode_order)
    seed = property(lambda self: self.generator_spec.seed)
    generator_init = property(lambda self: self.generator_spec.generator_init)

    @property
    def bond_dim(self) -> int:
        return self.generator_spec.bond_dim

    @bond_dim.setter
    def bond_dim(self, value):
        self.generator_spec.bond_dim = int(value)

    @property
    def kernel_quantization(self):
        """None or `"int8"`; setting it flips every kernel's int8 switch."""
        return self._kernel_quantization

    @kernel_quantization.setter
    def kernel_quantization(self, value):
        value = kq.check_kernel_quantization(value)
        self._kernel_quantization = value
        for kernel in self.generated_kernels:
            kernel.kernel_quantization = value

    # -- building the kernels --------------------------------------------------
    def _add_kernel(self, dims, *, name, seed_offset=0, **kwargs):
        """A built `GeneratedKernel` of `dims` with this layer's arguments
        (`kwargs`: `shape`, `fan_in`/`fan_out` or `target_std`, `parts`)."""
        kernel = GeneratedKernel(
            self.generator_spec.offset(seed_offset),
            dims,
            kernel_initializer=self.kernel_initializer,
            kernel_constraint=self.kernel_constraint,
            kernel_quantization=self._kernel_quantization,
            core_regularizer=self.core_regularizer,
            kernel_regularizer=self.kernel_regularizer,
            layer_reasons=self._layer_reasons(),
            execution=self.execution,
            name=name,
            **kwargs,
        )
        kernel.set_owner(self)
        kernel.build()
        # `trainable=False` given at construction reaches sublayers that
        # exist then; the kernels are made later, here
        kernel.trainable = self.trainable
        return kernel

    @property
    def generated_kernels(self) -> list:
        """The layer's `GeneratedKernel`s (empty before build)."""
        return [
            layer
            for layer in self._flatten_layers(
                include_self=False, recursive=False
            )
            if isinstance(layer, GeneratedKernel)
        ]

    @property
    def generators(self) -> list:
        """The generator networks of the layer's kernels."""
        return [kernel.network for kernel in self.generated_kernels]

    def _generate(self) -> dict:
        """`{name: generated float32 kernel}` of every kernel."""
        kernels = {}
        for kernel in self.generated_kernels:
            kernels.update(kernel.generate())
        return kernels

    # -- the one kernel of TNDense and TNConv2D --------------------------------
    def _single_kernel(self, what: str) -> GeneratedKernel:
        """The layer's one `GeneratedKernel` (`generated_kernel`), or
        AttributeError naming `what` was asked for."""
        name = type(self).__name__
        if not self.built:
            raise AttributeError(
                f"The {what} of a {name} exists once the layer is built."
            )
        kernel = getattr(self, "generated_kernel", None)
        if kernel is None:
            raise AttributeError(
                f"A {name} has several kernels, so no `{what}`; see "
                "`generated_kernels`."
            )
        return kernel

    @property
    def kernel(self):
        """The generated float32 kernel (regenerated on every access)."""
        return self._single_kernel("kernel").generate()["kernel"]

    @property
    def generator(self):
        """The generator network (`generated_kernel.network`)."""
        return self._single_kernel("generator").network

    @property
    def tensorization(self):
        """The kernel's tensorisation (`generated_kernel.tensorization`)."""
        return self._single_kernel("tensorization").tensorization

    def execution_paths(self, rows: int = 128, training: bool = True) -> dict:
        """Which path each generated kernel takes for `rows` input rows:
        `{kernel name: "factorized" | "generated" | "cached"}` (what
        `keras_adntn.summary` shows)."""
        return {
            kernel.name: kernel.execution_path((rows, None), training)
            for kernel in self.generated_kernels
        }

    def _add_bias(self, shape, name="bias"):
        return self.add_weight(
            name=name,
            shape=shape,
            initializer=self.bias_initializer,
            regularizer=self.bias_regularizer,
            constraint=self.bias_constraint,
        )

    # -- sizes, growth, quantisation -------------------------------------------
    @property
    def dense_params(self) -> int:
        """Parameters of the Keras layer this one replaces."""
        raise NotImplementedError

    @property
    def compression_ratio(self) -> float:
        """`dense_params / count_params()`."""
        return self.dense_params / self.count_params()

    @property
    def active_params(self) -> int:
        """`count_params()` without unused growth capacity (what the same
        layer without `max_bond_dim` would count)."""
        unused = sum(
            k.count_params() - k.active_params for k in self.generated_kernels
        )
        return self.count_params() - unused

    def sync_bond_dim(self) -> int:
        """Sets `bond_dim` from the generators' active bond variables
        (`set_weights` or loading may have changed them) and returns it."""
        dims = [k.sync_bond_dim() for k in self.generated_kernels]
        if dims and self.max_bond_dim is not None:
            self.bond_dim = max(dims)
        return self.bond_dim

    def grow(self, bond_dim: int, noise: float = GROWTH_NOISE) -> None:
        """Grows every generator to `bond_dim` keeping the kernels (SPEC §7).

        Only variable values change, so it is safe between epochs of a
        running `fit`; the config then records the new `bond_dim`.

        Raises:
            ValueError: without `max_bond_dim`, or if `bond_dim` is below
                the current bond dimension or above `max_bond_dim`.
        """
        self.sync_bond_dim()
        try:
            new = network_base.check_grow(
                bond_dim, self.bond_dim, self.max_bond_dim
            )
        except ValueError as error:
            raise ValueError(f"Layer {self.name!r}: {error}") from None
        if new == self.bond_dim:
            return
        for kernel in self.generated_kernels:
            kernel.grow(new, noise)
        self.bond_dim = new

    def quantize(self, mode=None, type_check=True, config=None):
        """Keras's quantisation API: `"int8"` sets
        `kernel_quantization="int8"` (every generated kernel is
        fake-quantised per output channel, weights only); other modes, or a
        custom weight quantizer, raise NotImplementedError (which
        `keras.Model.quantize` turns into a warning)."""
        if config is not None and mode is None:
            mode = getattr(config, "mode", None)
        name = f"{type(self).__name__} {self.name!r}"
        if mode != "int8":
            raise NotImplementedError(
                f"{name} supports only quantize('int8') (mapped to "
                f"kernel_quantization='int8'), got mode={mode!r}; the layer "
                "is left as it was. For a smaller deployed file use "
                "keras_adntn.export_litert(model, path, quantize='int8' or "
                "'float16')."
            )
        if getattr(config, "weight_quantizer", None) is not None:
            raise NotImplementedError(
                f"{name}: a custom `weight_quantizer` is not supported; TN "
                "layers round their generated kernel to int8 per output "
                "channel (quantize('int8') with the default config)."
            )
        self.kernel_quantization = "int8"

    @classmethod
    def from_config(cls, config):
        """A layer from `get_config`'s dict, also one saved by an older
        version: `groups` (where the layer has no such argument) was the
        name of `generator_groups`, and a tree's `latent_order=None` the
        default of 0.1.0 (`GeneratorSpec.upgrade_config`)."""
        config = dict(config)
        if "groups" in config and "groups" not in cls._own_args():
            config["generator_groups"] = config.pop("groups")
        return super().from_config(GeneratorSpec.upgrade_config(config))

    @classmethod
    def _own_args(cls) -> tuple:
        """The names of the arguments of `cls.__init__`."""
        return tuple(inspect.signature(cls.__init__).parameters)

    def get_config(self):
        config = super().get_config()
        config.update(self.generator_spec.get_config())
        config.update(
            {
                "kernel_initializer": initializers.serialize(
                    self.kernel_initializer
                ),
                "kernel_regularizer": regularizers.serialize(
                    self.kernel_regularizer
                ),
                "kernel_constraint": constraints.serialize(
                    self.kernel_constraint
                ),
                "bias_initializer": initializers.serialize(
                    self.bias_initializer
                ),
                "bias_regularizer": regularizers.serialize(
                    self.bias_regularizer
                ),
                "bias_constraint": constraints.serialize(self.bias_constraint),
                "core_regularizer": regularizers.serialize(
                    self.core_regularizer
                ),
                "execution": self.execution,
                "kernel_quantization": self._kernel_quantization,
            }
        )
        return config
