"""Reading and rebuilding the graph of a Sequential or functional model:
how often each layer is called, nested models, the inputs a layer sees,
and the clone with new layers."""

import keras
import numpy as np

from keras_adntn.compress.adapters import adapter_for
from keras_adntn.compress.arrays import subsample


def is_functional(model) -> bool:
    """A Sequential or functional model (a graph of layers that can be
    rebuilt with `clone_model`), not a subclassed one. Keras's functional
    class is not public API: it is recognised by its name in the MRO."""
    if isinstance(model, keras.Sequential):
        return True
    return any(cls.__name__ == "Functional" for cls in type(model).__mro__)


def calls(model) -> dict:
    """`{id(layer): number of calls}` in the model's own graph."""
    graph = getattr(model, "_functional", None) or model
    counts = {}
    for nodes in getattr(graph, "_nodes_by_depth", {}).values():
        for node in nodes:
            key = id(node.operation)
            counts[key] = counts.get(key, 0) + 1
    return counts


def nested(model, prefix: str = "") -> list:
    """`(path, layer)` of supported layers inside nested models."""
    found = []
    for layer in model.layers:
        inner = getattr(layer, "layers", None)
        if isinstance(layer, keras.Model) and inner:
            path = f"{prefix}{layer.name}/"
            found += [(path + x.name, x) for x in inner if adapter_for(x)]
            found += nested(layer, path)
    return found


def call_of(layer) -> tuple:
    """`(input tensors, plain call kwargs)` of the layer in its graph, or
    `(tensors, None)` when the call has tensor arguments besides its
    inputs (an attention mask): those cannot be replayed here."""
    node = layer._inbound_nodes[0]
    tensors, kwargs = adapter_for(layer).call_tensors(
        list(node.arguments.args), dict(node.arguments.kwargs)
    )
    extra = {k: v for k, v in kwargs.items() if v is not None}
    extra.pop("training", None)
    if any(isinstance(v, keras.KerasTensor) for v in extra.values()):
        return tensors, None
    plain = {k: v for k, v in extra.items() if k == "use_causal_mask"}
    return tensors, plain


def layer_inputs(model, layer, x, batch_size, limit=4096, seed=0) -> tuple:
    """The layer's inputs inside `model` on model inputs `x` (a list of
    arrays) and its call kwargs, or `(None, None)` when they cannot be
    had."""
    tensors, kwargs = call_of(layer)
    if kwargs is None or not tensors:
        return None, None
    xs = x if isinstance(x, list) else [x]
    xs = [subsample(a, limit, seed) for a in xs]
    features = keras.Model(model.inputs, tensors)
    out = features.predict(
        xs if len(xs) > 1 else xs[0], batch_size=batch_size, verbose=0
    )
    out = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(a, "float32") for a in out], kwargs


def copy_model(model) -> keras.Model:
    """A clone of `model` with copies of its weights."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def clone_with(model, new_layers: dict) -> keras.Model:
    """A clone of `model` in which the layers named in `new_layers` are
    those layers; every other layer is new, with the weights copied."""

    def clone_function(layer):
        if layer.name in new_layers:
            return new_layers[layer.name]
        return layer.__class__.from_config(layer.get_config())

    student = keras.models.clone_model(model, clone_function=clone_function)
    for old in model.layers:
        if old.name not in new_layers and old.weights:
            student.get_layer(old.name).set_weights(old.get_weights())
    return student
