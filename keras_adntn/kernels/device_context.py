"""DeviceContext: what an export asks of the generated kernels it traces.

An export (`keras_adntn.export`) runs the very same layer code inside a
TensorFlow trace. What it changes is said once, in one frozen
`DeviceContext`, made current for the trace's block by `tracing(context)`:
the executor that writes each kernel's generation as on-device builtins,
the products its device schedules compute in the layers' place, and the
reader of the cores' values where inputs are contracted with constant
cores. This is the package's only context variable, and the kernels'
product (`kernels.products.Product`) is the only reader: a layer never
sees it.
"""

import contextlib
import contextvars
import dataclasses
from typing import Any
from typing import Callable


@dataclasses.dataclass(frozen=True)
class DeviceContext:
    """How the kernels of a model are computed inside an export's trace.

    Args:
        make_ops: returns the generation executor of one kernel (called
            once for every kernel generated: an executor may hold state,
            such as the anchor it adds to the first core it reads).
        products: `{id(layer): function of the layer's input}` for the
            layers whose whole product (`x @ kernel`, the convolution) a
            device schedule computes instead (e.g. a kernel made and
            consumed block by block); the function returns a float32
            tensor.
        read: None, or `variable -> np.ndarray` (its current value, read
            outside the trace): the export contracts inputs with the cores
            where it can (`mode="factorized"`), their block matrices made
            from these values as constants.
    """

    make_ops: Callable[[], Any]
    products: dict = dataclasses.field(default_factory=dict)
    read: Callable[[Any], Any] | None = None

    def product_of(self, layer):
        """The schedule's product function of `layer`, or None."""
        return None if layer is None else self.products.get(id(layer))


_CONTEXT = contextvars.ContextVar("adntn_device_context", default=None)


def current() -> DeviceContext | None:
    """The `DeviceContext` of the trace running now, or None."""
    return _CONTEXT.get()


@contextlib.contextmanager
def tracing(context: DeviceContext):
    """Makes `context` current inside the block (an export's trace)."""
    if not isinstance(context, DeviceContext):
        raise ValueError(
            f"`context` must be a DeviceContext, got {type(context).__name__}."
        )
    token = _CONTEXT.set(context)
    try:
        yield context
    finally:
        _CONTEXT.reset(token)
