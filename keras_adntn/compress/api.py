"""`compress(model, data)`: the pipeline on a whole trained model.

1. select the largest `Dense`, `Conv2D` and `MultiHeadAttention` layers
   (or the ones named in `layers`);
2. convert each with `TNDense.from_dense`, `TNConv2D.from_conv2d` or
   `TNMultiHeadAttention.from_multi_head_attention`, data-aware on the
   layer's real inputs;
3. clone the model with the new layers (every other weight copied);
4. fine-tune by distillation from the original, keeping the best epoch;
5. evaluate: output errors of the replaced layers, task scores.
"""

import math
import sys
from collections.abc import Mapping

import keras
import numpy as np

from keras_adntn import networks
from keras_adntn.compress import convert
from keras_adntn.compress import finetune
from keras_adntn.compress.report import CompressionReport
from keras_adntn.compress.report import _fmt
from keras_adntn.compress.select import _bond_for_ratio
from keras_adntn.compress.select import _generator_shapes
from keras_adntn.compress.select import _kind
from keras_adntn.compress.select import _select
from keras_adntn.compress.select import _tn_params
from keras_adntn.layers.tn_conv2d import TNConv2D
from keras_adntn.layers.tn_dense import TNDense
from keras_adntn.layers.tn_multi_head_attention import TNMultiHeadAttention

TASKS = ("auto", "classification", "regression")
# How each supported layer is converted (the per-type knowledge lives in
# these classmethods).
CONVERTERS = {
    keras.layers.Dense: TNDense.from_dense,
    keras.layers.Conv2D: TNConv2D.from_conv2d,
    keras.layers.MultiHeadAttention: (
        TNMultiHeadAttention.from_multi_head_attention
    ),
}


# -- argument checks
def _is_functional(model) -> bool:
    """A Sequential or functional model (a graph of layers that can be
    rebuilt with `clone_model`), not a subclassed one. Keras's functional
    class is not public API: it is recognised by its name in the MRO."""
    if isinstance(model, keras.Sequential):
        return True
    return any(cls.__name__ == "Functional" for cls in type(model).__mro__)


def _check_int(name, value, minimum):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < minimum
    ):
        raise ValueError(
            f"`{name}` must be an int >= {minimum}, got {value!r}."
        )
    return int(value)


def _check_number(name, value, low, high=None, low_open=False):
    ok = isinstance(value, (int, float, np.number)) and not isinstance(
        value, bool
    )
    if ok:
        value = float(value)
        ok = math.isfinite(value) and (
            value > low if low_open else value >= low
        )
        ok = ok and (high is None or value <= high)
    if not ok:
        bound = f"> {low}" if low_open else f">= {low}"
        if high is not None:
            bound += f" and <= {high}"
        raise ValueError(f"`{name}` must be a number {bound}, got {value!r}.")
    return float(value)


def _split_data(name, data):
    """`(x, y, x_val, y_val)` from a tuple or a mapping / npz."""
    if isinstance(data, Mapping) or hasattr(data, "files"):
        keys = list(data.files if hasattr(data, "files") else data.keys())
        if "x" not in keys or "y" not in keys:
            raise ValueError(
                f"`{name}` as a mapping must hold arrays 'x' and 'y' "
                f"(optionally 'x_val', 'y_val'); got keys {sorted(keys)}."
            )
        val = None
        if "x_val" in keys and "y_val" in keys:
            val = (data["x_val"], data["y_val"])
        return data["x"], data["y"], val
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1], None
    raise ValueError(
        f"`{name}` must be a tuple (x, y) or a mapping / .npz with arrays "
        f"'x' and 'y'; got {type(data).__name__}."
    )


