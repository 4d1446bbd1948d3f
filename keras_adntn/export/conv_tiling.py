"""Tiled generation of a `TNConv2D` kernel: blocks of input channels.

The convolution's counterpart of `tiling.DenseTiling`, with the same
budget rule (`schedule.TiledSchedule.for_budget`); its blocks are
unrolled in the graph, so no loop carries anything and the estimate is
the blocks' alone.
"""

import numpy as np

from keras_adntn.export.schedule import TiledSchedule
from keras_adntn.export.schedule import slicing_pays
from keras_adntn.networks.executors import permute_modes


class ConvTiling(TiledSchedule):
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
        super().__init__(layer, fixed, 1, "input-channel digits")

    @staticmethod
    def applies(layer) -> bool:
        """Whether channel blocks apply and pay (`slicing_pays` on the
        input channels)."""
        return (
            layer.conv_groups == 1
            and layer.data_format == "channels_last"
            and slicing_pays(layer, 2)
        )

    pays = applies

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

    def matmul(self, tf, inputs, make_ops, scales=None):
        """The convolution, its kernel generated block by block
        (`make_ops()`: a fresh anchored executor per block)."""
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
