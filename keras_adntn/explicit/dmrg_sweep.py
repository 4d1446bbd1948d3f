"""DMRGSweep: DMRG-like pair updates of every TNLayer during `fit`."""

import keras
import numpy as np
from keras import ops

from keras_adntn.explicit import entanglement
from keras_adntn.kernels.generator_spec import check_int

STRATEGIES = ("pal", "lbl")
UPDATE_FREQS = ("batch", "epoch")


def _sweep_schedule(num_sites):
    pairs = list(range(num_sites - 1))
    return pairs + pairs[::-1]


class DMRGSweep(keras.callbacks.Callback):
    """DMRG-like training of the MPO layers from `model.fit`.

    Each step (a batch, or an epoch with `update_freq="epoch"`) updates one
    pair of neighbouring cores `(A_k, A_{k+1})` per swept `TNLayer`; the
    pair walks left to right then right to left (`k = 0..N-2, N-2..0`).

    The gradient step is taken by the model's own optimizer inside `fit`
    (compile with `SGD(alpha)` for the paper's update): that step moves
    every core along the loss gradient `G`. At the end of the step this
    callback undoes it on every swept core outside the active pair, so the
    merged bond tensor becomes
    `B' = (A_k - a G_k)(A_{k+1} - a G_{k+1})
    = B - a (G_k A_{k+1} + A_k G_{k+1}) + O(a^2)`: by the chain rule
    (`G_k = dL/dB . A_{k+1}^T`, ...) this is a gradient step on `B`
    projected on the pair's tangent space, computed by whatever backend
    runs `fit`. `B'` is then split by SVD (`keras.ops.svd`), truncated to
    `max_bond` values (default: the layer's bond dimension) and to values
    `> cutoff * s_max`, and written back as `A_k = U sqrt(S)`,
    `A_{k+1} = sqrt(S) V^T`, zero-padded to the fixed core shapes (a
    truncated bond stays truncated: its zero slices get no gradient).
    Layers other than TNLayers (Dense, biases) train normally each step.
    With `steps_per_execution > 1` a "batch" step spans several optimizer
    steps. The environments of the paper are not cached: the forward and
    backward passes of `fit` recompute the contraction.

    Strategies: `"pal"` (default, the paper's better one) updates the
    active pair of every TNLayer at each step; `"lbl"` sweeps one layer at
    a time (`sweeps_per_layer` full sweeps, then the next layer) while the
    cores of the other TNLayers are held fixed.

    Args:
        max_bond: int >= 1 or None, number of singular values kept.
        cutoff: float >= 0, relative singular-value cutoff.
        strategy: `"pal"` or `"lbl"`.
        update_freq: `"batch"` or `"epoch"`.
        sweeps_per_layer: full sweeps per layer before `"lbl"` moves on.
        layers: optional list of TNLayers to sweep (default: all).

    Attributes:
        singular_values: `{(layer_name, k): normalised spectrum}` of the
            last split of pair `(k, k+1)`.
        steps: number of pair steps taken.

    Example:

    >>> model.compile(keras.optimizers.SGD(0.1), "mse")  # doctest: +SKIP
    >>> model.fit(x, y, callbacks=[DMRGSweep()])  # doctest: +SKIP
    """

    def __init__(
        self,
        max_bond=None,
        cutoff=0.0,
        strategy="pal",
        update_freq="batch",
        sweeps_per_layer=1,
        layers=None,
    ):
        super().__init__()
        max_bond = check_int("max_bond", max_bond, 1, allow_none=True)
        if not isinstance(cutoff, (int, float)) or cutoff < 0:
            raise ValueError(f"`cutoff` must be a float >= 0, got {cutoff!r}.")
        if strategy not in STRATEGIES:
            raise ValueError(
                f"`strategy` must be one of {STRATEGIES}, got {strategy!r}."
            )
        if update_freq not in UPDATE_FREQS:
            raise ValueError(
                f"`update_freq` must be one of {UPDATE_FREQS}, got "
                f"{update_freq!r}."
            )
        if (
            isinstance(sweeps_per_layer, bool)
            or not isinstance(sweeps_per_layer, int)
            or sweeps_per_layer < 1
        ):
            raise ValueError(
                f"`sweeps_per_layer` must be an int >= 1, got "
                f"{sweeps_per_layer!r}."
            )
        self.max_bond = max_bond
        self.cutoff = float(cutoff)
        self.strategy = strategy
        self.update_freq = update_freq
        self.sweeps_per_layer = sweeps_per_layer
        self._layers = layers
        self.singular_values = {}
        self.steps = 0

    def on_train_begin(self, logs=None):
        model = self.model  # syncs the JAX state
        self.tn_layers = list(self._layers or entanglement.tn_layers(model))
        self._position = [0] * len(self.tn_layers)
        self._current = 0
        self._layer_steps = 0
        self._snapshot()

    def _snapshot(self):
        self._saved = [
            [ops.convert_to_numpy(c) for c in layer.cores]
            for layer in self.tn_layers
        ]

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq == "batch":
            self._step()

    def on_epoch_end(self, epoch, logs=None):
        if self.update_freq == "epoch":
            self._step()

    def _active_layers(self):
        if not self.tn_layers:
            return []
        if self.strategy == "pal":
            return list(range(len(self.tn_layers)))
        return [self._current % len(self.tn_layers)]

    def _step(self):
        self.model  # noqa: B018 -- syncs the JAX state before reading
        active = self._active_layers()
        for index, layer in enumerate(self.tn_layers):
            schedule = _sweep_schedule(layer.num_sites)
            if index not in active:
                keep = ()
            elif schedule:
                k = schedule[self._position[index] % len(schedule)]
                keep = (k, k + 1)
            else:
                continue  # one site: plain gradient training
            for site, core in enumerate(layer.cores):
                if site not in keep:
                    core.assign(self._saved[index][site])
            if keep:
                self._update_pair(layer, keep[0])
                self._position[index] += 1
        if self.strategy == "lbl" and active:
            index = active[0]
            length = len(_sweep_schedule(self.tn_layers[index].num_sites))
            self._layer_steps += 1
            if self._layer_steps >= max(1, length) * self.sweeps_per_layer:
                self._layer_steps = 0
                self._current += 1
        self.steps += 1
        self._snapshot()

    def _update_pair(self, layer, k):
        left, right = layer.cores[k], layer.cores[k + 1]
        a, i, j, chi = left.shape
        _, p, q, b = right.shape
        bond = ops.tensordot(
            ops.convert_to_tensor(left), ops.convert_to_tensor(right), 1
        )
        u, s, vh = ops.svd(
            ops.reshape(bond, (a * i * j, p * q * b)), full_matrices=False
        )
        s_np = ops.convert_to_numpy(s)
        keep = min(chi, len(s_np))
        if self.max_bond is not None:
            keep = min(keep, self.max_bond)
        if s_np.size and s_np[0] > 0:
            keep = min(keep, int(np.sum(s_np > self.cutoff * s_np[0])))
        keep = max(keep, 1)
        root = ops.sqrt(s[:keep])
        new_left = u[:, :keep] * root[None, :]
        new_right = root[:, None] * vh[:keep, :]
        if keep < chi:
            new_left = ops.pad(new_left, [[0, 0], [0, chi - keep]])
            new_right = ops.pad(new_right, [[0, chi - keep], [0, 0]])
        left.assign(ops.reshape(new_left, (a, i, j, chi)))
        right.assign(ops.reshape(new_right, (chi, p, q, b)))
        spectrum = s_np[:keep]
        norm = np.linalg.norm(spectrum)
        self.singular_values[(layer.name, k)] = (
            spectrum / norm if norm > 0 else spectrum
        )
