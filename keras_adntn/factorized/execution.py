"""FactorizedExecution: a generated kernel's product, the kernel never formed.

Where a `GeneratedKernel`'s generator is in the table (`table.reason` is
None: `mpo`, or a `ttn` with a paired mode order), `x @ kernel` and a 2-D
convolution with the kernel can be taken from the cores
(`FactorizedPlan`). This module says whether that is possible
(`reason`), whether it is the faster for a call shape (`wins`, the cost
model of the plan), and runs it (`matmul`, `conv`).

The device is explicit: every method that depends on it takes `read`.
None is the host (Keras tensors of the variables, the plan of least
modeled time); a callable `read(variable) -> np.ndarray` is an export
trace contracting on the device (the plans of `device_plan`, block
matrices made in NumPy from `read` and stored as float32 constants).
"""

import math

import numpy as np
from keras import ops

from keras_adntn.factorized import table
from keras_adntn.factorized.cost import move_seconds
from keras_adntn.factorized.cost import rows_of
from keras_adntn.factorized.device import device_plan
from keras_adntn.networks import executors


def factorized_error(reason: str) -> ValueError:
    """The error of `execution="factorized"` where `reason` holds."""
    return ValueError(
        "`execution='factorized'` contracts the input with the generator's "
        f"cores and never forms the kernel, but {reason}. Use "
        "execution='auto' (it forms the kernel where it must) or "
        "'on_the_fly'."
    )


