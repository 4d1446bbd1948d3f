"""Thin Keras wiring: each layer asks a generator network for its kernel."""

from keras_adntn.layers.aim import AIM
from keras_adntn.layers.tn_conv2d import TNConv2D
from keras_adntn.layers.tn_dense import TNDense
from keras_adntn.layers.tn_layer import TNLayer
from keras_adntn.layers.tn_multi_head_attention import TNMultiHeadAttention

__all__ = ["AIM", "TNConv2D", "TNDense", "TNLayer", "TNMultiHeadAttention"]
