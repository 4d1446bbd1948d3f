"""The products a TN layer takes from its generated kernel, and their path.

A layer never multiplies with a kernel itself: it asks its
`GeneratedKernel` for one of three products (`matmul` for `TNDense`,
`conv` for `TNConv2D`, `project` for the attention projections), and
`Product.path` decides, in this one function, how it is computed:

- `"schedule"`: inside an export's trace whose `DeviceContext` has a device
  schedule for the layer, the schedule computes the whole product;
- `"cached"`: inference calls of `execution="cached"` multiply with the
  cached kernel (`KernelCache`);
- `"factorized"`: the input is contracted with the cores and the kernel is
  never formed (`factorized.FactorizedExecution`), where nothing needs
  the formed kernel (`formed_reason`) and the cost model (or `execution=
  "factorized"`, or an export contracting on the device) says so;
- `"generated"`: the kernel is generated, then multiplied.

Why a kernel must be formed is answered once, by `formed_reason`: the
generator (nonlinear, flat mode order, a conv whose spatial digits end
inside a site...), its `kernel_constraint`, the reasons its layer handed
over at build (`kernel_regularizer`, a channels-first convolution...), and
int8 quantisation-aware training. The export's state is read here and
nowhere else (`device_context.current`).
"""

import contextlib
import math

from keras import ops

from keras_adntn import factorized
from keras_adntn.kernels import device_context

PATHS = ("schedule", "cached", "factorized", "generated")

QUANTIZATION_REASON = (
    "`kernel_quantization` rounds the formed kernel (set later, e.g. by "
    "`Model.quantize`, it switches the layer to forming it)"
)
CONSTRAINT_REASON = "`kernel_constraint` acts on the formed kernel"
REGULARIZER_REASON = "`kernel_regularizer` needs the formed kernel"


def spec_formed_reason(
    spec,
    kernel_constraint=None,
    kernel_regularizer=None,
    kernel_quantization=None,
    layer_reasons=(),
    built_reason=None,
):
    """Why a kernel made from `spec` with these arguments must be formed
    (a sentence), or None where its products can be taken from the cores.

    Args:
        spec: the `GeneratorSpec`.
        kernel_constraint, kernel_regularizer, kernel_quantization: the
            kernel's (each needs the formed kernel).
        layer_reasons: the sentences its layer handed over.
        built_reason: the built kernel's own reason (its network and
            shape: `FactorizedExecution.reason`), or None.
    """
    reasons = [
        factorized.class_reason(spec.network_class(), spec.mode_order),
        built_reason,
    ]
    if kernel_constraint is not None:
        reasons.append(CONSTRAINT_REASON)
    if kernel_regularizer is not None:
        reasons.append(REGULARIZER_REASON)
    reasons.extend(layer_reasons)
    if kernel_quantization is not None:
        reasons.append(QUANTIZATION_REASON)
    return next((r for r in reasons if r is not None), None)


def _rows(shape, bound=1) -> int:
    """Input rows of a product whose input has `shape` and whose last
    `bound` axes are contracted."""
    shape = tuple(shape)
    return factorized.rows_of(shape[: len(shape) - bound] + (None,))


