"""Thin Keras wiring: each layer asks a generator network for its kernel."""

from keras_adntn.layers.tn_dense import TNDense

__all__ = ["TNDense"]
