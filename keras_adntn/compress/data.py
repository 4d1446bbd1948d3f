"""The data of `compress`: split, checked, held out, labelled, and the
teacher's predictions on it."""

import dataclasses
from collections.abc import Mapping

import numpy as np

# the fraction of `data` held out when no validation data are given
DEFAULT_HOLD_OUT = 0.2


@dataclasses.dataclass
class _Data:
    """The checked data `compress` works on."""

    x: object  # model inputs: an array, or a list of arrays
    y: np.ndarray
    vx: object  # validation inputs
    vy: np.ndarray
    pred: np.ndarray  # the teacher's predictions on `x`
    vpred: np.ndarray  # and on `vx`
    task: str  # "classification" or "regression"
    evaluated_on: str  # which split: "validation_data", "x_val/y_val of
    # data" or "269 of 1347 samples of data held out (stratified, seed 0)"
    batch_size: int  # of the predictions


def check_data(model, data, validation_data, seed) -> tuple:
    """`(x, y, val, split)` of `data` and `validation_data` (a fraction of
    `data` held out with `seed`, `(x, y)`, a mapping or None), checked
    against the model's inputs. Without validation data (None, and no
    `x_val`/`y_val` in a mapping) `DEFAULT_HOLD_OUT` of `data` is held out,
    stratified by class for labels: sizes and epochs are never chosen on
    the data the student trains on. `split` names where `val` comes
    from."""
    x, y, val = _split_data("data", data)
    x, y = _check_xy("data", x, y, model)
    split = "x_val/y_val of data"
    fraction = None
    if validation_data is None and val is None:
        fraction = DEFAULT_HOLD_OUT
    elif _is_fraction(validation_data):
        fraction = float(validation_data)
        if not 0.0 < fraction < 1.0:
            raise ValueError(
                f"`validation_data` as a fraction must be in (0, 1), got "
                f"{validation_data!r}."
            )
    elif validation_data is not None:
        vx, vy, _ = _split_data("validation_data", validation_data)
        val = (vx, vy)
        split = "validation_data"
    if fraction is not None:
        x, y, val, split = _hold_out(x, y, fraction, seed)
    else:
        val = _check_xy("validation_data", val[0], val[1], model)
    return x, y, val, split


def predict_and_label(model, x, y, val, split, task, batch_size) -> _Data:
    """The teacher's predictions, the task (`"auto"` resolved) and the
    targets checked and shaped for it; `split` names the validation
    data."""
    vx, vy = val
    # errors name the argument the validation data came in
    name = "validation_data" if split == "validation_data" else "data"
    pred = _predict("data", model, x, batch_size)
    vpred = _predict(name, model, vx, batch_size)
    task = _task(_labels("data", y, pred, "auto"), pred, task)
    y = _labels("data", y, pred, task)
    vy = _labels(name, vy, vpred, task)
    return _Data(x, y, vx, vy, pred, vpred, task, split, batch_size)


def one_line(error) -> str:
    """The last line of an exception's message, at most 300 characters."""
    lines = [s.strip() for s in str(error).strip().splitlines() if s.strip()]
    text = lines[-1] if lines else type(error).__name__
    return text if len(text) < 300 else text[:297] + "..."


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


def _classes(y):
    """Class labels of targets `y` to stratify on, or None (regression
    targets, or more distinct values than half the samples)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2 and y.shape[1] > 1 and set(np.unique(y)) <= {0, 1}:
        if np.all(y.sum(1) == 1):
            return np.argmax(y, 1)
    if y.ndim == 1 and np.allclose(y, np.round(y)):
        if len(np.unique(y)) <= len(y) / 2:
            return y
    return None


def _hold_out(x, y, fraction, seed):
    """`(x_train, y_train, (x_val, y_val), split)`: `fraction` of the
    samples held out at random, per class where `y` holds classes."""
    xs = x if isinstance(x, list) else [x]
    n = len(y)
    rng = np.random.default_rng(seed)
    classes = _classes(y)
    if classes is None:
        order = rng.permutation(n)
        held = order[: int(round(fraction * n))]
    else:
        held = []
        for c in np.unique(classes):
            members = rng.permutation(np.flatnonzero(classes == c))
            held.extend(members[: int(round(fraction * len(members)))])
        held = np.asarray(held, dtype=int)
    count = len(held)
    if count < 1 or count >= n:
        raise ValueError(
            f"`validation_data`={fraction!r} holds out {count} of {n} "
            f"samples of `data`; it must leave at least one on each side "
            f"(give validation data of your own for data this small)."
        )
    mask = np.zeros(n, bool)
    mask[held] = True
    held, kept = np.flatnonzero(mask), np.flatnonzero(~mask)

    def pick(index):
        parts = [a[index] for a in xs]
        return parts if isinstance(x, list) else parts[0]

    how = "stratified, " if classes is not None else ""
    split = f"{count} of {n} samples of data held out ({how}seed {seed})"
    return pick(kept), y[kept], (pick(held), y[held]), split


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


def _predict(name, model, x, batch_size):
    """`model.predict` with the backend's errors as one ValueError line."""
    try:
        pred = model.predict(x, batch_size=batch_size, verbose=0)
    except Exception as e:
        raise ValueError(
            f"`{name}`: the model cannot run on it ({type(e).__name__}: "
            f"{one_line(e)})."
        ) from None
    return pred