def _check_xy(name, x, y, model):
    inputs = model.inputs
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    if len(xs) != len(inputs):
        raise ValueError(
            f"`{name}`: the model has {len(inputs)} inputs, got {len(xs)} "
            f"input arrays."
        )
    xs = [np.asarray(a) for a in xs]
    y = np.asarray(y)
    for k, (array, inp) in enumerate(zip(xs, inputs)):
        want = tuple(inp.shape)[1:]
        got = array.shape[1:]
        if not np.issubdtype(array.dtype, np.number):
            raise ValueError(
                f"`{name}`: input array {k} is not numeric ({array.dtype})."
            )
        if array.ndim != len(want) + 1 or any(
            w is not None and w != g for w, g in zip(want, got)
        ):
            raise ValueError(
                f"`{name}`: input array {k} has shape {array.shape}; the "
                f"model input needs (samples, {', '.join(map(str, want))})."
            )
        if len(array) != len(y) or len(array) < 1:
            raise ValueError(
                f"`{name}`: x has {len(array)} samples and y {len(y)}; they "
                f"must match and be >= 1."
            )
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"`{name}`: y is not numeric ({y.dtype}).")
    for k, array in enumerate(xs):
        if not np.all(np.isfinite(array)):
            bad = int(array.size - np.sum(np.isfinite(array)))
            raise ValueError(
                f"`{name}`: x holds {bad} NaN or infinite values (input "
                f"array {k}); the data must be finite."
            )
    if not np.all(np.isfinite(y)):
        bad = int(y.size - np.sum(np.isfinite(y)))
        raise ValueError(
            f"`{name}`: y holds {bad} NaN or infinite values; the targets "
            f"must be finite."
        )
    xs = [a.astype("float32") for a in xs]
    return (xs[0] if len(xs) == 1 else xs), y


def _is_fraction(value) -> bool:
    return isinstance(value, (float, np.floating)) or (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value in (0, 1)
    )


def _hold_out(x, y, fraction, seed):
    """`(x_train, y_train, (x_val, y_val))`: a random `fraction` held out."""
    xs = x if isinstance(x, list) else [x]
    n = len(y)
    count = int(round(fraction * n))
    if count < 1 or count >= n:
        raise ValueError(
            f"`validation_data`={fraction!r} holds out {count} of {n} "
            f"samples; it must leave at least one on each side."
        )
    order = np.random.default_rng(seed).permutation(n)
    held, kept = np.sort(order[:count]), np.sort(order[count:])

    def pick(index):
        parts = [a[index] for a in xs]
        return parts if isinstance(x, list) else parts[0]

    return pick(kept), y[kept], (pick(held), y[held])


def _task(y, pred, task):
    """`"classification"` (labels or one-hot) or `"regression"`."""
    if task != "auto":
        return task
    pred = np.asarray(pred)
    if pred.ndim < 2 or pred.shape[-1] < 2:
        return "regression"
    y = np.asarray(y)
    if y.shape == pred.shape[:-1] and np.allclose(y, np.round(y)):
        return "classification"
    if y.shape == pred.shape and set(np.unique(y)) <= {0, 1}:
        return "classification"
    return "regression"


def _labels(name, y, pred, task):
    """Classification targets checked: `(n, 1)` integer labels squeezed
    as in `fit`; labels in range; one-hot of the right width."""
    y = np.asarray(y)
    pred_shape = np.asarray(pred).shape
    classes = pred_shape[-1] if len(pred_shape) >= 2 else 1
    if (
        y.ndim == len(pred_shape)
        and y.shape[-1] == 1
        and classes > 1
        and y.shape[:-1] == pred_shape[:-1]
    ):
        y = y[..., 0]
    if task != "classification":
        return y
    if y.shape == pred_shape[:-1]:
        if not np.allclose(y, np.round(y)):
            raise ValueError(
                f"`{name}`: classification labels must be integers, got "
                f"non-integer values."
            )
        low, high = float(y.min()), float(y.max())
        if low < 0 or high > classes - 1:
            raise ValueError(
                f"`{name}`: labels must be integers in [0, {classes - 1}] "
                f"(the model has {classes} outputs), got values in "
                f"[{low:g}, {high:g}]."
            )
        return y.astype("int32")
    if y.shape == pred_shape:
        return y
    raise ValueError(
        f"`{name}`: y has shape {y.shape}; for a model with outputs "
        f"{pred_shape[1:]} it needs integer labels {pred_shape[:-1]} (or "
        f"{pred_shape[:-1] + (1,)}) or one-hot targets {pred_shape}."
    )