class Product:
    """The products of one `GeneratedKernel` (see the module doc).

    Args:
        kernel: the `GeneratedKernel` (read when asked: it is built later).
    """

    def __init__(self, kernel):
        self.kernel = kernel
        self._shared = None

    # -- the one decision --------------------------------------------------
    def path(self, rows, training=None, context=None) -> str:
        """How a product with `rows` input rows is computed now: one of
        `PATHS` (`"schedule"` only inside an export's trace). Inside a
        `sharing` block, the block's first decision."""
        if self._shared is not None and "path" in self._shared:
            return self._shared["path"]
        path = self._decide(rows, training, context)
        if self._shared is not None:
            self._shared["path"] = path
        return path

    def _decide(self, rows, training, context) -> str:
        kernel = self.kernel
        if context is not None and context.product_of(kernel.owner()):
            return "schedule"
        if kernel.execution == "cached" and not training:
            return "cached"
        if kernel.formed_reason() is not None:
            return "generated"
        if context is not None:  # an export: contracted on the device?
            on_device = factorized.on_device(kernel.network)
            if context.read is not None and on_device:
                return "factorized"
            return "generated"
        if kernel.execution == "on_the_fly":
            return "generated"
        if kernel.execution == "factorized":
            return "factorized"
        wins = kernel.factorized_execution.wins(rows)
        return "factorized" if wins else "generated"

    # -- the three products ------------------------------------------------
    def matmul(self, inputs, training=None):
        """`inputs @ kernel`, `(..., rows)` -> `(..., columns)`."""
        context = device_context.current()
        path = self.path(_rows(inputs.shape), training, context)
        if path == "schedule":
            return context.product_of(self.kernel.owner())(inputs)
        dtype = self.kernel.product_dtype
        if path == "factorized":
            execution = self.kernel.factorized_execution
            y = execution.matmul(inputs, read=_read(context))
            return ops.cast(y, dtype)
        weight = self.formed(training, context)[self.kernel.key]
        return ops.matmul(inputs, ops.cast(weight, dtype))

    def conv(
        self, inputs, strides, padding, data_format, dilation_rate, training
    ):
        """A 2-D convolution of `inputs` with the kernel."""
        context = device_context.current()
        rows = _rows(inputs.shape)
        path = self.path(rows, training, context)
        if path == "schedule":
            return context.product_of(self.kernel.owner())(inputs)
        dtype = self.kernel.product_dtype
        if path == "factorized":
            execution = self.kernel.factorized_execution
            y = execution.conv(
                inputs, strides, padding, dilation_rate, read=_read(context)
            )
            return ops.cast(y, dtype)
        kernel = self.formed(training, context)[self.kernel.key]
        return ops.conv(
            inputs,
            ops.cast(kernel, dtype),
            strides=strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
        )

    def project(self, inputs, equation, part=None, training=None):
        """`einsum(equation, inputs, W)`, `W` the kernel or its part named
        `part` (an attention projection: the trailing axes of `inputs`
        that `equation` contracts are the leading axes of `W`)."""
        kernel = self.kernel
        name = kernel.key if part is None else part
        shape = kernel.part_shape(name)
        bound = _bound_axes(equation)
        context = device_context.current()
        path = self.path(_rows(inputs.shape, bound), training, context)
        dtype = kernel.product_dtype
        if path != "factorized":
            weight = self.formed(training, context)[name]
            return ops.einsum(equation, inputs, ops.cast(weight, dtype))
        lead = ops.shape(inputs)[: len(inputs.shape) - bound]
        flat = ops.reshape(
            inputs, (*lead, math.prod(inputs.shape[-bound:]))
        )
        execution = kernel.factorized_execution
        y = execution.matmul(flat, part=part, read=_read(context))
        return ops.reshape(ops.cast(y, dtype), (*lead, *shape[bound:]))

    # -- the formed kernels ------------------------------------------------
    def formed(self, training=None, context=None) -> dict:
        """`{name: float32 kernel}`: cached or generated now (with the
        export's executor inside a trace), once per `sharing` block; the
        `kernel_regularizer` penalty added as the kernel's loss."""
        if self._shared is not None and "formed" in self._shared:
            return self._shared["formed"]
        kernel = self.kernel
        if context is not None:
            made = kernel.generate(context.make_ops(), export=True)
        else:
            made = kernel.kernels(training)
        if kernel.kernel_regularizer is not None:
            for weight in made.values():
                kernel.add_loss(kernel.kernel_regularizer(weight))
        if self._shared is not None:
            self._shared["formed"] = made
        return made

    @contextlib.contextmanager
    def sharing(self, shape=None, training=None):
        """A block in which the path is decided once and the formed
        kernels are made once (a Python memo, cleared on exit: nothing
        leaks across traces; a nested block is part of the outer one).
        With the `shape` of the call's input, both happen on entry (so
        the kernels are made before the products that use them, in the
        order the blocks open)."""
        if self._shared is not None:
            yield
            return
        self._shared = {}
        try:
            if shape is not None:
                context = device_context.current()
                if self.path(_rows(shape), training, context) not in (
                    "schedule",
                    "factorized",
                ):
                    self.formed(training, context)
            yield
        finally:
            self._shared = None


def _read(context):
    """The constant reader of an export contracting on the device."""
    return None if context is None else context.read


def _bound_axes(equation: str) -> int:
    """How many leading axes of the kernel `equation` contracts."""
    inputs, output = equation.split("->")
    _, kernel = inputs.split(",")
    bound = 0
    for letter in kernel:
        if letter in output:
            break
        bound += 1
    return bound
