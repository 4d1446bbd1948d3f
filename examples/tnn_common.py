"""Data and models shared by the TNN (Jahromi & Orus) example scripts."""

import os

import keras
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_adntn.callbacks import DMRGSweep
from keras_adntn.callbacks import EntanglementLogger
from keras_adntn.explicit.entanglement import plot_entanglement
from keras_adntn.explicit.tn_layer import TNLayer

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "output")


def spiral(n_per_class, rng, noise=0.2):
    """3-class spiral in [-1, 1]^2, shuffled."""
    xs, ys = [], []
    for c in range(3):
        r = np.linspace(0.0, 1.0, n_per_class)
        t = np.linspace(4 * c, 4 * (c + 1), n_per_class)
        t = t + rng.normal(0.0, noise, n_per_class)
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        ys.append(np.full(n_per_class, c))
    idx = rng.permutation(3 * n_per_class)
    return np.concatenate(xs)[idx].astype("float32"), np.concatenate(ys)[idx]


def tnn(in_dim, head, activations=("relu",), bond_dim=4):
    """Frozen Dense(64) adapter + TNLayer(64 units, 6 sites) stack + head."""
    stack = [keras.Input((in_dim,))]
    for k, act in enumerate(activations):
        stack.append(
            TNLayer(
                64,
                6,
                bond_dim,
                activation=act,
                input_adapter="dense" if k == 0 else None,
                seed=k,
                name=f"tn_layer{k}",
            )
        )
    stack.append(head)
    return keras.Sequential(stack)


def fit(model, x, y, sweeps, batch_size=None, max_bond=None):
    """Full-batch DMRG-like training ("pal"), entropies logged."""
    return model.fit(
        x,
        y,
        batch_size=batch_size or len(x),
        epochs=sweeps,
        verbose=0,
        callbacks=[DMRGSweep(max_bond=max_bond), EntanglementLogger()],
    )


def save_history(history, name, out_dir=OUT_DIR):
    os.makedirs(out_dir, exist_ok=True)
    return plot_entanglement(
        history, os.path.join(out_dir, f"{name}_entanglement.png"), name
    )


def new_figure():
    fig = Figure(figsize=(5, 4))
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def save_decision_boundary(model, x, y, name, out_dir=OUT_DIR):
    os.makedirs(out_dir, exist_ok=True)
    lo, hi = x.min(0) - 0.1, x.max(0) + 0.1
    g0, g1 = np.meshgrid(
        np.linspace(lo[0], hi[0], 150), np.linspace(lo[1], hi[1], 150)
    )
    grid = np.stack([g0.ravel(), g1.ravel()], 1).astype("float32")
    z = model.predict(grid, verbose=0, batch_size=4096).argmax(-1)
    fig, ax = new_figure()
    ax.contourf(g0, g1, z.reshape(g0.shape), alpha=0.3, cmap="coolwarm")
    ax.scatter(x[:, 0], x[:, 1], c=y, s=8, cmap="coolwarm")
    ax.set_title(name)
    path = os.path.join(out_dir, f"{name}_boundary.png")
    fig.savefig(path, dpi=100)
    return path


def save_fit(model, x, y, name, out_dir=OUT_DIR):
    os.makedirs(out_dir, exist_ok=True)
    xs = np.linspace(x.min(), x.max(), 200, dtype="float32")[:, None]
    fig, ax = new_figure()
    ax.scatter(x[:, 0], y[:, 0], s=6, label="data")
    ax.plot(xs[:, 0], model.predict(xs, verbose=0)[:, 0], "r", label="TNN")
    ax.legend()
    ax.set_title(name)
    path = os.path.join(out_dir, f"{name}_fit.png")
    fig.savefig(path, dpi=100)
    return path
