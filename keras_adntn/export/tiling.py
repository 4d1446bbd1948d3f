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
(`DenseTiling.pays`: the brick wall, whose gates mix all the leaves;
trees with `bond_dim >= radix**2`; `mode_order="flat"`) the export
generates the whole kernel once instead, untiled. aTTN and MERA tile: each
gate follows the expansion that makes its modes (`Plan.interleave_gates`),
so a fixed leaf is sliced where its gate makes it.
"""

import numpy as np

from keras_adntn.export import device_cost
from keras_adntn.export.schedule import TiledSchedule
from keras_adntn.export.schedule import slicing_pays
from keras_adntn.networks.executors import permute_modes


class DenseTiling(TiledSchedule):
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
        super().__init__(layer, fixed, 0, "input digits")

    @property
    def anchored(self) -> bool:
        """Untiled only: a tiled kernel's cores are constants of the loop
        body."""
        return not self.tiled

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

    def estimated_seconds(self, batch: int = 1) -> float:
        """Modeled seconds of one call on TFLM (`device_cost`): every
        block's generation (the numbers its steps write) and the
        product."""
        layer = self.layer
        written, _, _ = device_cost.generation_work(
            layer.generated_kernel.network, self.fixed_leaves
        )
        return device_cost.seconds(
            batch * layer.input_dim * layer.units,
            ops=self.blocks,
            written=self.blocks * written,
        )

    def carried_entries(self, batch: int = 1) -> int:
        """The loop carries the input rows and the running sum."""
        t = self.layer.tensorization
        return batch * (t.padded[0] + self.layer.units)

    @staticmethod
    def pays(layer) -> bool:
        """Whether tiling can make the layer's largest state at most a
        quarter of its kernel. Not for networks whose state is large before
        the input digits are produced: the brick wall (every gate layer
        acts on all leaves), nor `mode_order="flat"`."""
        return slicing_pays(layer, 0)

    def matmul(self, tf, inputs, make_ops, scales=None):
        """`inputs @ kernel`, the kernel generated block by block.

        Args:
            tf: the TensorFlow module.
            inputs: the layer's input tensor, `(..., d_in)`.
            make_ops: returns the generation executor
                (`tracing.DeviceOps`); called once.
            scales: None, or the `(units,)` per-channel int8 scales the
                layer's kernel quantisation (QAT) uses, fixed at export.

        Returns:
            float32 `(..., units)`.
        """
        xp = make_ops()
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
