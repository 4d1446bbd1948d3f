"""The products of a `GeneratedKernel` (provisional: replaced at merge).

`GeneratedKernel.project` and `GeneratedKernel.sharing` delegate here: an
implementation on top of today's internals (the owner layer's
`_kernel_path` and `_regularize`, `factorized_matmul`, `kernels`), with
the signatures the merged kernel API keeps.
"""

import contextlib
import math

from keras import ops


def shared_kernels(kernel, training=None) -> dict:
    """`kernel.kernels(training)`: cached or generated, or inside
    `sharing()` the kernels the block's first call made."""
    shared = getattr(kernel, "_shared", None)
    if shared is not None and "kernels" in shared:
        return shared["kernels"]
    made = kernel._cache.fetch(kernel.generate, training)
    if shared is not None:
        shared["kernels"] = made
    return made


@contextlib.contextmanager
def sharing(kernel):
    """Generate once: inside the block every `project` / `kernels()` call
    of `kernel` reuses the path and kernels of the block's first call (a
    Python attribute memo, cleared on exit: nothing leaks across traces).
    A nested block is part of the outer one."""
    if getattr(kernel, "_shared", None) is not None:
        yield
        return
    object.__setattr__(kernel, "_shared", {})
    try:
        yield
    finally:
        object.__setattr__(kernel, "_shared", None)


def _path(kernel, owner, shape, training) -> str:
    """The kernel's path for inputs of `shape` (inside `sharing()`: the
    block's first decision)."""
    shared = getattr(kernel, "_shared", None)
    if shared is not None and "path" in shared:
        return shared["path"]
    path = owner._kernel_path(kernel, shape, training)
    if shared is not None:
        shared["path"] = path
    return path


def project(kernel, inputs, equation: str, part=None, training=None):
    """`einsum(equation, inputs, W)` in the owner layer's compute dtype.

    `W` is the kernel of `kernel`, or its part named `part` (a joint
    kernel). On the factorized path the axes of `inputs` that `equation`
    contracts with `W`'s leading axes are flattened, contracted with the
    cores (the kernel never formed) and the result reshaped to `W`'s other
    axes. On the other paths the kernel's regularizer loss is added (once
    per `sharing()` block).
    """
    owner = kernel._owner_ref()
    terms, out = equation.replace(" ", "").split("->")
    contracted = sum(c not in out for c in terms.split(",")[1])
    shape = tuple(inputs.shape)
    rows = shape[len(shape) - contracted :]
    width = None if None in rows else math.prod(rows)
    flat = shape[: len(shape) - contracted] + (width,)
    if _path(kernel, owner, flat, training) == "factorized":
        lead = ops.shape(inputs)[: len(shape) - contracted]
        x = ops.reshape(inputs, (*lead, width))
        y = kernel.factorized_matmul(x, part=part)
        y = ops.cast(y, owner.compute_dtype)
        full = kernel.shape
        if part is not None:
            full = next(tuple(p[3]) for p in kernel.parts if p[0] == part)
        return ops.reshape(y, (*lead, *full[contracted:]))
    shared = getattr(kernel, "_shared", None)
    fresh = shared is None or "kernels" not in shared
    made = shared_kernels(kernel, training)
    if fresh:
        owner._regularize(list(made.values()))
    weight = made[kernel.key if part is None else part]
    return ops.einsum(equation, inputs, ops.cast(weight, owner.compute_dtype))
