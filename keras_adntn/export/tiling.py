"""Tiled on-the-fly generation: a kernel made and consumed block by block.

On a microcontroller the scarce memory is the tensor arena (SRAM). A graph
that generates a whole `(d_in, d_out)` kernel and then multiplies needs the
kernel, and its intermediates, in the arena. The tiled schedule keeps one
block of rows at a time instead:

    y = sum over r of  x[:, rows r] @ W[rows r, :]

in a WHILE loop over `radix**b` blocks. Block `r` fixes the `b` most
significant input digits of the kernel to the digits of `r`. In the
`paired` mode order every input digit is a leaf of the generator network,
so the block is the network run with the core that produces each fixed
leaf sliced at the leaf's value (`GeneratorNetwork.generate(fixed=...)`):
the upper levels are unchanged, the last contractions make only the
block's entries. The block comes out transposed, `(d_out, rows)`, which is
the weight layout of FULLY_CONNECTED: no persistent transposed copy (TFLM's
BATCH_MATMUL keeps one of its right-hand input unless `adj_y` is set).
TFLM's planner frees the block's memory at the end of each iteration.

Inside the loop body the cores are constants of the body (the body's only
inputs are the block counter, the running sum and the input rows), and the
input rows rotate by one block per iteration instead of passing through
unchanged (a pass-through loop variable crashes TensorFlow's int8
calibrator, tensorflow#75140).

What it costs: every iteration re-runs the part of the generator above the
sliced cores (the converter may fold it into a constant of the size of the
state entering the sliced level). The arena floor is the largest state a
block holds (`GeneratorNetwork.sliced_peak`): for a balanced tree with
`bond_dim < radix**2` the state entering its last level, about the square
root of the kernel. Where that peak is not at most a quarter of the kernel
(`DenseTiling.pays`: the brick wall, aTTN and MERA, whose gates mix the
leaves; trees with `bond_dim >= radix**2`; `mode_order="flat"`) the
export generates the whole kernel once instead, untiled.
"""

import numpy as np

from keras_adntn.networks.executors import permute_modes

# Estimated arena per generated block entry, in float32 entries: the
# block, its permuted copy and the contraction before it.
_BLOCK_COPIES = 4
# Loop-carried tensors are copied between the WHILE op and its subgraphs.
_CARRY_COPIES = 5