class FactorizedExecution:
    """The factorized path of one `GeneratedKernel`.

    Args:
        kernel: the `GeneratedKernel` (read when asked: its network,
            tensorisation and part scales exist once it is built).
    """

    def __init__(self, kernel):
        self.kernel = kernel
        self._plans = {}

    def reason(self):
        """Why `x @ kernel` cannot be taken from the cores without forming
        the kernel (a sentence), or None where it can."""
        kernel = self.kernel
        reason = table.class_reason(
            kernel.spec.network_class(), kernel.spec.mode_order
        )
        if reason is not None:
            return reason
        if len(kernel.dims) not in (2, 4):
            return (
                f"a kernel of rank {len(kernel.dims)} is neither a matrix "
                "nor a 2-D convolution"
            )
        reason = table.reason(kernel.network)
        if reason is not None:
            return reason
        if len(kernel.dims) == 4 and not table.on_device(kernel.network):
            return (
                f"a {kernel.spec.network!r} convolution kernel is formed "
                "(its factorized path is for matrices: TNDense and the "
                "attention projections)"
            )
        if len(kernel.dims) == 4 and self._spatial_sites() is None:
            return (
                f"the kernel's spatial digits ({self._spatial_leaves()} "
                "leaves) end inside an MPO site, so the spatial and channel "
                "factors do not separate (an odd number of spatial digits, "
                "e.g. kernel_size (3, 1))"
            )
        return None

    def _spatial_leaves(self) -> int:
        """Leaves of a conv kernel's spatial digits (they come first)."""
        return sum(self.kernel.tensorization.digits[:-2])

    def _spatial_sites(self):
        """The MPO sites holding exactly a conv kernel's spatial digits
        (None where a site mixes spatial and channel digits)."""
        return table.lead_sites(self.kernel.network, self._spatial_leaves())

    def plan(self, rows=None, in_dim=None, direction=None, read=None):
        """The `FactorizedPlan` for `rows` input rows of `in_dim` features
        (default: the kernel's rows); for a conv kernel, the plan of its
        channel sites (input channels to output channels, with the bond
        to the spatial sites, in `conv`'s direction). One per call shape,
        computed once.

        With `read` (an export trace contracting on the device) the blocks
        are capped at `MAX_DEVICE_BLOCK_ENTRIES` (flash) and chosen for the
        least memory live at once (the arena), in the better of the two
        directions (`direction`: that one only)."""
        dims = self.kernel.dims
        in_dim = dims[-2] if in_dim is None else int(in_dim)
        device = read is not None
        if len(dims) > 2:
            direction = self._conv_direction(read)
        key = (128 if rows is None else int(rows), in_dim, direction, device)
        if key not in self._plans:
            first = 0 if len(dims) == 2 else len(self._spatial_sites())
            network = self.kernel.network
            if device:
                plan = device_plan(
                    network,
                    in_dim,
                    dims[-1],
                    key[0],
                    directions=None if direction is None else (direction,),
                    first_site=first,
                )
            else:
                plan = table.plan(
                    network,
                    in_dim,
                    dims[-1],
                    rows=key[0],
                    first_site=first,
                    direction=direction or "right",
                )
            self._plans[key] = plan
        return self._plans[key]

    def _conv_direction(self, read=None) -> str:
        """A conv kernel's order. In Keras (`read` None) the channel sites
        come first (`"right"`: a depthwise conv with a channel multiplier,
        the other order, made the train step 6x slower on XLA CPU). On the
        device (`read` given: an export trace), whichever order holds the
        smaller state per pixel: the spatial factor first (`"left"`: a
        depthwise conv of the input, `bond x groups x c_in` channels,
        then the channel sites) where the input has fewer channels than
        the output, else the channel sites first (`bond x filters`)."""
        if read is None:
            return "right"
        c_in, out = self.kernel.dims[-2:]
        g = self.kernel.spec.generator_groups
        return "left" if c_in < g * out else "right"

    def wins(self, rows) -> bool:
        """The cost model (on the host): contracting beats generating for
        `rows` input rows (pixels, for a conv kernel)."""
        dims = self.kernel.dims
        plan = self.plan(rows)
        if len(dims) == 2:
            return plan.factorized_seconds(rows) < plan.generated_seconds(rows)
        # conv: channel sites per pixel, then a depthwise conv over
        # (groups, out channels, bond) with the spatial factor; against
        # generating the kernel and a conv (im2col-sized matmul)
        taps = math.prod(dims[:-2])
        g, out = self.kernel.spec.generator_groups, dims[-1]
        fac = plan.factorized_seconds(rows) + move_seconds(
            rows * g * out * plan.lead_bond * taps
        )
        whole = table.plan(
            self.kernel.network, math.prod(dims[:-1]), dims[-1], rows=rows
        )
        return fac < whole.generated_seconds(rows)

    def matmul(self, x, part=None, read=None):
        """`x @ kernel` (float32, `(..., rows)` -> `(..., columns)`) taken
        from the cores: the kernel is never formed. `part`: the name of a
        part of a joint kernel (its rows and columns only). Not with
        `kernel_quantization="int8"` (QAT rounds the formed kernel, so
        that kernel is formed). `read`: see `plan`."""
        kernel = self.kernel
        x = ops.cast(x, "float32")
        rank = len(x.shape)
        in_dim = int(x.shape[-1])
        plan = self.plan(rows_of(tuple(x.shape)), in_dim, read=read)
        flat = x if rank == 2 else ops.reshape(x, (-1, in_dim))
        name = kernel.key if part is None else part
        g = kernel.spec.generator_groups
        _, matrices = self.block_matrices(plan, read)
        y = plan.apply(flat, matrices, executors.KerasOps())
        if kernel.parts is not None:
            start, i, cols = self._part_columns(name)
            y = ops.reshape(y, (-1, g, kernel.dims[1]))
            y = y[:, :, start : start + cols // g]
            scale = ops.cast(kernel.part_scale, "float32")[:, i]
            y = ops.multiply(y, ops.reshape(scale, (1, g, 1)))
            y = ops.reshape(y, (-1, cols))
        if rank == 2:
            return y
        lead = ops.shape(x)[:-1]
        return ops.reshape(y, (*lead, y.shape[-1]))

    def conv(self, x, strides, padding, dilation_rate, read=None):
        """A channels-last 2-D convolution of `x` (float32, `(batch, h, w,
        c_in)`) with the kernel, taken from the cores; the kernel is never
        formed. Channel sites first (`_conv_direction` `"right"`): they
        map every pixel to `(groups, filters, a)` (`a`: the bond to the
        spatial sites), then a depthwise convolution with the spatial
        factor `(kh, kw, a)` and a sum over `a`. Spatial factor first
        (`"left"`): a depthwise convolution of the input with it (channel
        multiplier `groups * a`), then the channel sites contract every
        pixel's `(c_in, a)`. `read`: see `plan`."""
        kernel = self.kernel
        x = ops.cast(x, "float32")
        kh, kw, c_in, out = kernel.dims
        g = kernel.spec.generator_groups
        plan = self.plan(rows_of(tuple(x.shape)), c_in, read=read)
        a = plan.lead_bond
        cores, matrices = self.block_matrices(plan, read)
        spatial = self._spatial_factor(cores)  # (kh, kw, G, a)
        options = {
            "strides": strides,
            "padding": padding,
            "data_format": "channels_last",
            "dilation_rate": dilation_rate,
        }
        xp = executors.KerasOps()
        if plan.direction == "left":
            depthwise = ops.reshape(spatial, (kh, kw, 1, g * a))
            depthwise = ops.multiply(
                depthwise, ops.ones((1, 1, c_in, 1), "float32")
            )
            z = ops.depthwise_conv(x, depthwise, **options)
            lead = ops.shape(z)[:3]
            if g > 1:  # (pixels, c_in, G, a) -> (G, pixels, c_in * a)
                z = ops.reshape(z, (-1, c_in, g, a))
                z = ops.transpose(z, (2, 0, 1, 3))
                z = ops.reshape(z, (g, -1, c_in * a))
            else:
                z = ops.reshape(z, (-1, c_in * a))
            y = plan.apply(z, matrices, xp)
            return ops.reshape(y, (*lead, g * out))
        lead = ops.shape(x)[:3]
        z = plan.apply(ops.reshape(x, (-1, c_in)), matrices, xp)
        z = ops.reshape(z, (*lead, g * out * a))
        depthwise = ops.reshape(spatial, (kh, kw, g, 1, a))
        depthwise = ops.multiply(
            depthwise, ops.ones((1, 1, 1, out, 1), "float32")
        )
        depthwise = ops.reshape(depthwise, (kh, kw, g * out * a, 1))
        y = ops.depthwise_conv(z, depthwise, **options)
        y = ops.reshape(y, (*ops.shape(y)[:3], g * out, a))
        return ops.sum(y, axis=-1)

    def _spatial_factor(self, cores):
        """The spatial sites contracted: `(kh, kw, G, a)`."""
        kernel = self.kernel
        kh, kw = kernel.dims[:2]
        g = kernel.spec.generator_groups
        spatial = None
        for name in self._spatial_sites():
            core = cores[name]
            _, b_in, q, b_out = core.shape
            if spatial is None:
                spatial = ops.reshape(core, (g, q, b_out))
                continue
            spatial = ops.matmul(spatial, ops.reshape(core, (g, b_in, -1)))
            spatial = ops.reshape(spatial, (g, -1, b_out))
        p_kh, p_kw = kernel.tensorization.padded[:2]
        a = spatial.shape[-1]
        spatial = ops.reshape(spatial, (g, p_kh, p_kw, a))[:, :kh, :kw, :]
        return ops.transpose(spatial, (1, 2, 0, 3))

    def block_matrices(self, plan, read=None):
        """`(cores, plan's block matrices)`: tensors of the variables
        (`read` None), or float32 constants of their values as
        `read(variable)` gives them (what the device stores; made in
        float64 NumPy)."""
        if read is None:
            cores = table.cores(self.kernel.network, plan)
            return cores, plan.block_matrices(cores, executors.KerasOps())
        cores, matrices = self.constant_blocks(plan, read)
        return cores, [ops.convert_to_tensor(m) for m in matrices]

    def constant_blocks(self, plan, read):
        """`(cores, plan's block matrices)` as float32 NumPy arrays of the
        values `read(variable)` gives (made in float64): what the device
        stores, the one place an export's contraction is made."""
        cores = table.cores(self.kernel.network, plan, _reading_ops(read))
        matrices = plan.block_matrices(cores, executors.NumpyOps())
        cores = {k: np.asarray(v, "float32") for k, v in cores.items()}
        return cores, [np.asarray(m, np.float32) for m in matrices]

    def _part_columns(self, name):
        """`(start column within a group, index, columns)` of a part."""
        start = 0
        g = self.kernel.spec.generator_groups
        for i, p in enumerate(self.kernel.parts):
            if p[0] == name:
                return start, i, p[2]
            start += p[2] // g
        raise KeyError(name)


def _reading_ops(read):
    """A `NumpyOps` converting variables through `read` (float64)."""
    xp = executors.NumpyOps()
    xp.convert = lambda v: np.asarray(read(v), dtype=np.float64)
    return xp
