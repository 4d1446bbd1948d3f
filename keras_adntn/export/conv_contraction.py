"""A `TNConv2D` contracted on the device: `FactorizedConvSchedule`.

An mpo `TNConv2D` whose spatial digits fill sites of their own never needs
its kernel (`factorized.FactorizedExecution.conv`): its input is taken
through a depthwise convolution with the spatial factor and FULLY_CONNECTED
ops with the channel sites' blocks (or the other way round, whichever
holds the smaller state per pixel). As a schedule, the deployment plan can
weigh it against the layer's other deployments, and an int8 export
quantizes it in full (`integer`): a conv's contraction is the layer's
own factorized path, written with constants of the cores.
"""

from keras_adntn import factorized
from keras_adntn.export.schedule import ContractionSchedule
from keras_adntn.factorized.cost import rows_of


class FactorizedConvSchedule(ContractionSchedule):
    """How one `TNConv2D` convolves on the device without its kernel.

    Args:
        layer: a built `TNConv2D` for which `applies(layer)` holds.
        batch_size: the exported batch size.
    """

    def __init__(self, layer, batch_size: int = 1):
        super().__init__(layer, batch_size)
        shape = (self.batch_size, *tuple(layer.input.shape)[1:])
        self.execution = layer.generated_kernel.factorized_execution
        self.pixels = rows_of(shape)
        c_in = layer.generated_kernel.dims[-2]
        self.plan = self.execution.plan(self.pixels, c_in, read=_value)

    @staticmethod
    def applies(layer) -> bool:
        """Whether `layer` is a channels-last `TNConv2D` whose kernel can
        be contracted (an mpo, its spatial digits in sites of their own,
        nothing that needs the kernel formed)."""
        kernel = getattr(layer, "generated_kernel", None)
        return (
            kernel is not None
            and len(kernel.dims) == 4
            and getattr(layer, "data_format", "") == "channels_last"
            and kernel.formed_reason() is None
            and factorized.on_device(kernel.network)
        )

    @property
    def stored_filter(self) -> int:
        """Numbers of the depthwise filter (the spatial factor times ones,
        folded by the converter)."""
        kh, kw, c_in, out = self.layer.generated_kernel.dims
        a, g = self.plan.lead_bond, self.plan.groups
        return (
            kh * kw * g * a * (c_in if self.plan.direction == "left" else out)
        )

    @property
    def block_entries(self) -> int:
        """Numbers stored: the channel blocks and the depthwise filter."""
        g = self.plan.groups
        blocks = sum(g * b.entries for b in self.plan.blocks)
        return int(blocks + self.stored_filter)

    def depthwise_entries(self) -> int:
        """Entries of the state the depthwise convolution reads or
        writes (pixels x channels times the bond)."""
        _, _, c_in, out = self.layer.generated_kernel.dims
        a, g = self.plan.lead_bond, self.plan.groups
        channels = c_in if self.plan.direction == "left" else out
        return self.pixels * g * a * channels

    def estimated_arena(self, batch: int = 1) -> int:
        """The depthwise state and the larger of the layer's input and
        output (bytes, float32; TFLM frees the input once the depthwise
        state is made, measured: 132 KB for 3x3 32 -> 64 on 16 x 16)."""
        layer = self.layer
        shape = (batch, *tuple(layer.input.shape)[1:])
        inputs = rows_of(shape) * shape[-1]
        outputs = rows_of(shape) * layer.filters
        return 4 * (self.depthwise_entries() + max(inputs, outputs))

    def matmul(self, tf, inputs, make_ops=None, scales=None):
        """The convolution as builtins, the cores read as constants
        (`make_ops`, `scales`: unused, see `applies`)."""
        from keras_adntn.export.tracing import constant_reader

        layer = self.layer
        return self.execution.conv(
            inputs,
            layer.strides,
            layer.padding,
            layer.dilation_rate,
            read=constant_reader(tf),
        )


def _value(variable):
    """Plans are chosen from shapes: nothing is read."""
    return variable