def _one_line(error) -> str:
    lines = [s.strip() for s in str(error).strip().splitlines() if s.strip()]
    text = lines[-1] if lines else type(error).__name__
    return text if len(text) < 300 else text[:297] + "..."


def _predict(name, model, x, batch_size):
    """`model.predict` with the backend's errors as one ValueError line."""
    try:
        pred = model.predict(x, batch_size=batch_size, verbose=0)
    except Exception as e:
        raise ValueError(
            f"`{name}`: the model cannot run on it ({type(e).__name__}: "
            f"{_one_line(e)})."
        ) from None
    return pred


def _copy_model(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _progress(verbose):
    """A function printing one plain line (nothing when `verbose` is 0)."""

    def log(message):
        if verbose:
            print(message, file=sys.stdout, flush=True)

    return log


def layer_output_error(
    teacher: keras.Model,
    student: keras.Model,
    name: str,
    x,
    batch_size: int = 256,
    limit: int = 4096,
) -> float | None:
    """Output error of layer `name` inside the models on real inputs.

    `||f'(x) - f(x)|| / ||f(x) - mean f||`, with `f(x)` the output of the
    teacher's layer `name` on model inputs `x` and `f'(x)` that of the
    student's (which sees the student's own earlier layers, so after
    fine-tuning this is the error of everything up to that layer).

    Args:
        teacher: the original model.
        student: the compressed model.
        name: the layer's name in both.
        x: model inputs.
        batch_size: batch size of the predictions.
        limit: at most this many samples are used.

    Returns:
        The relative error (1: no better than the mean output), or None
        when the layer's output is not reachable from the model inputs.

    Example:

    >>> layer_output_error(teacher, student, "h2", x_test)  # doctest: +SKIP
    0.42
    """
    xs = x if isinstance(x, list) else [x]
    xs = [a[:limit] for a in xs]
    x = xs if len(xs) > 1 else xs[0]
    try:
        outs = [
            np.asarray(
                keras.Model(m.inputs, m.get_layer(name).output).predict(
                    x, batch_size=batch_size, verbose=0
                ),
                np.float64,
            )
            for m in (teacher, student)
        ]
    except (ValueError, AttributeError):
        return None
    want, got = outs
    flat = want.reshape(-1, want.shape[-1])
    spread = float(np.sum((flat - flat.mean(0)) ** 2))
    return math.sqrt(float(np.sum((got - want) ** 2)) / max(spread, 1e-30))


def _call_of(layer):
    """`(input tensors, plain call kwargs)` of the layer in its graph, or
    `(tensors, None)` when the call has tensor arguments besides its
    inputs (an attention mask): those cannot be replayed here."""
    node = layer._inbound_nodes[0]
    args = list(node.arguments.args)
    kwargs = dict(node.arguments.kwargs)
    if isinstance(layer, keras.layers.MultiHeadAttention):
        names = ("query", "value", "key")
        tensors = args[:3]
        for key in names[len(tensors) :]:
            if kwargs.get(key) is not None:
                tensors.append(kwargs[key])
        for key in names:
            kwargs.pop(key, None)
    else:
        tensors = args[:1]
    extra = {k: v for k, v in kwargs.items() if v is not None}
    extra.pop("training", None)
    if any(isinstance(v, keras.KerasTensor) for v in extra.values()):
        return tensors, None
    plain = {k: v for k, v in extra.items() if k == "use_causal_mask"}
    return tensors, plain


def _layer_inputs(model, layer, x, batch_size, limit=4096, seed=0):
    """The teacher layer's inputs on `x` (a list of arrays), its call
    kwargs, or `(None, None)` when they cannot be had."""
    tensors, kwargs = _call_of(layer)
    if kwargs is None or not tensors:
        return None, None
    xs = x if isinstance(x, list) else [x]
    n = len(xs[0])
    if n > limit:
        keep = np.sort(
            np.random.default_rng(seed).choice(n, limit, replace=False)
        )
        xs = [a[keep] for a in xs]
    features = keras.Model(model.inputs, tensors)
    out = features.predict(
        xs if len(xs) > 1 else xs[0], batch_size=batch_size, verbose=0
    )
    out = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(a, "float32") for a in out], kwargs


