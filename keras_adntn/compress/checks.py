"""Argument checks of `compress` and of the per-layer conversion.

Each raises a ValueError naming the argument; nothing is built or
trained before they pass.
"""

import math
from typing import NamedTuple

import keras
import numpy as np

from keras_adntn import networks
from keras_adntn.compress import graph
from keras_adntn.compress.adapters import adapter_for
from keras_adntn.kernels.generator_spec import check_int

INITS = ("auto", "activations", "reconstruction", "svd", "random")
TASKS = ("auto", "classification", "regression")
# what compress may lose on held-out data when no size is given: half an
# accuracy point, or 0.5% more mean squared error (a held-out split of a
# few hundred samples measures the loss to about +-0.5 points, so that a
# user's usual "1 point" holds on test data too; benchmarks/
# compress_to_target.py)
DEFAULT_MAX_LOSS = 0.005

__all__ = [
    "DEFAULT_MAX_LOSS",
    "INITS",
    "TASKS",
    "CompressArguments",
    "check_arguments",
    "check_choice",
    "check_int",
    "check_layer_names",
    "check_model",
    "check_number",
    "check_size",
    "resolve_init",
]


def check_number(
    name: str, value, low: float, high: float | None = None, low_open=False
) -> float:
    """`float(value)`; ValueError naming `name` unless it is a finite
    number `>= low` (`> low` with `low_open`) and `<= high`."""
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
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        if high is not None:
            bound += f" and <= {high:g}"
        raise ValueError(f"`{name}` must be a number {bound}, got {value!r}.")
    return float(value)


def check_choice(name: str, value, choices: tuple):
    """`value`; ValueError naming `name` unless it is one of `choices`."""
    if isinstance(value, bool) or value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}.")
    return value


def check_size(bond_dim, target_ratio, max_loss=None) -> tuple:
    """`(bond_dim, target_ratio, max_loss)`, checked: at most one of them
    is given; without any, `max_loss` is `DEFAULT_MAX_LOSS` (the two
    others are then None)."""
    given = {
        name: value
        for name, value in (
            ("bond_dim", bond_dim),
            ("target_ratio", target_ratio),
            ("max_loss", max_loss),
        )
        if value is not None
    }
    if len(given) > 1:
        shown = ", ".join(f"{k}={v!r}" for k, v in given.items())
        raise ValueError(
            "Give at most one of `bond_dim`, `target_ratio` and `max_loss` "
            f"(a fixed size, or the loss the search may cost); got {shown}."
        )
    if target_ratio is not None:
        ratio = check_number("target_ratio", target_ratio, 1.0, low_open=True)
        return None, ratio, None
    if bond_dim is not None:
        return check_int("bond_dim", bond_dim, 1), None, None
    loss = DEFAULT_MAX_LOSS if max_loss is None else max_loss
    return None, None, check_number("max_loss", loss, 0.0)


def resolve_init(init: str, network: str, has_data: bool) -> str:
    """The initialisation `init` stands for (checked).

    `"auto"` is `"activations"` (data-aware) when the layer's inputs are
    given, else `"svd"` for `network="mpo"` and `"reconstruction"`
    otherwise.
    """
    if init not in INITS:
        raise ValueError(f"`init` must be one of {INITS}, got {init!r}.")
    if init == "svd" and network != "mpo":
        raise ValueError(
            f"`init`='svd' needs network='mpo' (TT-SVD is exact only for "
            f"the multilinear MPO); got network={network!r}. Use "
            f"'activations', 'reconstruction' or 'auto'."
        )
    if init == "auto":
        if has_data:
            return "activations"
        return "svd" if network == "mpo" else "reconstruction"
    if init == "activations" and not has_data:
        raise ValueError(
            "`init`='activations' needs the layer's inputs (`x`, or `data` "
            "for compress); use 'reconstruction' or 'auto' without them."
        )
    return init


def check_model(model) -> None:
    """ValueError unless `model` is a built Sequential or functional model
    with known inputs and one output."""
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`model` must be a keras.Sequential or functional keras.Model, "
            f"got {type(model).__name__}."
        )
    if not graph.is_functional(model):
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


def check_layer_names(model, layers) -> list | None:
    """The names in `layers` (a list or a comma-separated string) without
    repeats; ValueError unless each is a replaceable top-level layer."""
    if layers is None:
        return None
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
        if adapter_for(layer) is None:
            raise ValueError(
                f"`layers`: {name!r} is a {type(layer).__name__}; "
                f"compress replaces Dense, Conv2D and MultiHeadAttention "
                f"layers."
            )
    return list(dict.fromkeys(layers))


class CompressArguments(NamedTuple):
    """The arguments of `compress` after their checks (`check_arguments`);
    `of(locals())` takes them from `compress`'s own."""

    network: str
    bond_dim: int | None
    target_ratio: float | None
    max_loss: float | None
    search_budget: int
    layers: list | None
    max_layers: int
    min_params: int
    init: str
    reconstruction_steps: int
    init_learning_rate: float
    epochs: int
    batch_size: int
    learning_rate: float
    temperature: float
    alpha: float
    task: str
    verbose: int
    seed: int

    @classmethod
    def of(cls, arguments: dict) -> "CompressArguments":
        """The fields' values among `arguments` (a function's `locals()`),
        unchecked."""
        return cls(**{name: arguments[name] for name in cls._fields})


def check_arguments(
    model: keras.Model, given: CompressArguments
) -> CompressArguments:
    """`compress`'s arguments (its data aside), checked in the order of its
    signature: the ValueError of the first bad one, before any work."""
    check_model(model)
    networks.get(given.network)
    bond_dim, target_ratio, max_loss = check_size(
        given.bond_dim, given.target_ratio, given.max_loss
    )
    return given._replace(
        bond_dim=bond_dim,
        target_ratio=target_ratio,
        max_loss=max_loss,
        search_budget=check_int("search_budget", given.search_budget, 1),
        layers=check_layer_names(model, given.layers),
        max_layers=check_int("max_layers", given.max_layers, 1),
        min_params=check_int("min_params", given.min_params, 0),
        init=resolve_init(given.init, given.network, True),
        reconstruction_steps=check_int(
            "reconstruction_steps", given.reconstruction_steps, 0
        ),
        init_learning_rate=check_number(
            "init_learning_rate",
            given.init_learning_rate,
            0.0,
            low_open=True,
        ),
        epochs=check_int("epochs", given.epochs, 0),
        batch_size=check_int("batch_size", given.batch_size, 1),
        learning_rate=check_number(
            "learning_rate", given.learning_rate, 0.0, low_open=True
        ),
        temperature=check_number(
            "temperature", given.temperature, 0.0, low_open=True
        ),
        alpha=check_number("alpha", given.alpha, 0.0, 1.0),
        task=check_choice("task", given.task, TASKS),
        verbose=check_choice("verbose", given.verbose, (0, 1, 2)),
        seed=check_int("seed", given.seed, 0),
    )
