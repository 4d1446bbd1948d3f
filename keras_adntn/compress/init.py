"""Initialising a TN layer from a trained one (data-aware or weight-only).

The generator of the new layer is fitted to the teacher's kernels. Without
data the fit is in the plain Frobenius norm; with the layer's real inputs
X it is in their metric (whitened reconstruction), so the few generator
parameters go where the data lives:

    loss = tr((K - W)^T M (K - W)) / tr(W^T M W),   M = X^T X / n

per projection (the kernel of a Dense, the im2col patches of a Conv2D,
each of the four projections of attention, averaged). When the layer has a
bias, X is centred and the bias absorbs the mean afterwards
(`b' = b + mean(X) (W - K)`), which is the exact optimum of the affine
output fit for the fitted kernel. The fit is a short Adam optimisation of
the generator cores held by a tiny Keras model, jit-compiled on JAX, on
every backend; the best cores seen are kept.

For `network="mpo"` the start point is the best (in the same loss) of the
TT-SVD of the teacher kernel and the TT-SVDs of its activation-aware
low-rank approximations `M^(-1/2) [M^(1/2) W]_r` at a few ranks `r`.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_adntn import networks
from keras_adntn.compress.arrays import to_numpy

RIDGE = 1e-6  # of the mean eigenvalue: directions the data never visits
CHUNK = 50  # Adam steps between two checks of the exact loss


def _jit():
    """XLA for the fits on JAX (eager JAX is slow); plain graphs on
    TensorFlow and PyTorch (compiling costs more than it saves here)."""
    return "auto" if keras.backend.backend() == "jax" else False


# -- the metric of the inputs
def whitening(inputs: np.ndarray, centered: bool = True) -> tuple:
    """`(R, mean)` with `R^T R` the second moment of the (centred) inputs.

    Args:
        inputs: `(samples, features)` array of a layer's real inputs (for
            a Conv2D: its im2col patches).
        centered: subtract the mean first (when a bias can absorb it).

    Returns:
        `(R, mean)`: `R` a `(features, features)` float64 matrix with
        `R^T R = (X - mean)^T (X - mean) / n` plus a tiny ridge (so that
        it is invertible), and the `(features,)` mean (zeros when not
        centred).

    Example:

    >>> r, mean = whitening(np.random.rand(100, 8))
    >>> r.shape
    (8, 8)
    """
    x = np.asarray(inputs, dtype=np.float64)
    mean = x.mean(0) if centered else np.zeros(x.shape[1])
    x = x - mean
    moment = x.T @ x / max(len(x), 1)
    values, vectors = np.linalg.eigh(moment)
    values = np.maximum(values, 0.0)
    values = values + RIDGE * max(float(values.mean()), 1e-12)
    return np.sqrt(values)[:, None] * vectors.T, mean


def rows_of(key: str, shape) -> int:
    """Rows of the `(features in, features out)` matrix a kernel acts as:
    the im2col patch size of a Conv2D kernel `(kh, kw, c_in, filters)`,
    the input size of an attention projection `(d, heads, head_dim)`,
    `heads * value_dim` of its output kernel `(heads, value_dim, out)`."""
    shape = tuple(int(s) for s in shape)
    if key == "output":
        return shape[0] * shape[1]
    if key in ("query", "key", "value"):
        return shape[0]
    return math.prod(shape[:-1])


def _as_matrix(kernel, key):
    kernel = np.asarray(kernel, dtype=np.float64)
    return kernel.reshape(rows_of(key, kernel.shape), -1)


def whitened_error(kernels: dict, targets: dict, metrics: dict) -> float:
    """Mean over projections of `||R (K - W)||^2 / ||R W||^2` (NumPy).

    Args:
        kernels: `{projection: kernel}` of the student.
        targets: `{projection: kernel}` of the teacher (same shapes).
        metrics: `{projection: R or None}` (None: the identity).

    Returns:
        The loss of the fit, a float (0: exact).

    Example:

    >>> whitened_error({"k": w}, {"k": w}, {"k": None})  # doctest: +SKIP
    0.0
    """
    total = 0.0
    for key, target in targets.items():
        r = metrics.get(key)
        want = _as_matrix(target, key)
        diff = np.asarray(kernels[key], np.float64).reshape(want.shape) - want
        if r is not None:
            diff, want = r @ diff, r @ want
        total += float(np.sum(diff**2)) / max(float(np.sum(want**2)), 1e-30)
    return total / max(len(targets), 1)


class _WhitenedFit(keras.Model):
    """Holds only the generators, so only their cores train; `call`
    returns the whitened reconstruction loss broadcast to the batch."""

    def __init__(self, new, targets, metrics, **kwargs):
        super().__init__(**kwargs)
        self.generators = _generators(new)
        self._layer_fn = lambda: new
        self._keys = list(targets)
        self._rows = {k: rows_of(k, t.shape) for k, t in targets.items()}
        self._whiten = {}
        self._targets = {}
        self._scales = {}
        for key, target in targets.items():
            r = metrics.get(key)
            t = _as_matrix(target, key)
            if r is not None:
                t = r @ t
                self._whiten[key] = r.astype("float32")
            self._targets[key] = t.astype("float32")
            self._scales[key] = 1.0 / max(float(np.sum(t**2)), 1e-30)

    def call(self, x):
        got = generated_kernels(self._layer_fn())
        total = 0.0
        for key in self._keys:
            k = ops.reshape(got[key], (self._rows[key], -1))
            if key in self._whiten:
                k = ops.matmul(ops.convert_to_tensor(self._whiten[key]), k)
            target = ops.convert_to_tensor(self._targets[key])
            loss = ops.sum(ops.square(k - target))
            total = total + loss * self._scales[key]
        total = total / len(self._keys)
        return ops.zeros_like(x) + total


def _mean_prediction(y_true, y_pred):
    return ops.mean(y_pred)


def _generators(new):
    return new.generators


def _qkv_scale(new):
    """The `part_scale` of a joint QKV generator, or None."""
    return getattr(getattr(new, "qkv_kernel", None), "part_scale", None)


def generated_kernels(new) -> dict:
    """`{projection: generated kernel tensor}` of a TN layer."""
    kernels = getattr(new, "kernels", None)
    if isinstance(kernels, dict):
        return kernels
    return {"kernel": new.kernel}


def _snapshot(new):
    return [to_numpy(v) for g in _generators(new) for v in g.weights]


def _restore(new, values):
    variables = [v for g in _generators(new) for v in g.weights]
    for var, value in zip(variables, values):
        var.assign(value.astype(var.dtype))


def fit_generators(
    new, targets: dict, metrics: dict, steps: int, learning_rate: float
) -> tuple:
    """Adam steps on the generator cores of `new` (whitened loss).

    The exact loss is checked every few steps; the best cores seen
    (including the start) are kept, and a non-finite loss stops the fit.

    Args:
        new: a built TN layer.
        targets: `{projection: teacher kernel}` (NumPy).
        metrics: `{projection: R or None}` (see `whitening`).
        steps: number of Adam steps, int >= 0.
        learning_rate: Adam learning rate.

    Returns:
        `(loss at the start, loss kept)`.

    Example:

    >>> fit_generators(layer, {"kernel": w}, {"kernel": r}, 300, 1e-2)
    ... # doctest: +SKIP
    """

    def exact():
        return whitened_error(
            {k: to_numpy(v) for k, v in generated_kernels(new).items()},
            targets,
            metrics,
        )

    start = exact()
    best, best_values = start, _snapshot(new)
    if steps <= 0:
        return start, start
    fit = _WhitenedFit(new, targets, metrics, name="whitened_fit")
    fit.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=_mean_prediction,
        jit_compile=_jit(),
    )
    state = {"best": best, "values": best_values}

    class _KeepBest(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            loss = exact()
            if not math.isfinite(loss):
                self.model.stop_training = True
            elif loss < state["best"]:
                state["best"], state["values"] = loss, _snapshot(new)

    chunk = min(CHUNK, steps)
    dummy = np.zeros((chunk, 1), "float32")
    fit.fit(
        dummy,
        dummy,
        batch_size=1,
        epochs=max(1, steps // chunk),
        verbose=0,
        callbacks=[_KeepBest()],
    )
    _restore(new, state["values"])
    return start, state["best"]


# -- TT-SVD (the MPO start point)
def tt_svd_cores(network: networks.MPO, tensor: np.ndarray) -> dict:
    """MPO cores that reproduce `tensor` by TT-SVD (exact at full bond).

    Args:
        network: a built `keras_adntn.networks.MPO` with `groups=1`.
        tensor: `(radix**num_modes,)` or `(1, radix**num_modes)` values in
            the network's leaf order (`Tensorization.fold`).

    Returns:
        `{core name: (1, b_in, q, b_out) float32 array}`: left-orthogonal
        cores, truncated to the network's bond dimensions (the best
        approximation of each unfolding in turn).

    Example:

    >>> t = Tensorization((16, 8))
    >>> net = networks.MPO(num_modes=t.num_modes, bond_dim=8)
    >>> net.build()
    >>> cores = tt_svd_cores(net, t.fold(np.ones((1, 16, 8))))
    """
    if network.groups != 1:
        raise ValueError(f"`network` must have groups=1, got {network.groups}.")
    rest = np.asarray(tensor, dtype=np.float64).reshape(1, -1)
    cores = {}
    specs = network.cores
    for k, spec in enumerate(specs):
        b_in, q, b_out = spec.shape
        mat = rest.reshape(b_in * q, -1)
        if k == len(specs) - 1:
            cores[spec.name] = mat.reshape(1, b_in, q, b_out)
            break
        u, s, vt = np.linalg.svd(mat, full_matrices=False)
        r = min(b_out, len(s))
        core = np.zeros((b_in * q, b_out))
        core[:, :r] = u[:, :r]
        rest = np.zeros((b_out, vt.shape[1]))
        rest[:r] = s[:r, None] * vt[:r]
        cores[spec.name] = core.reshape(1, b_in, q, b_out)
    return {k: v.astype("float32") for k, v in cores.items()}


def _svd_targets(new, kernels):
    """`[(tensorization, network, (rows, cols) target)]` of a TN layer."""
    if not hasattr(new, "output_kernel"):
        return [(new.tensorization, new.generator, kernels["kernel"])]
    out = kernels["output"]
    pairs = [
        (
            new.output_kernel.tensorization,
            new.output_kernel.network,
            out.reshape(out.shape[0] * out.shape[1], -1),
        )
    ]
    qkv = new.qkv_kernel
    rows = qkv.tensorization.dims[0]
    blocks = []
    for key in ("query", "key", "value"):
        kernel = kernels[key].reshape(kernels[key].shape[0], -1)
        blocks.append(np.pad(kernel, ((0, rows - kernel.shape[0]), (0, 0))))
    return [(qkv.tensorization, qkv.network, np.concatenate(blocks, 1))] + pairs


def init_svd(new, kernels: dict) -> None:
    """Writes the TT-SVD of `kernels` into the MPO cores of `new`.

    Args:
        new: a built TN layer with `network="mpo"` (and `groups=1`).
        kernels: `{projection: kernel}` (NumPy) in the teacher's shapes.

    Example:

    >>> init_svd(layer, {"kernel": w})  # doctest: +SKIP
    """
    scale = _qkv_scale(new)
    if scale is not None:
        scale.assign(np.ones(scale.shape, "float32"))
    for tensorization, network, target in _svd_targets(new, kernels):
        folded = tensorization.fold(target[None])
        for name, value in tt_svd_cores(network, folded).items():
            network._vars[name].assign(value)


def activation_aware_low_rank(
    kernel, r_metric, rank: int, key: str = "kernel"
) -> np.ndarray:
    """`M^(-1/2) [M^(1/2) W]_rank`: the best rank-`rank` kernel in the
    metric of the inputs (activation-aware SVD), as a `(rows, cols)`
    array (`key` names the projection, see `rows_of`)."""
    w = _as_matrix(kernel, key)
    if r_metric is None:
        u, s, vt = np.linalg.svd(w, full_matrices=False)
        return (u[:, :rank] * s[:rank]) @ vt[:rank]
    u, s, vt = np.linalg.svd(r_metric @ w, full_matrices=False)
    return np.linalg.solve(r_metric, (u[:, :rank] * s[:rank]) @ vt[:rank])


def best_svd_start(new, targets: dict, metrics: dict) -> str:
    """TT-SVD start of an MPO: the best (in the whitened loss) of the
    teacher kernel and its activation-aware low-rank approximations.

    Returns:
        A short description of the start kept.
    """
    candidates = [("tt-svd", targets)]
    if any(m is not None for m in metrics.values()):
        chi = int(new.bond_dim)
        for rank in sorted({chi, chi * chi, 4 * chi * chi}):
            approx = {
                key: activation_aware_low_rank(
                    t, metrics.get(key), rank, key
                ).reshape(t.shape)
                for key, t in targets.items()
            }
            candidates.append((f"tt-svd of whitened rank {rank}", approx))
    best, best_name, best_values = math.inf, "tt-svd", None
    for name, kernels in candidates:
        init_svd(new, kernels)
        loss = whitened_error(
            {k: to_numpy(v) for k, v in generated_kernels(new).items()},
            targets,
            metrics,
        )
        if math.isfinite(loss) and loss < best:
            best, best_name, best_values = loss, name, _snapshot(new)
    if best_values is not None:
        _restore(new, best_values)
    return best_name


def rescale_qkv(new, targets: dict) -> None:
    """Sets the joint generator's `part_scale` so each of Wq, Wk, Wv starts
    at the teacher's RMS."""
    variable = _qkv_scale(new)
    if variable is None:
        return
    got = new.kernels
    scale = to_numpy(variable)
    for i, key in enumerate(("query", "key", "value")):
        have = math.sqrt(float(np.mean(to_numpy(got[key]) ** 2)))
        want = math.sqrt(float(np.mean(targets[key] ** 2)))
        if have > 0 and want > 0:
            scale[:, i] *= want / have
    variable.assign(scale.astype("float32"))


def correct_biases(new, targets: dict, biases: dict, means: dict) -> None:
    """Biases that absorb the mean input: `b + mean (W - K)` per
    projection (`means[key]` None: the teacher's bias as it is)."""
    if not getattr(new, "use_bias", False):
        return
    got = {k: to_numpy(v) for k, v in generated_kernels(new).items()}
    slots = new.biases if hasattr(new, "biases") else {"kernel": new.bias}
    for key, bias in biases.items():
        if bias is None:
            continue
        value = np.asarray(bias, dtype=np.float64)
        mean = means.get(key)
        if mean is not None:
            delta = _as_matrix(targets[key], key) - _as_matrix(got[key], key)
            value = value + (mean @ delta).reshape(value.shape)
        slots[key].assign(value.reshape(slots[key].shape).astype("float32"))
