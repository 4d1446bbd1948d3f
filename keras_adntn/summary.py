"""A compression summary of a model: what each layer stores vs. dense."""

import keras

BYTES_PER_PARAM = 4  # float32


def _rows(layers, rows_per_call, prefix=""):
    rows = []
    for layer in layers:
        name = prefix + layer.name
        nested = getattr(layer, "layers", None)
        if isinstance(layer, keras.Model) and nested:
            rows.extend(_rows(nested, rows_per_call, prefix=name + "/"))
            continue
        stored = int(layer.count_params()) if layer.built else 0
        dense = getattr(layer, "dense_params", None) if layer.built else None
        dense = stored if dense is None else int(dense)
        paths = (
            set(layer.execution_paths(rows_per_call).values())
            if layer.built and hasattr(layer, "execution_paths")
            else set()
        )
        rows.append(
            {
                "name": name,
                "type": type(layer).__name__,
                "dense_params": dense,
                "stored_params": stored,
                "ratio": dense / stored if stored else 1.0,
                "bytes": stored * BYTES_PER_PARAM,
                "dense_bytes": dense * BYTES_PER_PARAM,
                "path": "+".join(sorted(paths)) if paths else "",
            }
        )
    return rows


def _format_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def summary(
    model: keras.Model, print_fn=print, rows_per_call: int = 128
) -> list:
    """Prints a per-layer table of dense-equivalent vs. stored parameters.

    For TN layers (`TNDense`, `TNConv2D`, `TNMultiHeadAttention`) the
    dense-equivalent count is their `dense_params` (the Keras layer they
    replace); any other layer counts as dense (ratio 1). Bytes assume
    float32 storage. Nested models are expanded (`outer/inner` names).

    Args:
        model: a built Keras model.
        print_fn: where the lines go (default `print`; `None` prints
            nothing).
        rows_per_call: the input rows (batch x positions) a training call
            of each layer has, for the `path` column: which path each TN
            layer's kernels take then (`"factorized"`: the input contracted
            with the cores, `"generated"`: the kernel made, then used; see
            `execution` of the TN layers).

    Returns:
        The rows as a list of dicts with keys `name`, `type`,
        `dense_params`, `stored_params`, `ratio`, `bytes`, `dense_bytes`,
        `path` (empty for layers that generate nothing); the last row is
        the total (`name == "total"`).

    Example:

    >>> from keras_adntn import TNDense
    >>> model = keras.Sequential([keras.Input((256,)), TNDense(256)])
    >>> rows = summary(model, print_fn=None)
    >>> total = rows[-1]
    >>> total["ratio"] > 100
    True
    """
    layers = getattr(model, "layers", None)
    if layers is None:
        raise ValueError(
            f"`model` must be a Keras model, got {type(model).__name__}."
        )
    rows = _rows(layers, rows_per_call)
    dense = sum(r["dense_params"] for r in rows)
    stored = sum(r["stored_params"] for r in rows)
    rows.append(
        {
            "name": "total",
            "type": "",
            "dense_params": dense,
            "stored_params": stored,
            "ratio": dense / stored if stored else 1.0,
            "bytes": stored * BYTES_PER_PARAM,
            "dense_bytes": dense * BYTES_PER_PARAM,
            "path": "",
        }
    )
    if print_fn is not None:
        width = max([len(r["name"]) for r in rows] + [5])
        twidth = max([len(r["type"]) for r in rows] + [4])
        header = (
            f"{'layer':<{width}}  {'type':<{twidth}}  {'dense params':>12}  "
            f"{'stored':>10}  {'ratio':>9}  {'bytes (f32)':>11}  "
            f"path ({rows_per_call} rows)"
        )
        print_fn(header)
        print_fn("-" * len(header))
        for r in rows:
            if r["name"] == "total":
                print_fn("-" * len(header))
            print_fn(
                f"{r['name']:<{width}}  {r['type']:<{twidth}}  "
                f"{r['dense_params']:>12}  {r['stored_params']:>10}  "
                f"{r['ratio']:>8.1f}x  {_format_bytes(r['bytes']):>11}  "
                f"{r['path']}".rstrip()
            )
    return rows


__all__ = ["summary"]
