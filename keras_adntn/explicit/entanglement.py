"""Entanglement diagnostics of MPO layers: bond spectra, entropies, plots."""

import numpy as np
from keras import ops


def _numpy_cores(layer):
    return [
        np.asarray(ops.convert_to_numpy(c), dtype="float64")
        for c in layer.cores
    ]


def tn_layers(model):
    """Every `TNLayer` in `model`, nested models included, in order."""
    from keras_adntn.explicit.tn_layer import TNLayer

    found = []

    def visit(layer):
        if isinstance(layer, TNLayer):
            found.append(layer)
        for sub in getattr(layer, "layers", []) or []:
            visit(sub)

    visit(model)
    return found


def bond_spectra(layer):
    """Normalised Schmidt values of every inner bond of a built TNLayer.

    The weight is viewed as a state on sites `(i_k, j_k)`: the cores are
    left-orthonormalised by QR, then an SVD sweep from the right gives
    the exact singular values of each bipartition `sites <= k | > k`.

    Returns:
        List of `num_sites - 1` float64 arrays, each of unit 2-norm
        (all zeros if the weight is zero), in decreasing order.
    """
    cores = [
        c.reshape(c.shape[0], -1, c.shape[-1]) for c in _numpy_cores(layer)
    ]
    n = len(cores)
    for k in range(n - 1):
        a, d, b = cores[k].shape
        q, r = np.linalg.qr(cores[k].reshape(a * d, b))
        cores[k] = q.reshape(a, d, -1)
        cores[k + 1] = np.tensordot(r, cores[k + 1], axes=1)
    spectra = [None] * (n - 1)
    for k in range(n - 1, 0, -1):
        a, d, b = cores[k].shape
        u, s, vh = np.linalg.svd(
            cores[k].reshape(a, d * b), full_matrices=False
        )
        cores[k] = vh.reshape(-1, d, b)
        cores[k - 1] = np.tensordot(cores[k - 1], u * s, axes=1)
        norm = np.linalg.norm(s)
        spectra[k - 1] = s / norm if norm > 0 else s
    return spectra


def entropy(singular_values):
    """`S = -sum p log p` with `p = lambda^2`, lambda normalised."""
    s = np.asarray(singular_values, dtype="float64")
    total = np.sum(s**2)
    if total <= 0:
        return 0.0
    p = s**2 / total
    p = p[p > 1e-30]
    return float(-np.sum(p * np.log(p)))


def bond_entropies(layer):
    """Entanglement entropy of every inner bond of a built TNLayer."""
    return [entropy(s) for s in bond_spectra(layer)]


def entanglement_logs(model, singular_values=False):
    """`{"<layer>/S_bond<k>": S, ...}` for every TNLayer of `model`.

    Bond `k` (1-based) separates sites `1..k` from `k+1..N`. With
    `singular_values=True` the normalised spectra are added as
    `"<layer>/sv_bond<k>_<m>"` (m 0-based).
    """
    logs = {}
    for layer in tn_layers(model):
        if not layer.built:
            continue
        for k, s in enumerate(bond_spectra(layer), start=1):
            logs[f"{layer.name}/S_bond{k}"] = entropy(s)
            if singular_values:
                for m, value in enumerate(s):
                    logs[f"{layer.name}/sv_bond{k}_{m}"] = float(value)
    return logs


def plot_entanglement(history, path, title=None):
    """Saves a PNG of the loss and of every `*/S_bond*` entropy per epoch.

    Args:
        history: a `keras.callbacks.History` or its `history` dict.
        path: file path of the PNG.
        title: optional figure title.

    Returns:
        `path`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    logs = getattr(history, "history", history)
    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax_loss, ax_s = fig.subplots(1, 2)
    for key in ("loss", "val_loss"):
        if key in logs:
            ax_loss.plot(logs[key], label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    for key in sorted(k for k in logs if "/S_bond" in k):
        ax_s.plot(logs[key], label=key)
    ax_s.set_xlabel("epoch")
    ax_s.set_ylabel("entanglement entropy S")
    if ax_s.lines:
        ax_s.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
