"""Compress a trained Keras model (SPEC §8, paper §7.6).

`compress(model, data)` replaces the largest `Dense`, `Conv2D` and
`MultiHeadAttention` layers of a trained `keras.Sequential` or functional
model with `TNDense`, `TNConv2D` and `TNMultiHeadAttention`, initialises
them from the trained weights in the metric of the layers' real inputs
(data-aware, whitened reconstruction), fine-tunes by distillation keeping
the best epoch, and returns the new model with a `CompressionReport`.

Per layer, `TNDense.from_dense`, `TNConv2D.from_conv2d` and
`TNMultiHeadAttention.from_multi_head_attention` do the conversion alone.

The package is split by role: `api` (the entry point), `select` (which
layers, which sizes), `convert` (one layer), `init` (the data-aware fit),
`finetune` (distillation, best epoch, divergence) and `report`.

The package is callable, `keras_adntn.compress(model, data)` being
`keras_adntn.compress.compress(model, data)`, so that both spellings (and
`from keras_adntn import compress`) keep working.
"""

import sys
import types

from keras_adntn.compress.api import compress
from keras_adntn.compress.api import layer_output_error
from keras_adntn.compress.convert import output_error
from keras_adntn.compress.convert import relative_error
from keras_adntn.compress.init import tt_svd_cores
from keras_adntn.compress.init import whitening
from keras_adntn.compress.report import CompressionReport

__all__ = [
    "CompressionReport",
    "compress",
    "layer_output_error",
    "output_error",
    "relative_error",
    "tt_svd_cores",
    "whitening",
]


class _CallablePackage(types.ModuleType):
    """`keras_adntn.compress(...)` calls `keras_adntn.compress.compress`."""

    def __call__(self, *args, **kwargs):
        return compress(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
