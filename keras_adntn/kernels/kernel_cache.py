"""KernelCache: the one place that decides cached vs on-the-fly kernels.

Every TN layer asks its `KernelCache` for its generated kernels. With
`execution="on_the_fly"` (and `"auto"` / `"factorized"` where they do
not contract the input with the cores) they are generated in every call.
With `execution="cached"` training calls still generate them (the gradient
must reach the cores), and inference calls reuse a copy kept in non-trainable
variables. The copy is tagged with the values of every variable it was
generated from; a call whose variables differ from the tag (after an
optimizer step, `set_weights`, `load_weights`, growth...) regenerates the
kernels first, inside the same call, so a stale kernel is never served.

The check and the refresh are graph operations (`ops.cond` on the
comparison), so they work inside compiled `predict`/`evaluate` functions on
every backend: on TensorFlow and PyTorch the refresh branch assigns the
cache; on JAX the cond returns the kernels and the assignment goes through
Keras's stateless state. The cache is working memory, not a weight: it is
not in `layer.weights`, so `count_params`, `get_weights`/`set_weights` and
`.keras`/`.weights.h5` files are the same in either mode.
"""

import keras
from keras import ops

EXECUTIONS = ("auto", "factorized", "on_the_fly", "cached")


def check_execution(execution):
    """Raises ValueError unless `execution` is one of `EXECUTIONS`."""
    if execution not in EXECUTIONS:
        raise ValueError(
            f"`execution` must be one of {EXECUTIONS}, got {execution!r}."
        )
    return execution


class KernelCache:
    """Inference cache of the generated kernels of one layer.

    Create it at the end of the layer's `build`, after every variable the
    kernels depend on exists (they are all the layer's variables at that
    moment).

    Args:
        layer: the TN layer being built (the cache becomes its state).
        shapes: dict `{name: shape}` of the float32 kernels `generate()`
            returns (the same keys).
        execution: `"auto"`, `"factorized"`, `"on_the_fly"` (no cache
            variables are created: every call generates, or contracts
            the input with the cores) or
            `"cached"`.
        extra_sources: state variables (not weights) the kernels also
            depend on (e.g. the int8 switch), compared like the weights.
    """

    def __init__(self, layer, shapes, execution, extra_sources=()):
        self.layer = layer
        self.execution = check_execution(execution)
        self.names = list(shapes)
        self.sources = []
        self.slots = {}
        self.tag = None
        if execution != "cached":
            return
        self.sources = list(layer.weights) + list(extra_sources)
        size = sum(_size(v.shape) for v in self.sources)
        for name, shape in shapes.items():
            self.slots[name] = state_variable(
                self.layer,
                f"{name}_cache",
                tuple(int(s) for s in shape),
                "zeros",
            )
        self.tag = state_variable(
            self.layer,
            f"{self.names[0]}_cache_tag",
            (size,),
            keras.initializers.Constant(float("nan")),
        )

    @property
    def variables(self) -> list:
        """The cache's own variables (empty on the fly)."""
        return [] if self.tag is None else [*self.slots.values(), self.tag]

    def fetch(self, generate, training=None) -> dict:
        """The kernels: `generate()` or the fresh cache, same dict keys."""
        # (an export never gets here: it generates with its own executor,
        # `products.Product.formed`, and decides itself what is stored)
        use_cache = self.tag is not None and (
            not training or not self.layer.trainable
        )
        if not use_cache:
            return generate()
        current = ops.concatenate([_flat(v) for v in self.sources])
        stale = ops.logical_not(ops.all(ops.equal(self.tag, current)))
        names = self.names

        def cached():
            return tuple(
                ops.convert_to_tensor(self.slots[n].value) for n in names
            )

        if keras.backend.backend() == "jax" and _traced(stale):
            kernels = ops.cond(
                stale, lambda: tuple(generate()[n] for n in names), cached
            )
            # Inside Keras's compiled predict/evaluate the cache variables
            # are threaded as state (their values are tracers too) and the
            # refresh is stored. Inside a user's own `jax.jit` they are not:
            # storing would leave a tracer in the variable for good, so the
            # kernels are only used, and the cache keeps its concrete value.
            if _traced(self.tag.value):
                self._store(kernels, current)
            return dict(zip(names, kernels))

        def refresh():
            kernels = tuple(generate()[n] for n in names)
            self._store(kernels, current)
            return kernels

        if keras.backend.backend() == "jax":  # eager: a plain branch
            return dict(zip(names, refresh() if stale else cached()))
        return dict(zip(names, ops.cond(stale, refresh, cached)))

    def invalidate(self) -> None:
        """Marks the cache stale (the generation itself changed, e.g. its
        `kernel_quantization`): the next inference call regenerates."""
        if self.tag is not None:
            self.tag.assign(ops.full(self.tag.shape, float("nan")))

    def _store(self, kernels, current):
        for name, kernel in zip(self.names, kernels):
            self.slots[name].assign(kernel)
        self.tag.assign(current)


def state_variable(layer, name, shape, initializer):
    """A non-trainable float32 variable that is layer *state*, not a weight.

    Like a `SeedGenerator`'s state it is in `layer.variables` (so the JAX
    trainer threads it through compiled steps and torch registers it) but
    not in `layer.weights`: `count_params`, `summary`, `get_weights` /
    `set_weights` and saved files never see it. Keras lists such state
    through `layer._seed_generators`, whose entries only need a `.state`
    attribute.
    """
    variable = keras.Variable(
        initializer,
        shape=shape,
        dtype="float32",
        trainable=False,
        autocast=False,
        name=name,
    )
    layer._seed_generators.append(_State(variable))
    return variable


def _flat(variable):
    """The variable's values as a float32 vector (few ops: this runs in
    every inference call)."""
    x = variable.value
    if keras.backend.standardize_dtype(x.dtype) != "float32":
        x = ops.cast(x, "float32")
    return x if len(x.shape) == 1 else ops.reshape(x, (-1,))


def _traced(x):
    """Whether `x` is a JAX tracer (inside `jit`), not a concrete array."""
    return any(c.__name__.endswith("Tracer") for c in type(x).__mro__)


class _State:
    """Holds a state variable the way a `SeedGenerator` does."""

    def __init__(self, state):
        self.state = state


def _size(shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n
