"""The generated-kernel layers: thin Keras wiring around GeneratedKernel."""

from keras_adntn.layers.generator_layer import GeneratorLayer
from keras_adntn.layers.tn_conv2d import TNConv2D
from keras_adntn.layers.tn_dense import TNDense
from keras_adntn.layers.tn_multi_head_attention import TNMultiHeadAttention

__all__ = ["GeneratorLayer", "TNConv2D", "TNDense", "TNMultiHeadAttention"]
