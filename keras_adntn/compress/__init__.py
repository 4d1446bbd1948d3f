"""Compress a trained Keras model (SPEC §8, paper §7.6).

`compress(model, data)` replaces the largest `Dense`, `Conv2D` and
`MultiHeadAttention` layers of a trained `keras.Sequential` or functional
model with `TNDense`, `TNConv2D` and `TNMultiHeadAttention`, initialises
them from the trained weights in the metric of the layers' real inputs
(data-aware, whitened reconstruction), fine-tunes by distillation keeping
the best epoch, and returns the new model with a `CompressionReport`.

Per layer, `TNDense.from_dense`, `TNConv2D.from_conv2d` and
`TNMultiHeadAttention.from_multi_head_attention` do the conversion alone
(they are set on the layer classes here, by `layer_methods`: the layers
sit below this package and import nothing from it), as does
`convert_layer`, which returns a `ConversionResult`.

The package is split by role: `api` (the entry point and its five steps),
`checks` (argument checks), `data` (the data: checked, held out,
labelled), `graph` (reading and cloning the model's graph), `select`
(which layers, which sizes), `adapters` (what is known about each Keras
type converted), `convert` (one layer), `init` (the data-aware fit),
`finetune` (distillation, best epoch, divergence), `evaluate` (errors and
scores) and `report`.

The package is callable, `keras_adntn.compress(model, data)` being
`keras_adntn.compress.compress(model, data)`, so that both spellings (and
`from keras_adntn import compress`) keep working.
"""

import sys
import types

from keras_adntn.compress import layer_methods
from keras_adntn.compress.api import compress
from keras_adntn.compress.conversion_result import ConversionResult
from keras_adntn.compress.convert import convert_layer
from keras_adntn.compress.convert import output_error
from keras_adntn.compress.convert import relative_error
from keras_adntn.compress.evaluate import layer_output_error
from keras_adntn.compress.init import tt_svd_cores
from keras_adntn.compress.init import whitening
from keras_adntn.compress.report import CompressionReport

__all__ = [
    "CompressionReport",
    "ConversionResult",
    "compress",
    "convert_layer",
    "layer_output_error",
    "output_error",
    "relative_error",
    "tt_svd_cores",
    "whitening",
]

layer_methods.attach()


class _CallablePackage(types.ModuleType):
    """`keras_adntn.compress(...)` calls `keras_adntn.compress.compress`."""

    def __call__(self, *args, **kwargs):
        return compress(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
