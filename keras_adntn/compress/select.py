"""Which layers `compress` replaces, and how big their replacements are."""

import math

import keras

from keras_adntn import networks
from keras_adntn.tensorize import Tensorization

SUPPORTED = {
    keras.layers.Dense: "TNDense",
    keras.layers.Conv2D: "TNConv2D",
    keras.layers.MultiHeadAttention: "TNMultiHeadAttention",
}
MAX_BOND_SEARCH = 1024


# -- which layers
def _kind(layer):
    return SUPPORTED.get(type(layer))


def _calls(model) -> dict:
    """`{id(layer): number of calls}` in the model's own graph."""
    graph = getattr(model, "_functional", None) or model
    counts = {}
    for nodes in getattr(graph, "_nodes_by_depth", {}).values():
        for node in nodes:
            key = id(node.operation)
            counts[key] = counts.get(key, 0) + 1
    return counts


def _unsupported_reason(layer, model):
    """Why `layer` cannot be replaced, or None."""
    if not layer.built or not layer.weights:
        return "not built (its input size is unknown)"
    calls = _calls(model).get(id(layer), 1)
    if calls > 1:
        return f"shared layer (called at {calls} places in the graph)"
    policy = getattr(layer, "dtype_policy", None)
    if getattr(policy, "quantization_mode", None):
        return "quantized layer"
    if getattr(layer, "lora_enabled", False):
        return "LoRA-enabled layer"
    if isinstance(layer, keras.layers.MultiHeadAttention):
        config = layer.get_config()
        if config.get("use_gate"):
            return "use_gate=True is not supported by TNMultiHeadAttention"
        if config.get("sliding_window") is not None:
            return "sliding_window is not supported by TNMultiHeadAttention"
        if getattr(layer, "_query_dense", None) is None:
            return "not built (its input sizes are unknown)"
    if isinstance(layer, keras.layers.Dense) and len(layer.kernel.shape) != 2:
        return f"kernel of shape {tuple(layer.kernel.shape)}"
    return None


def _nested(model, prefix=""):
    """`(path, layer)` of supported layers inside nested models."""
    found = []
    for layer in model.layers:
        inner = getattr(layer, "layers", None)
        if isinstance(layer, keras.Model) and inner:
            path = f"{prefix}{layer.name}/"
            found += [(path + x.name, x) for x in inner if _kind(x)]
            found += _nested(layer, path)
    return found


def _select(model, layers, max_layers, min_params, new_params):
    """`(chosen layers, skipped rows)`; `new_params(layer)` is the size of
    the replacement (automatic selection skips layers it would not
    shrink)."""
    skipped = []
    by_name = {layer.name: layer for layer in model.layers}
    if layers is not None:
        chosen = []
        for name in layers:
            layer = by_name[name]
            reason = _unsupported_reason(layer, model)
            if reason:
                skipped.append(
                    {
                        "name": name,
                        "type": type(layer).__name__,
                        "reason": reason,
                    }
                )
            else:
                chosen.append(layer)
        return chosen, skipped
    candidates = [
        layer
        for layer in model.layers
        if _kind(layer) and layer.count_params() >= min_params
    ]
    candidates.sort(key=lambda layer: -layer.count_params())
    chosen = []
    for layer in candidates:
        reason = _unsupported_reason(layer, model)
        if not reason and new_params(layer) >= layer.count_params():
            reason = (
                f"the replacement would not be smaller ("
                f"{new_params(layer)} vs {layer.count_params()} parameters)"
            )
        if reason:
            skipped.append(
                {
                    "name": layer.name,
                    "type": type(layer).__name__,
                    "reason": reason,
                }
            )
        elif len(chosen) < max_layers:
            chosen.append(layer)
    for path, layer in _nested(model):
        if layer.count_params() >= min_params:
            skipped.append(
                {
                    "name": path,
                    "type": type(layer).__name__,
                    "reason": "inside a nested model (only top-level layers "
                    "are replaced)",
                }
            )
    return chosen, skipped


# -- sizes
def _mha_dims(layer):
    q = layer._query_dense.kernel.shape
    k = layer._key_dense.kernel.shape
    v = layer._value_dense.kernel.shape
    o = layer._output_dense.kernel.shape
    return {
        "query": int(q[0]),
        "key": int(k[0]),
        "value": int(v[0]),
        "heads": int(q[1]),
        "key_dim": int(q[2]),
        "value_dim": int(v[2]),
        "out": math.prod(int(d) for d in o[2:]),
    }


def _generator_shapes(layer):
    """Kernel shapes (per generator) the TN replacement of `layer` has, and
    the number of its other parameters (biases, qkv scale)."""
    if isinstance(layer, keras.layers.Dense):
        d_in, units = (int(s) for s in layer.kernel.shape)
        return [(d_in, units)], units if layer.use_bias else 0
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, cin, filters = (int(s) for s in layer.kernel.shape)
        return [(kh, kw, cin, filters)], filters if layer.use_bias else 0
    d = _mha_dims(layer)
    nq = d["heads"] * d["key_dim"]
    nv = d["heads"] * d["value_dim"]
    rows = max(d["query"], d["key"], d["value"])
    extra = 3 + (2 * nq + nv + d["out"] if layer.use_bias else 0)
    return [(rows, 2 * nq + nv), (nv, d["out"])], extra


def _tn_params(shapes, extra, network, bond_dim):
    cls = networks.get(network)
    total = extra
    for dims in shapes:
        t = Tensorization(dims)
        net = cls(num_modes=t.num_modes, radix=2, bond_dim=bond_dim)
        total += net.num_params
    return total


def _bond_for_ratio(layer, network, ratio):
    """Largest bond dim whose replacement is >= `ratio` times smaller."""
    shapes, extra = _generator_shapes(layer)
    dense = layer.count_params()
    best, previous = None, None
    for chi in range(1, MAX_BOND_SEARCH + 1):
        params = _tn_params(shapes, extra, network, chi)
        if dense / params < ratio or params == previous:
            break  # too big, or saturated: larger bonds change nothing
        best, previous = chi, params
    if best is None:
        return 1, (
            f"target_ratio {ratio:g} not reachable (bond_dim=1 gives "
            f"{dense / _bond1_params(shapes, extra, network):.1f}x)"
        )
    return best, ""


def _bond1_params(shapes, extra, network):
    return _tn_params(shapes, extra, network, 1)
