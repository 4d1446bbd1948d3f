"""Which layers `compress` replaces, and how big their replacements are."""

from keras_adntn import networks
from keras_adntn.compress import graph
from keras_adntn.compress.adapters import adapter_for
from keras_adntn.tensorize import Tensorization

MAX_BOND_SEARCH = 1024


# -- which layers
def _unsupported_reason(layer, model):
    """Why `layer` cannot be replaced, or None."""
    if not layer.built or not layer.weights:
        return "not built (its input size is unknown)"
    calls = graph.calls(model).get(id(layer), 1)
    if calls > 1:
        return f"shared layer (called at {calls} places in the graph)"
    policy = getattr(layer, "dtype_policy", None)
    if getattr(policy, "quantization_mode", None):
        return "quantized layer"
    if getattr(layer, "lora_enabled", False):
        return "LoRA-enabled layer"
    return adapter_for(layer).unsupported(layer)


def _skip(name, layer, reason) -> dict:
    return {"name": name, "type": type(layer).__name__, "reason": reason}


def select_layers(model, layers, max_layers, min_params, new_params) -> tuple:
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
                skipped.append(_skip(name, layer, reason))
            else:
                chosen.append(layer)
        return chosen, skipped
    candidates = [
        layer
        for layer in model.layers
        if adapter_for(layer) and layer.count_params() >= min_params
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
            skipped.append(_skip(layer.name, layer, reason))
        elif len(chosen) < max_layers:
            chosen.append(layer)
    for path, layer in graph.nested(model):
        if layer.count_params() >= min_params:
            reason = "inside a nested model (only top-level layers are "
            skipped.append(_skip(path, layer, reason + "replaced)"))
    return chosen, skipped


# -- sizes
def replacement_params(layer, network, bond_dim) -> int:
    """Parameters of the TN replacement of `layer` at `bond_dim`."""
    shapes, extra = adapter_for(layer).generator_shapes(layer)
    return _tn_params(shapes, extra, network, bond_dim)


def _tn_params(shapes, extra, network, bond_dim):
    cls = networks.get(network)
    total = extra
    for dims in shapes:
        t = Tensorization(dims)
        net = cls(num_modes=t.num_modes, radix=2, bond_dim=bond_dim)
        total += net.num_params
    return total


def growing_bonds(layers, network):
    """`(bond dimension, [parameters of each layer's replacement])` from
    bond 1 up, while a larger bond still adds parameters to some layer
    (saturated: larger bonds change nothing)."""
    shapes = [adapter_for(layer).generator_shapes(layer) for layer in layers]
    previous = None
    for chi in range(1, MAX_BOND_SEARCH + 1):
        params = [_tn_params(s, extra, network, chi) for s, extra in shapes]
        if params == previous:
            return
        yield chi, params
        previous = params


def bond_for_ratio(layer, network, ratio) -> tuple:
    """Largest bond dim whose replacement is >= `ratio` times smaller."""
    shapes, extra = adapter_for(layer).generator_shapes(layer)
    dense = layer.count_params()
    best = None
    for chi, (params,) in growing_bonds([layer], network):
        if dense / params < ratio:
            break  # too big
        best = chi
    if best is None:
        return 1, (
            f"target_ratio {ratio:g} not reachable (bond_dim=1 gives "
            f"{dense / _bond1_params(shapes, extra, network):.1f}x)"
        )
    return best, ""


def _bond1_params(shapes, extra, network):
    return _tn_params(shapes, extra, network, 1)


def layer_size(layer, network, bond_dim, target_ratio) -> tuple:
    """`(bond dimension, note)` of the replacement of `layer`: `bond_dim`,
    or the one `target_ratio` asks for when it is given."""
    if target_ratio is not None:
        return bond_for_ratio(layer, network, target_ratio)
    return bond_dim, ""
