"""BondGrowth: grow the bond dimension of TN layers on a plateau (SPEC §7)."""

import math

import keras
import numpy as np

from keras_adntn.kernels.generator_spec import check_int
from keras_adntn.layers.generator_layer import GROWTH_NOISE
from keras_adntn.layers.generator_layer import GeneratorLayer


class BondGrowth(keras.callbacks.Callback):
    """Raises the bond dimension of TN layers when a metric stops improving.

    At the end of each epoch the monitored value is compared with the best
    one so far; after `patience` epochs without an improvement of more
    than `min_delta`, every selected layer that can still grow is grown by
    `step` (`layer.grow`, capped by `max_bond_dim` and the layer's own
    `max_bond_dim`). Growth keeps the generated kernels, and it only
    assigns variable values: the compiled train function, the optimizer
    and its state (iterations, moments) carry on unchanged, on every
    backend and under `jit_compile=True`. The layers must be built with a
    `max_bond_dim` (growth capacity).

    The bond dimensions in effect during the epoch are written to the
    epoch's `logs`, so `History`, `CSVLogger` and the progress bar show
    them: `logs["bond_dim"]` (the largest over the selected layers) and
    `logs["<layer name>/bond_dim"]` per layer.

    Args:
        monitor: quantity to monitor (default `"val_loss"`).
        patience: number of epochs without improvement after which the
            layers grow (default 2; 0 behaves like 1).
        max_bond_dim: cap of the growth (None: each layer's own
            `max_bond_dim`).
        step: bond dimensions added per growth, int >= 1.
        min_delta: smallest change that counts as an improvement.
        mode: `"auto"`, `"min"` or `"max"` (`"auto"`: max for metrics
            named like accuracy/AUC, min otherwise).
        cooldown: epochs to wait after a growth before counting again.
        layers: the layers to grow: None (every layer of the model with
            growth capacity), or a list of layers or layer names.
        noise: relative scale of the random new core entries (see
            `GeneratorNetwork.grow`).
        verbose: 1 prints a line per growth.

    Attributes:
        events: one `(epoch, layer name, old bond_dim, new bond_dim)` per
            layer grown.

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input((64,)),
    ...     TNDense(64, bond_dim=2, max_bond_dim=6),
    ... ])  # doctest: +SKIP
    >>> model.fit(x, y, validation_split=0.2, epochs=30,
    ...           callbacks=[BondGrowth(patience=3)])  # doctest: +SKIP
    """

    def __init__(
        self,
        monitor="val_loss",
        patience=2,
        max_bond_dim=None,
        step=1,
        min_delta=0.0,
        mode="auto",
        cooldown=0,
        layers=None,
        noise=GROWTH_NOISE,
        verbose=0,
    ):
        super().__init__()
        self.monitor = monitor
        self.patience = check_int("patience", patience, 0)
        self.max_bond_dim = check_int(
            "max_bond_dim", max_bond_dim, 1, allow_none=True
        )
        self.step = check_int("step", step, 1)
        self.min_delta = abs(float(min_delta))
        if mode not in ("auto", "min", "max"):
            raise ValueError(
                f"`mode` must be 'auto', 'min' or 'max', got {mode!r}."
            )
        self.mode = mode
        self.cooldown = check_int("cooldown", cooldown, 0)
        self.layers = None if layers is None else list(layers)
        self.noise = float(noise)
        self.verbose = int(verbose)
        self.events = []
        self._reset()

    def _reset(self):
        self.wait = 0
        self.cooldown_counter = 0
        self.best = None

    def _improved(self, current):
        if self.best is None:
            return True
        mode = self.mode
        if mode == "auto":
            name = self.monitor.lower()
            mode = "max" if "acc" in name or "auc" in name else "min"
        if mode == "min":
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta

    def _targets(self):
        """The selected layers that have growth capacity."""
        found = [
            layer
            for layer in self.model._flatten_layers(include_self=False)
            if isinstance(layer, GeneratorLayer)
            and layer.max_bond_dim is not None
        ]
        if self.layers is None:
            return found
        by_name = {layer.name: layer for layer in found}
        targets = []
        for item in self.layers:
            layer = by_name.get(item) if isinstance(item, str) else item
            if layer is None or layer not in found:
                raise ValueError(
                    f"BondGrowth: {item!r} is not a layer of the model "
                    f"built with `max_bond_dim`."
                )
            targets.append(layer)
        return targets

    def _cap(self, layer):
        cap = layer.max_bond_dim
        return cap if self.max_bond_dim is None else min(cap, self.max_bond_dim)

    def on_train_begin(self, logs=None):
        self._reset()
        self._layers = self._targets()
        for layer in self._layers:
            layer.sync_bond_dim()

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        if self._layers:
            for layer in self._layers:
                logs[f"{layer.name}/bond_dim"] = layer.bond_dim
            logs["bond_dim"] = max(layer.bond_dim for layer in self._layers)
        current = logs.get(self.monitor)
        if current is None:
            return
        current = float(np.asarray(current))
        if not math.isfinite(current):
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best = current
            self.wait = 0
            return
        if self.cooldown_counter > 0:
            return
        self.wait += 1
        if self.wait < self.patience:
            return
        if self._grow(epoch):
            self.cooldown_counter = self.cooldown
            self.wait = 0

    def _grow(self, epoch):
        """Grows every selected layer by `step`; whether any grew."""
        grown = False
        if hasattr(self.model, "jax_state_sync"):
            self.model.jax_state_sync()
        for layer in self._layers:
            old = layer.bond_dim
            new = min(old + self.step, self._cap(layer))
            if new <= old:
                continue
            layer.grow(new, self.noise)
            self.events.append((epoch, layer.name, old, new))
            grown = True
            if self.verbose:
                print(
                    f"Epoch {epoch + 1}: BondGrowth grew {layer.name} from "
                    f"bond_dim {old} to {new}."
                )
        return grown