class DenseTiling:
    """How one `TNDense` kernel is generated on the device.

    Args:
        layer: a built `TNDense`.
        fixed: number `b` of input digits fixed per block (0 to the number
            of input digits): `radix**b` blocks of `radix**(K_in - b)` rows.
            0: no loop, the whole kernel generated at once (any mode
            order; its generation must then be anchored, see `tracing`).

    Raises:
        ValueError: for a `fixed` out of range, or `fixed > 0` with
            `mode_order="flat"` (the input digits are not leaves of their
            own).
    """

    def __init__(self, layer, fixed: int):
        t = layer.tensorization
        if fixed and t.mode_order != "paired":
            raise ValueError(
                f"Layer {layer.name!r}: tiled on-device generation needs "
                f"mode_order='paired' (each input digit a leaf of the "
                f"network), got {t.mode_order!r}."
            )
        self.max_fixed = t.digits[0] if t.mode_order == "paired" else 0
        if not 0 <= int(fixed) <= self.max_fixed:
            raise ValueError(
                f"Layer {layer.name!r}: `fixed` must be between 0 and "
                f"{self.max_fixed} input digits, got {fixed!r}."
            )
        self.layer = layer
        self.fixed = int(fixed)

    @property
    def tiled(self) -> bool:
        """Whether the kernel is generated in a loop of blocks."""
        return self.fixed > 0

    @property
    def blocks(self) -> int:
        """Number of blocks (loop iterations; 1: no loop)."""
        return self.layer.tensorization.radix**self.fixed

    @property
    def rows(self) -> int:
        """Rows of the (padded) kernel per block."""
        t = self.layer.tensorization
        return t.padded[0] // self.blocks

    @property
    def block_entries(self) -> int:
        """Generated entries per block, padding and groups included."""
        t = self.layer.tensorization
        return self.layer.generator_groups * t.padded[1] * self.rows

    @property
    def fixed_leaves(self) -> list:
        """Leaf positions of the fixed (most significant) input digits."""
        t = self.layer.tensorization
        return [t.leaf_order.index((0, k)) for k in range(self.fixed)]

    @property
    def peak_entries(self) -> int:
        """Largest state a block's generation holds (entries)."""
        peak = self.layer.generator.sliced_peak(self.fixed_leaves)
        return max(peak, self.block_entries)

    def estimated_arena(self, batch: int = 1) -> int:
        """A rough arena estimate (bytes) of the loop; the export measures
        the real one on TFLM where it can."""
        t = self.layer.tensorization
        carried = batch * (t.padded[0] + self.layer.units)
        return 4 * (_BLOCK_COPIES * self.peak_entries + _CARRY_COPIES * carried)

    @staticmethod
    def pays(layer) -> bool:
        """Whether tiling can make the layer's largest state at most a
        quarter of its kernel. Not for networks whose state is large before
        the input digits are produced: the brick wall (every gate layer
        acts on all leaves), aTTN and MERA (physical-level disentanglers
        mix the leaves the expansion makes), nor `mode_order="flat"`."""
        return pays(layer, 0)

    @classmethod
    def for_budget(cls, layer, budget: int | None, batch: int = 1):
        """The tiling with the fewest blocks whose estimate fits `budget`
        (bytes; None: two blocks, the fastest tiled schedule); untiled
        where tiling does not pay (`pays`)."""
        if not cls.pays(layer):
            return cls(layer, 0)
        tiling = cls(layer, 1)
        if budget is None:
            return tiling
        while (
            tiling.estimated_arena(batch) > budget
            and tiling.fixed < tiling.max_fixed
        ):
            tiling = cls(layer, tiling.fixed + 1)
        return tiling

    def matmul(self, tf, inputs, xp, scales=None):
        """`inputs @ kernel`, the kernel generated block by block.

        Args:
            tf: the TensorFlow module.
            inputs: the layer's input tensor, `(..., d_in)`.
            xp: the generation executor (`tracing.DeviceOps`).
            scales: None, or the `(units,)` per-channel int8 scales the
                layer's kernel quantisation (QAT) uses, fixed at export.

        Returns:
            float32 `(..., units)`.
        """
        if not self.tiled:
            return self._whole(tf, inputs, xp, scales)
        layer = self.layer
        t = layer.tensorization
        network = layer.generator
        p, n = t.radix, t.num_modes
        d_in, units, groups = (
            layer.input_dim,
            layer.units,
            layer.generator_groups,
        )
        blocks, rows, fixed = self.blocks, self.rows, self.fixed
        in_leaves = [t.leaf_order.index((0, k)) for k in range(t.digits[0])]
        out_leaves = [t.leaf_order.index((1, k)) for k in range(t.digits[1])]
        fixed_leaves = in_leaves[:fixed]
        sizes = [1 if leaf in fixed_leaves else p for leaf in range(n)]
        perm = fixed_leaves + out_leaves + in_leaves[fixed:]
        per_group = units // groups
        if scales is not None:
            scales = tf.constant(
                np.asarray(scales, np.float32).reshape(units, 1)
            )

        static = inputs.shape[:-1]
        x = tf.reshape(tf.cast(inputs, tf.float32), (-1, d_in))
        if t.padded[0] > d_in:
            x = tf.pad(x, [[0, 0], [0, t.padded[0] - d_in]])
        x = tf.reshape(x, (-1, blocks, rows))

        def body(r, y, x):
            # The counter is float32: TFLM's FLOOR_DIV / FLOOR_MOD take no
            # int32 (exact for counts below 2**24).
            digits = {
                leaf: tf.cast(
                    tf.math.floormod(
                        tf.math.floordiv(r, float(p ** (fixed - 1 - j))),
                        float(p),
                    ),
                    tf.int32,
                )
                for j, leaf in enumerate(fixed_leaves)
            }
            block = network.generate(xp, fixed=digits)
            block = permute_modes(block, xp, sizes, perm)
            block = tf.reshape(block, (groups, t.padded[1], rows))
            if t.padded[1] > per_group:
                block = block[:, :per_group]
            block = tf.reshape(block, (units, rows))  # W[rows r, :]^T
            if scales is not None:
                block = tf.round(block / scales) * scales
            head = tf.reshape(x[:, :1], (-1, rows))
            x = tf.concat([x[:, 1:], x[:, :1]], axis=1)
            return r + 1.0, y + tf.matmul(head, block, transpose_b=True), x

        def cond(r, y, x):
            return r < float(blocks)

        batch = tf.shape(x)[0] if x.shape[0] is None else x.shape[0]
        start = (tf.constant(0.0), tf.zeros((batch, units), tf.float32), x)
        _, y, _ = tf.while_loop(cond, body, start, parallel_iterations=1)
        if all(d is not None for d in static):
            return tf.reshape(y, (*static, units))
        return tf.reshape(
            y, tf.concat([tf.shape(inputs)[:-1], [units]], axis=0)
        )

    def _whole(self, tf, inputs, xp, scales):
        """The untiled schedule: `kernel^T` generated in FULLY_CONNECTED's
        weight layout, then one FULLY_CONNECTED."""
        layer = self.layer
        t = layer.tensorization
        d_in, units, groups = (
            layer.input_dim,
            layer.units,
            layer.generator_groups,
        )
        kernel = layer.generator.generate(xp)  # (groups, leaves)
        if t.mode_order == "paired":
            n = t.num_modes
            ins = [t.leaf_order.index((0, k)) for k in range(t.digits[0])]
            outs = [t.leaf_order.index((1, k)) for k in range(t.digits[1])]
            kernel = permute_modes(kernel, xp, [t.radix] * n, outs + ins)
            kernel = tf.reshape(kernel, (groups, t.padded[1], t.padded[0]))
            kernel = kernel[:, : units // groups, :d_in]
        else:
            kernel = t.unfold(kernel, xp)  # (groups, d_in, units / groups)
            kernel = tf.transpose(kernel, (0, 2, 1))
        kernel = tf.reshape(kernel, (units, d_in))
        if scales is not None:
            scales = tf.constant(
                np.asarray(scales, np.float32).reshape(units, 1)
            )
            kernel = tf.round(kernel / scales) * scales
        x = tf.cast(inputs, tf.float32)
        static = inputs.shape[:-1]
        y = tf.matmul(tf.reshape(x, (-1, d_in)), kernel, transpose_b=True)
        if all(d is not None for d in static):
            return tf.reshape(y, (*static, units))
        return tf.reshape(
            y, tf.concat([tf.shape(inputs)[:-1], [units]], axis=0)
        )


def pays(layer, axis: int) -> bool:
    """Whether fixing all digits of the kernel's `axis` (the input axis)
    brings the generator's largest state to at most a quarter of the
    kernel (`GeneratorNetwork.sliced_peak`)."""
    t = layer.tensorization
    if t.mode_order != "paired":
        return False
    leaves = [t.leaf_order.index((axis, k)) for k in range(t.digits[axis])]
    network = layer.generator
    return 4 * network.sliced_peak(leaves) <= network.groups * t.size


def int8_scales(layer) -> np.ndarray | None:
    """The per-output-channel scales of a layer's kernel quantisation
    (`kernel_quantization="int8"`), from its current kernel; else None."""
    if getattr(layer, "kernel_quantization", None) != "int8":
        return None
    from keras import ops

    kernel = np.asarray(ops.convert_to_numpy(layer.kernel))
    bound = np.max(np.abs(kernel.reshape(-1, kernel.shape[-1])), axis=0)
    return np.maximum(bound, 1e-12) / 127.0


class ConvTiling:
    """How one `TNConv2D` kernel is generated on the device: unrolled
    blocks of input channels.

    `y = sum over r of conv(x[..., channels r], W[:, :, channels r, :])`,
    block `r` generated with the `b` most significant input-channel digits
    fixed (as `DenseTiling`), the blocks written one after the other in the
    graph (no loop: a WHILE would copy the loop-carried activations, which
    dominate a convolution's arena). Each block's generation is anchored to
    the model input (see `tracing`), so the converter cannot fold it into
    a stored kernel; TFLM's planner frees each block after its conv.

    Args:
        layer: a built `TNConv2D` with `groups=1`, `channels_last` and
            `mode_order="paired"`.
        fixed: number `b` of input-channel digits fixed per block (1 to the
            number of input-channel digits).
    """

    def __init__(self, layer, fixed: int):
        t = layer.tensorization
        if not (self.applies(layer) and t.mode_order == "paired"):
            raise ValueError(
                f"Layer {layer.name!r}: tiled conv generation needs "
                f"groups=1, data_format='channels_last' and "
                f"mode_order='paired'."
            )
        self.max_fixed = t.digits[2]
        if not 1 <= int(fixed) <= self.max_fixed:
            raise ValueError(
                f"Layer {layer.name!r}: `fixed` must be between 1 and "
                f"{self.max_fixed} input-channel digits, got {fixed!r}."
            )
        self.layer = layer
        self.fixed = int(fixed)

    tiled = True

    @staticmethod
    def applies(layer) -> bool:
        """Whether channel blocks apply and pay (`pays` on the input
        channels)."""
        return (
            layer.conv_groups == 1
            and layer.data_format == "channels_last"
            and pays(layer, 2)
        )

    @property
    def blocks(self) -> int:
        """Number of blocks."""
        return self.layer.tensorization.radix**self.fixed

    @property
    def rows(self) -> int:
        """Input channels (padded) per block."""
        return self.layer.tensorization.padded[2] // self.blocks

    @property
    def block_entries(self) -> int:
        """Generated entries per block, padding and groups included."""
        t = self.layer.tensorization
        return (
            self.layer.generator.groups
            * t.padded[0]
            * t.padded[1]
            * t.padded[3]
            * self.rows
        )

    @classmethod
    def for_budget(cls, layer, budget: int | None, batch: int = 1):
        """Fewest blocks whose block fits a quarter of `budget` (None: two
        blocks)."""
        tiling = cls(layer, 1)
        if budget is None:
            return tiling
        while (
            16 * tiling.block_entries > budget
            and tiling.fixed < tiling.max_fixed
        ):
            tiling = cls(layer, tiling.fixed + 1)
        return tiling

    def matmul(self, tf, inputs, make_ops, scales=None):
        """The convolution, its kernel generated block by block.

        `make_ops()` returns a fresh (anchored) executor per block.
        """
        layer = self.layer
        t = layer.tensorization
        network = layer.generator
        p, n = t.radix, t.num_modes
        g = network.groups
        kh, kw = layer.kernel_size
        cin, filters = layer.in_channels, layer.filters
        rows, fixed = self.rows, self.fixed
        leaves = {
            axis: [t.leaf_order.index((axis, k)) for k in range(t.digits[axis])]
            for axis in range(4)
        }
        fixed_leaves = leaves[2][:fixed]
        sizes = [1 if leaf in fixed_leaves else p for leaf in range(n)]
        perm = (
            fixed_leaves + leaves[0] + leaves[1] + leaves[2][fixed:] + leaves[3]
        )
        x = tf.cast(inputs, tf.float32)
        if t.padded[2] > cin:
            x = tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, t.padded[2] - cin]])
        if scales is not None:
            scales = tf.constant(np.asarray(scales, np.float32))
        y = None
        for r in range(self.blocks):
            digits = {
                leaf: (r // p ** (fixed - 1 - j)) % p
                for j, leaf in enumerate(fixed_leaves)
            }
            xp = make_ops()
            block = network.generate(xp, fixed=digits)
            block = permute_modes(block, xp, sizes, perm)
            # crop the padding with slices of rank <= 4 (TFLM's limit)
            block = tf.reshape(block, (g, t.padded[0], -1))[:, :kh]
            shape = (g * kh, t.padded[1], rows, t.padded[3])
            block = tf.reshape(block, shape)[:, :kw, :, : filters // g]
            block = tf.reshape(block, (g, kh, kw, rows, filters // g))
            block = tf.transpose(block, (1, 2, 3, 0, 4))
            block = tf.reshape(block, (kh, kw, rows, filters))
            if scales is not None:
                block = tf.round(block / scales) * scales
            part = tf.nn.conv2d(
                x[..., r * rows : (r + 1) * rows],
                block,
                strides=layer.strides,
                padding=layer.padding.upper(),
                dilations=layer.dilation_rate,
            )
            y = part if y is None else y + part
        return y