# -- the entry point
def compress(
    model: keras.Model,
    data: tuple | Mapping,
    network: str = "ttn",
    bond_dim: int | None = None,
    target_ratio: float | None = None,
    layers: list | None = None,
    max_layers: int = 1,
    min_params: int = 1024,
    init: str = "auto",
    reconstruction_steps: int = 500,
    init_learning_rate: float = 1e-2,
    epochs: int = 10,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    temperature: float = 2.0,
    alpha: float = 0.1,
    task: str = "auto",
    validation_data: tuple | Mapping | float | None = None,
    verbose: int = 1,
    seed: int = 0,
) -> tuple:
    """Replaces the largest layers of a trained model with TN layers.

    The pipeline of the paper (§7.6): select the largest `Dense`, `Conv2D`
    and `MultiHeadAttention` layers, replace each with `TNDense`,
    `TNConv2D` or `TNMultiHeadAttention`, initialise the generators from
    the teacher's weights, copy the biases and every other weight, and
    fine-tune the new model by distillation from the original (task loss
    and soft labels, `Distiller`). The input model is not modified.

    Initialisation (`init`, per layer through `TNDense.from_dense`,
    `TNConv2D.from_conv2d`, `TNMultiHeadAttention.from_multi_head_attention`):
    `"activations"` (what `"auto"` means here, since `data` gives the
    layers' inputs) takes `reconstruction_steps` Adam steps on the generator
    cores minimising the whitened reconstruction
    `tr((K - W)^T M (K - W)) / tr(W^T M W)`, `M` the second moment of the
    layer's (centred) inputs on `data` (im2col patches for a Conv2D, each
    projection for attention), then sets the bias to absorb the mean
    input; for `network="mpo"` it starts from the best TT-SVD (of the
    kernel or of its activation-aware low-rank approximations).
    `"reconstruction"` is the same fit in the plain weight norm (no data);
    `"svd"` (only `network="mpo"`) the TT-SVD of the teacher kernel (exact
    at full bond); `"random"` keeps the calibrated random initialisation.

    Fine-tuning keeps the best weights seen on the validation data (the
    initialisation counts as epoch 0), so the returned student is never
    worse there than its initialisation; a diverging run (non-finite or
    exploding loss) is stopped, rolled back and reported
    (`report.fine_tuning`).

    Classification (integer labels or one-hot targets with a multi-class
    output) is fine-tuned with `Distiller` (the output can be logits or a
    softmax: probabilities are turned into log-probabilities for the
    distillation) and scored by accuracy; anything else is regression,
    fine-tuned on the MSE to `alpha * y + (1 - alpha) * teacher(x)` and
    scored by mean squared error (`metric="loss"`).

    Layers that cannot be replaced (shared layers, unbuilt ones, quantized
    or LoRA layers, attention with `use_gate` or `sliding_window`, layers
    inside nested models) are left as they were and listed in the report.

    Args:
        model: a trained, built `keras.Sequential` or functional
            `keras.Model` with one output (subclassed models cannot be
            cloned layer by layer and are refused).
        data: training data, a tuple `(x, y)` or a mapping / `.npz` with
            arrays `"x"` and `"y"` (and optionally `"x_val"`, `"y_val"`,
            used when `validation_data` is None). Integer labels may be
            shaped `(n,)` or `(n, 1)`, as in `fit`.
        network: generator network, one of `"ttn"`, `"attn"`, `"mera"`,
            `"brickwall"`, `"mpo"`.
        bond_dim: bond dimension of the new layers (default 2 when
            `target_ratio` is not given either).
        target_ratio: instead of `bond_dim`: per layer, the largest bond
            dimension whose compression ratio (dense / stored parameters,
            bias included) is still >= this number (> 1).
        layers: names of the layers to replace (default: the largest).
        max_layers: how many of the largest layers to replace when
            `layers` is None, int >= 1.
        min_params: layers with fewer parameters are not considered when
            `layers` is None, int >= 0.
        init: `"auto"` (= `"activations"`), `"activations"`,
            `"reconstruction"`, `"svd"` (mpo only) or `"random"`.
        reconstruction_steps: Adam steps of the initialisation fit per
            layer, int >= 0.
        init_learning_rate: Adam learning rate of that fit, > 0.
        epochs: epochs of distillation fine-tuning, int >= 0.
        batch_size: batch size of fine-tuning and evaluation, int >= 1.
        learning_rate: Adam learning rate of the fine-tuning, > 0.
        temperature: distillation temperature, > 0.
        alpha: weight of the task loss against the teacher's soft labels,
            in [0, 1].
        task: `"auto"`, `"classification"` or `"regression"`.
        validation_data: `(x, y)` or a mapping with `"x"`, `"y"`, or a
            fraction in (0, 1) of `data` to hold out: where the best
            fine-tuning epoch is chosen and the report scores teacher and
            student (default: `x_val`/`y_val` of a mapping, else `data`).
        verbose: 0 (silent), 1 (one plain line per phase: select,
            initialise, fine-tune, evaluate) or 2 (also one line per
            epoch).
        seed: seed of the new layers' initialisation (layer `k` uses
            `seed + k`).

    Returns:
        `(compressed_model, report)`: a new model of the same kind as
        `model` (compile it before training it further) and a
        `CompressionReport`.

    Raises:
        ValueError: a bad argument or bad data (named in the message:
            NaN/inf, labels out of range, data the model cannot run on),
            raised before any work where it can be checked; errors of the
            backend during the work are turned into one-line ValueErrors
            too. The input model is never modified.

    Example:

    >>> student, report = compress(
    ...     model, (x_train, y_train), network="ttn", bond_dim=2,
    ...     validation_data=(x_test, y_test), epochs=5,
    ... )  # doctest: +SKIP
    >>> print(report)  # doctest: +SKIP
    """
    # -- checks (nothing is built or trained before all of them pass) --
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`model` must be a keras.Sequential or functional keras.Model, "
            f"got {type(model).__name__}."
        )
    if not _is_functional(model):
        raise ValueError(
            f"`model` must be a keras.Sequential or functional keras.Model; "
            f"{type(model).__name__} is a subclassed model, which cannot be "
            f"cloned layer by layer."
        )
    if not model.built or not model.inputs:
        raise ValueError(
            "`model` must be built with known inputs (e.g. start it with "
            "keras.Input)."
        )
    if len(model.outputs) != 1:
        raise ValueError(
            f"`model` must have one output, got {len(model.outputs)}."
        )
    networks.get(network)
    if bond_dim is not None and target_ratio is not None:
        raise ValueError(
            "Give at most one of `bond_dim` and `target_ratio`, got both "
            f"(bond_dim={bond_dim!r}, target_ratio={target_ratio!r})."
        )
    if target_ratio is None:
        bond_dim = _check_int(
            "bond_dim", 2 if bond_dim is None else bond_dim, 1
        )
    else:
        target_ratio = _check_number(
            "target_ratio", target_ratio, 1.0, low_open=True
        )
    if layers is not None:
        if isinstance(layers, str):
            layers = [s for s in layers.split(",") if s]
        if not isinstance(layers, (list, tuple)) or not layers:
            raise ValueError(
                f"`layers` must be None or a non-empty list of layer names, "
                f"got {layers!r}."
            )
        names = [layer.name for layer in model.layers]
        for name in layers:
            if name not in names:
                raise ValueError(
                    f"`layers`: no layer named {name!r} at the top level of "
                    f"the model; layers: {names}."
                )
            layer = model.get_layer(name)
            if not _kind(layer):
                raise ValueError(
                    f"`layers`: {name!r} is a {type(layer).__name__}; "
                    f"compress replaces Dense, Conv2D and MultiHeadAttention "
                    f"layers."
                )
        layers = list(dict.fromkeys(layers))
    max_layers = _check_int("max_layers", max_layers, 1)
    min_params = _check_int("min_params", min_params, 0)
    init = convert.resolve_init(init, network, True)
    reconstruction_steps = _check_int(
        "reconstruction_steps", reconstruction_steps, 0
    )
    init_learning_rate = _check_number(
        "init_learning_rate", init_learning_rate, 0.0, low_open=True
    )
    epochs = _check_int("epochs", epochs, 0)
    batch_size = _check_int("batch_size", batch_size, 1)
    learning_rate = _check_number(
        "learning_rate", learning_rate, 0.0, low_open=True
    )
    temperature = _check_number("temperature", temperature, 0.0, low_open=True)
    alpha = _check_number("alpha", alpha, 0.0, 1.0)
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}, got {task!r}.")
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ValueError(f"`verbose` must be 0, 1 or 2, got {verbose!r}.")
    seed = _check_int("seed", seed, 0)
    x, y, val = _split_data("data", data)
    x, y = _check_xy("data", x, y, model)
    fraction = None
    if _is_fraction(validation_data):
        fraction = float(validation_data)
        if not 0.0 < fraction < 1.0:
            raise ValueError(
                f"`validation_data` as a fraction must be in (0, 1), got "
                f"{validation_data!r}."
            )
    elif validation_data is not None:
        vx, vy, _ = _split_data("validation_data", validation_data)
        val = (vx, vy)
    if val is not None:
        val = _check_xy("validation_data", val[0], val[1], model)
    elif fraction is not None:
        x, y, val = _hold_out(x, y, fraction, seed)
    evaluated_on = "validation_data" if val is not None else "data"
    vx, vy = val if val is not None else (x, y)

    log = _progress(verbose)
    pred = _predict("data", model, x, batch_size)
    vpred = _predict(
        "validation_data" if val is not None else "data", model, vx, batch_size
    )
    task = _task(_labels("data", y, pred, "auto"), pred, task)
    y = _labels("data", y, pred, task)
    vy = _labels(
        "validation_data" if val is not None else "data", vy, vpred, task
    )

    # -- selection and sizes --
    def size(layer):
        chi, note = bond_dim, ""
        if target_ratio is not None:
            chi, note = _bond_for_ratio(layer, network, target_ratio)
        return chi, note

    def new_params(layer):
        shapes, extra = _generator_shapes(layer)
        return _tn_params(shapes, extra, network, size(layer)[0])

    chosen, skipped = _select(model, layers, max_layers, min_params, new_params)
    log(
        f"compress [1/4] select: {[layer.name for layer in chosen] or 'none'}"
        f" -> network={network!r}"
    )

    # -- per-layer conversion (data-aware) --
    new_layers, rows = {}, []
    for k, old in enumerate(chosen):
        chi, note = size(old)
        xs, call_kwargs = (None, None)
        if init == "activations":
            xs, call_kwargs = _layer_inputs(
                model, old, x, batch_size, seed=seed
            )
        how = init if xs is not None or init != "activations" else "auto"
        if init == "activations" and xs is None:
            note = "; ".join(filter(None, [note, "inputs not reproducible"]))
        info = {}
        try:
            new = CONVERTERS[type(old)](
                old,
                None if xs is None else (xs[0] if len(xs) == 1 else xs),
                network=network,
                bond_dim=chi,
                init=how,
                steps=reconstruction_steps,
                learning_rate=init_learning_rate,
                seed=seed + k,
                call_kwargs=call_kwargs,
                report=info,
            )
        except ValueError:
            raise
        except Exception as e:
            raise ValueError(
                f"`model`: converting layer {old.name!r} failed "
                f"({type(e).__name__}: {_one_line(e)})."
            ) from None
        new_layers[old.name] = new
        rows.append(
            {
                "name": old.name,
                "type": type(old).__name__,
                "new_type": type(new).__name__,
                "network": network,
                "bond_dim": chi,
                "params_before": int(old.count_params()),
                "params_after": int(new.count_params()),
                "ratio": old.count_params() / new.count_params(),
                "init": info.get("init", how),
                "error_init": None,
                "error_final": None,
                "weight_error_init": info.get("weight_error"),
                "weight_error_final": None,
                "note": "; ".join(filter(None, [note, info.get("note")])),
            }
        )
        log(
            f"compress [2/4] initialise: {old.name} ({rows[-1]['init']}, "
            f"bond {chi}, {rows[-1]['ratio']:.1f}x): fit loss "
            f"{_fmt(info.get('fit_loss'))}"
        )

    # -- clone with the new layers --
    def clone_function(layer):
        if layer.name in new_layers:
            return new_layers[layer.name]
        return layer.__class__.from_config(layer.get_config())

    student = keras.models.clone_model(model, clone_function=clone_function)
    for old in model.layers:
        if old.name not in new_layers and old.weights:
            student.get_layer(old.name).set_weights(old.get_weights())
    for row in rows:
        row["error_init"] = layer_output_error(
            model, student, row["name"], vx, batch_size
        )

    # -- fine-tuning --
    metric = "accuracy" if task == "classification" else "loss"
    probabilities = finetune.outputs_probabilities(pred)
    scores = {
        "teacher": finetune.score(model, vx, vy, task, batch_size, vpred),
        "student_init": finetune.score(student, vx, vy, task, batch_size),
    }
    tuning = {"epochs_run": 0, "best_epoch": 0, "diverged": None, "note": ""}
    if epochs and new_layers:
        log(
            f"compress [3/4] fine-tune: {epochs} epochs of distillation, "
            f"keeping the best on {evaluated_on}"
        )
        try:
            tuning = finetune.fine_tune(
                student,
                _copy_model(model),
                x,
                y,
                (vx, vy),
                task,
                probabilities,
                epochs,
                batch_size,
                learning_rate,
                temperature,
                alpha,
                scores["student_init"],
                log=log if verbose == 2 else None,
            )
        except Exception as e:
            raise ValueError(
                f"`data`: fine-tuning failed ({type(e).__name__}: "
                f"{_one_line(e)})."
            ) from None
        tuning.pop("best_score", None)
    else:
        log("compress [3/4] fine-tune: skipped (epochs=0)")

    # -- evaluation --
    scores["student_final"] = (
        finetune.score(student, vx, vy, task, batch_size)
        if epochs and new_layers
        else scores["student_init"]
    )
    if finetune.better(task, scores["student_init"], scores["student_final"]):
        extra = (
            f"the student is worse than its initialisation on {evaluated_on}"
        )
        tuning["note"] = "; ".join(filter(None, [tuning.get("note"), extra]))
    for row, old in zip(rows, chosen):
        new = student.get_layer(old.name)
        row["error_final"] = layer_output_error(
            model, student, old.name, vx, batch_size
        )
        row["weight_error_final"] = convert.relative_error(new, old)
    log(
        f"compress [4/4] evaluate: {metric} teacher "
        f"{_fmt(scores['teacher'])}, student after init "
        f"{_fmt(scores['student_init'])}, final "
        f"{_fmt(scores['student_final'])}"
    )
    report = CompressionReport(
        rows,
        skipped,
        metric,
        scores,
        evaluated_on,
        model.count_params(),
        student.count_params(),
        tuning,
    )
    return student, report


relative_error = convert.relative_error
