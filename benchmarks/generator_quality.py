"""Generator quality vs random features (issue 16).

Two generated tasks where a wide 1024 x 1024 layer matters, each run with
the middle layer removed, trained Dense, Dense frozen at its random init,
low-rank U.V, every TN network at >= 500x, and prototype fixes (all kept in
this script; the package is not changed):

- ``signal``: 1-D, 40 samples, 10 classes ("which of 5 motifs, and does it
  come before a marker motif"), MLP 40 -> 1024 -> [middle, relu] -> 10.
- ``image``: 2-D, 16 x 16 images with 3 x 3 motifs, same rule;
  Conv2D(16, 3, relu) -> MaxPool 2 -> flatten (1024) -> [middle, relu] -> 10.

Recovered gain = (acc - removed) / (dense - removed), per seed and lr.
Per-epoch diagnostics (kernel std, relative kernel change per epoch and per
step, core change) and singular-value spectra (seed 0) are recorded.

    python benchmarks/generator_quality.py                  # full run
    python benchmarks/generator_quality.py --epochs 2 --seeds 0 \
        --tasks signal --variants removed dense ttn         # quick
    python benchmarks/generator_quality.py --report-only    # md/png only

Results are appended to the JSON as runs finish (a rerun skips done runs).
"""

import argparse
import json
import os
import time

import keras
import numpy as np
from keras import ops

from keras_adntn.layers import TNDense

UNITS = 1024
DENSE_PARAMS = UNITS * UNITS + UNITS
NETWORKS = ["ttn", "attn", "mera", "brickwall", "mpo"]
VARIANTS = [
    "removed",
    "dense",
    "frozen",
    "lowrank1",
    *NETWORKS,
    "ttn_frozen_init",
    "ttn_gain",
    "ttn_core_lr10",
    "ttn_norm",
    "ttn_norm_lr3",
    "ttn_hybrid_add",
    "ttn_hybrid_norm",
    "ttn_hybrid_mul",
    *[f"ttn_{a}" for a in ("siren", "tanh", "relu", "rational")],
    "ttn_latent4",
    "mpo_orth",
    "mpo_orth_frozen",
    "mpo_orth+clr0.2",
    "mpo_orth+g8",
    "mpo+g8",
    "kron_frozen",
    "kronscale_s_3_f",
]
# the package's own knobs, untuned otherwise: generator activation, and a
# larger latent (more independent roots) at about the same budget
KNOBS = {
    **{
        f"ttn_{a}": {"generator_activation": a}
        for a in ("siren", "tanh", "relu", "rational")
    },
    "ttn_latent4": {"latent_order": 4},
}
HERE = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------- data


def _place(rng, n, length, motifs, noise, dims):
    """Motif `ids` (0..4) and a marker (5) at random, non-overlapping places;
    label = 2 * id + (motif comes before the marker, row-major)."""
    k = motifs.shape[1]
    x = noise * rng.standard_normal((n,) + (length,) * dims)
    ids = rng.integers(0, 5, n)
    y = np.zeros(n, int)
    for i in range(n):
        while True:
            p = rng.integers(0, length - k + 1, (2, dims))
            if np.any(np.abs(p[0] - p[1]) >= k):
                break
        for m, q in ((motifs[ids[i]], p[0]), (motifs[5], p[1])):
            sl = (i,) + tuple(slice(q[d], q[d] + k) for d in range(dims))
            x[sl] += rng.uniform(0.7, 1.3) * m
        y[i] = 2 * ids[i] + int(tuple(p[0]) < tuple(p[1]))
    return x.astype("float32"), y


def make_task(name, n_train=4000, n_test=4000):
    rng = np.random.default_rng(20261202)
    if name == "signal":
        motifs = rng.choice([-1.0, 1.0], (6, 5))
        args = (40, motifs, 0.2, 1)
    else:
        motifs = rng.choice([-1.0, 1.0], (6, 3, 3))
        args = (16, motifs, 0.2, 2)
    x, y = _place(rng, n_train, *args)
    xt, yt = _place(rng, n_test, *args)
    if name == "image":
        x, xt = x[..., None], xt[..., None]
    return x, y, xt, yt


# ------------------------------------------------------------ prototypes


class EffectiveKernelCall:
    """`call` of the prototypes: `activation(x @ effective_kernel() +
    bias)`, the kernel a subclass's `effective_kernel` makes."""

    def call(self, inputs, training=None):
        x = ops.matmul(inputs, self.effective_kernel()) + self.bias
        return self.activation(x)


def add_random_kernel(layer, shape, seed, kind="iid"):
    """A frozen (non-trainable) `random_kernel` weight of `shape` on
    `layer`: seeded glorot-uniform (`"iid"`) or the leading rows of a
    Kronecker product of random orthogonals (`"kron"`)."""
    if kind == "kron":
        init = kron_orthogonal(shape[1], seed)[: shape[0]]
        initializer = lambda shape, dtype=None: init  # noqa: E731
    else:
        initializer = keras.initializers.GlorotUniform(seed)
    return layer.add_weight(
        name="random_kernel",
        shape=shape,
        initializer=initializer,
        trainable=False,
    )


class GainTNDense(EffectiveKernelCall, TNDense):
    """(a) kernel = G * gain[None, :], gain learnable, init 1."""

    def build(self, input_shape):
        super().build(input_shape)
        self.gain = self.add_weight(
            name="gain", shape=(self.units,), initializer="ones"
        )

    def effective_kernel(self):
        return self._generate()["kernel"] * self.gain[None, :]


class NormTNDense(EffectiveKernelCall, TNDense):
    """(d) kernel = G * s0 / std(G): the generated kernel's scale is pinned
    to the calibrated glorot std s0 (no parameters); the cores only move
    its direction. `hybrid=True`: kernel = R + G * s0 / std(G)."""

    def __init__(
        self, units, hybrid=False, random_seed=0, loggain=False, **kwargs
    ):
        super().__init__(units, **kwargs)
        self.hybrid = hybrid
        self.random_seed = random_seed
        self.loggain = loggain

    def build(self, input_shape):
        super().build(input_shape)
        self.s0 = float(np.std(np.asarray(self._generate()["kernel"])))
        if self.loggain:
            self.log_gain = self.add_weight(
                name="log_gain", shape=(), initializer="zeros"
            )
        if self.hybrid:
            self.random_kernel = add_random_kernel(
                self, (self.input_dim, self.units), self.random_seed
            )

    def effective_kernel(self):
        g = self._generate()["kernel"]
        g = g * (self.s0 / ops.sqrt(ops.mean(ops.square(g - ops.mean(g)))))
        if self.loggain:
            g = g * ops.exp(self.log_gain)
        return self.random_kernel + g if self.hybrid else g


class HybridTNDense(EffectiveKernelCall, TNDense):
    """(b) kernel = R + G ("add") or R * (1 + G) ("mul"), R a frozen
    glorot-uniform matrix drawn from `random_seed` (regenerable: counted as
    0 stored parameters; here a non-trainable weight for simplicity)."""

    def __init__(self, units, mode="add", random_seed=0, **kwargs):
        super().__init__(units, **kwargs)
        self.mode = mode
        self.random_seed = random_seed

    def build(self, input_shape):
        super().build(input_shape)
        self.random_kernel = add_random_kernel(
            self, (self.input_dim, self.units), self.random_seed
        )

    def effective_kernel(self):
        g = self._generate()["kernel"]
        if self.mode == "add":
            return self.random_kernel + g
        return self.random_kernel * (1.0 + g)


def kron_orthogonal(n, seed, radix=2):
    """`Q_1 (x) ... (x) Q_k`, each a Haar-random `radix x radix` orthogonal
    matrix (n = radix**k): orthogonal, entries of mean square 1 / n."""
    rng = np.random.default_rng(seed)
    out = np.ones((1, 1))
    while out.shape[0] < n:
        q, r = np.linalg.qr(rng.standard_normal((radix, radix)))
        out = np.kron(out, q * np.sign(np.diag(r)))
    return out.astype("float32")


class GatedHybridTNDense(EffectiveKernelCall, TNDense):
    """kernel = R + a * G: R frozen (`"iid"` glorot, `"kron"` a Kronecker
    product of random orthogonals, `"none"`), `a` a trainable scalar
    starting at 0 (the layer starts as the frozen random layer)."""

    def __init__(self, units, random="iid", random_seed=0, **kwargs):
        super().__init__(units, **kwargs)
        self.random = random
        self.random_seed = random_seed

    def build(self, input_shape):
        super().build(input_shape)
        self.random_kernel = add_random_kernel(
            self, (self.input_dim, self.units), self.random_seed, self.random
        )
        self.gate = self.add_weight(name="gate", shape=(), initializer="zeros")

    def effective_kernel(self):
        return self.random_kernel + self.gate * self._generate()["kernel"]


class ScaledKronDense(EffectiveKernelCall, keras.layers.Layer):
    """kernel = K * gain: K a frozen Kronecker product of random
    orthogonals (seeded), gain `()` or `(units,)`, trainable or not."""

    def __init__(
        self,
        units,
        per_output,
        gain,
        trainable_gain,
        seed,
        activation=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units, self.per_output, self.gain0 = units, per_output, gain
        self.trainable_gain, self.seed = trainable_gain, seed
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        self.random_kernel = add_random_kernel(
            self, (input_shape[-1], self.units), self.seed, "kron"
        )
        self.gain = self.add_weight(
            name="gain",
            shape=(self.units,) if self.per_output else (),
            initializer=keras.initializers.Constant(self.gain0),
            trainable=self.trainable_gain,
        )
        self.bias = self.add_weight(
            name="bias", shape=(self.units,), initializer="zeros"
        )

    def effective_kernel(self):
        return self.random_kernel * self.gain


def mpo_kron_init(layer, seed, noise=1e-2):
    """MPO cores set to a Kronecker product of random 2 x 2 orthogonals on
    bond channel 0, small noise elsewhere."""
    rng = np.random.default_rng(seed)
    for v in layer.trainable_weights:
        if "site" not in v.path:
            continue
        shape = tuple(v.shape)  # (groups, left, radix**2, right)
        core = noise * rng.standard_normal(shape)
        q, r = np.linalg.qr(rng.standard_normal((2, 2)))
        core[0, 0, :, 0] = (q * np.sign(np.diag(r))).ravel()
        v.assign(core.astype("float32"))


class CoreScaledAdamW(keras.optimizers.AdamW):
    """(c) AdamW whose learning rate is `core_scale` x larger on the
    generator cores (variables of the layer `middle` other than its bias)."""

    def __init__(self, core_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.core_scale = core_scale

    def update_step(self, gradient, variable, learning_rate):
        path = variable.path
        if "middle/" in path and not path.endswith("bias"):
            learning_rate = learning_rate * self.core_scale
        super().update_step(gradient, variable, learning_rate)


# ---------------------------------------------------------------- models


def middle_layer(variant, seed):
    relu = dict(activation="relu", name="middle")
    extra = {}
    if "+" in variant:  # "<base>+<option>...": options act elsewhere
        variant, *options = variant.split("+")
        keys = {"b": "bond_dim", "g": "generator_groups"}
        extra = {
            keys[o[0]]: int(o[1:])
            for o in options
            if o[0] in keys and o[1:].isdigit()
        }
        if "norm" in options:
            return [
                NormTNDense(
                    UNITS,
                    network=variant,
                    seed=seed,
                    loggain="lg" in options,
                    **extra,
                    **relu,
                )
            ]
        if variant in NETWORKS:
            return [TNDense(UNITS, network=variant, seed=seed, **extra, **relu)]
    if variant == "removed":
        return []
    if variant in ("dense", "frozen"):
        return [keras.layers.Dense(UNITS, trainable=variant == "dense", **relu)]
    if variant == "lowrank1":
        return [
            keras.layers.Dense(1, use_bias=False, name="lowrank_v"),
            keras.layers.Dense(UNITS, **relu),
        ]
    if variant in NETWORKS:
        return [TNDense(UNITS, network=variant, seed=seed, **relu)]
    if variant in KNOBS:
        return [TNDense(UNITS, seed=seed, **KNOBS[variant], **relu)]
    if variant == "ttn_frozen_init":
        return [TNDense(UNITS, seed=seed, **relu)]  # cores frozen later
    if variant in ("mpo_orth", "mpo_orth_frozen"):
        return [
            TNDense(
                UNITS,
                network="mpo",
                generator_init="orthogonal",
                trainable=variant == "mpo_orth",
                seed=seed,
                **extra,
                **relu,
            )
        ]
    if variant.startswith("gate_"):  # gate_<random>_<network>
        _, rnd, net = variant.split("_")
        return [
            GatedHybridTNDense(
                UNITS, rnd, seed + 1000, network=net, seed=seed, **relu
            )
        ]
    if variant.startswith("kronscale_"):  # kronscale_<s|n>_<gain>_<t|f>
        _, kind, gain, train = variant.split("_")
        return [
            ScaledKronDense(
                UNITS,
                kind == "n",
                float(gain),
                train == "t",
                seed + 1000,
                **relu,
            )
        ]
    if variant == "kron_frozen":
        return [GatedHybridTNDense(UNITS, "kron", seed + 1000, **relu)]
    if variant == "mpo_kroninit":
        return [TNDense(UNITS, network="mpo", seed=seed, **relu)]
    if variant in ("ttn_norm", "ttn_norm_lr3"):
        return [NormTNDense(UNITS, seed=seed, **relu)]
    if variant == "ttn_hybrid_norm":
        return [NormTNDense(UNITS, True, seed + 1000, seed=seed, **relu)]
    if variant == "ttn_core_lr10":
        return [TNDense(UNITS, seed=seed, **relu)]
    if variant == "ttn_gain":
        return [GainTNDense(UNITS, seed=seed, **relu)]
    if variant == "ttn_hybrid_add":
        return [HybridTNDense(UNITS, "add", seed + 1000, seed=seed, **relu)]
    if variant == "ttn_hybrid_mul":
        init = keras.initializers.RandomNormal(stddev=0.5)
        return [
            HybridTNDense(
                UNITS,
                "mul",
                seed + 1000,
                seed=seed,
                kernel_initializer=init,
                **relu,
            )
        ]
    raise ValueError(variant)


def build_model(task, variant, seed, input_shape):
    keras.utils.set_random_seed(seed)
    if task == "signal":
        front = [keras.layers.Dense(UNITS, activation="relu")]
    else:
        front = [
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
        ]
    model = keras.Sequential(
        [keras.Input(input_shape)]
        + front
        + middle_layer(variant, seed)
        + [keras.layers.Dense(10)]
    )
    if variant == "mpo_kroninit" or "+kron" in variant:
        mpo_kron_init(model.get_layer("middle"), seed)
        layer = model.get_layer("middle")
        if isinstance(layer, NormTNDense):
            layer.s0 = float(np.std(np.asarray(layer._generate()["kernel"])))
    if variant == "kron_frozen":
        for v in model.get_layer("middle").weights:
            if not v.path.endswith("bias"):
                v.trainable = False
    if variant == "ttn_frozen_init":
        # `trainable=False` on a TNDense does not stop its cores training
        # (measured: the kernel still moves); freeze every core instead.
        for v in model.get_layer("middle").weights:
            if not v.path.endswith("bias"):
                v.trainable = False
    return model


def layer_kernel(model):
    """The (1024, 1024) kernel the middle layer applies, as numpy."""
    try:
        layer = model.get_layer("middle")
    except ValueError:
        return None
    if hasattr(layer, "effective_kernel"):
        return np.asarray(layer.effective_kernel())
    if isinstance(layer, TNDense):
        return np.asarray(layer.kernel)
    return np.asarray(layer.kernel)


def stored_params(model, variant):
    if variant == "removed":
        return 0
    if variant == "lowrank1":
        return model.get_layer("lowrank_v").count_params() + (
            model.get_layer("middle").count_params()
        )
    layer = model.get_layer("middle")
    if variant == "mpo_orth_frozen":  # stored (cores and bias), not trained
        return layer.count_params()
    return int(sum(np.prod(v.shape) for v in layer.trainable_weights))


def core_vector(model):
    try:
        layer = model.get_layer("middle")
    except ValueError:
        return None
    ws = [
        np.asarray(v).ravel()
        for v in layer.trainable_weights
        if not v.path.endswith("bias")
    ]
    return np.concatenate(ws) if ws else None


class Probe(keras.callbacks.Callback):
    """Kernel std and relative changes per epoch; per step for the first
    `steps` steps of training."""

    def __init__(self, steps=8):
        super().__init__()
        self.steps = steps
        self.log = {
            "kernel_std": [],
            "kernel_rel_change_epoch": [],
            "core_rel_change_epoch": [],
            "kernel_rel_change_step": [],
            "core_rel_change_step": [],
            "loss": [],
        }
        self.step = 0

    def _snap(self):
        return layer_kernel(self.model), core_vector(self.model)

    @staticmethod
    def _rel(a, b):
        if a is None or b is None:
            return None
        return float(np.linalg.norm(b - a) / (np.linalg.norm(a) + 1e-12))

    def on_train_begin(self, logs=None):
        self.k0, self.c0 = self._snap()
        self.kp, self.cp = self.k0, self.c0
        if self.k0 is not None:
            self.log["kernel_std"].append(float(self.k0.std()))

    def on_train_batch_end(self, batch, logs=None):
        if self.step < self.steps and self.k0 is not None:
            k, c = self._snap()
            self.log["kernel_rel_change_step"].append(self._rel(self.sk, k))
            self.log["core_rel_change_step"].append(self._rel(self.sc, c))
            self.sk, self.sc = k, c
        self.step += 1

    def on_train_batch_begin(self, batch, logs=None):
        if self.step == 0 and self.k0 is not None:
            self.sk, self.sc = self.k0, self.c0

    def on_epoch_end(self, epoch, logs=None):
        self.log["loss"].append(float(logs["loss"]))
        if self.k0 is None:
            return
        k, c = self._snap()
        self.log["kernel_std"].append(float(k.std()))
        self.log["kernel_rel_change_epoch"].append(self._rel(self.kp, k))
        self.log["core_rel_change_epoch"].append(self._rel(self.cp, c))
        self.kp, self.cp = k, c


def spectrum(kernel):
    s = np.linalg.svd(kernel.astype("float64"), compute_uv=False)
    p = s / s.sum()
    return {
        "sv": [float(v) for v in s],
        "effective_rank": float(np.exp(-(p * np.log(p + 1e-300)).sum())),
        "stable_rank": float((s**2).sum() / s[0] ** 2),
    }


def run_one(task, data, variant, seed, lr, epochs, want_spectra):
    x, y, xt, yt = data
    model = build_model(task, variant, seed, x.shape[1:])
    kwargs = dict(learning_rate=lr)
    options = variant.split("+")[1:]
    clr = [float(o[3:]) for o in options if o.startswith("clr")]
    if clr:
        opt = CoreScaledAdamW(core_scale=clr[0], **kwargs)
    elif variant.endswith(("_lr10", "_lr3")):
        scale = float(variant.rsplit("_lr", 1)[1])
        opt = CoreScaledAdamW(core_scale=scale, **kwargs)
    else:
        opt = keras.optimizers.AdamW(**kwargs)
    model.compile(
        opt,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    probe = Probe()
    k_init = layer_kernel(model) if want_spectra else None
    start = time.time()
    model.fit(x, y, batch_size=128, epochs=epochs, verbose=0, callbacks=[probe])
    seconds = time.time() - start
    acc = float(model.evaluate(xt, yt, verbose=0, batch_size=1000)[1])
    params = stored_params(model, variant)
    out = {
        "task": task,
        "variant": variant,
        "seed": seed,
        "lr": lr,
        "epochs": epochs,
        "acc": acc,
        "stored_params": params,
        "ratio": DENSE_PARAMS / params if params else None,
        "seconds": seconds,
        "probe": probe.log,
    }
    if want_spectra and k_init is not None:
        out["spectrum_init"] = spectrum(k_init)
        out["spectrum_final"] = spectrum(layer_kernel(model))
    return out


# ---------------------------------------------------------------- report


def key(r):
    return (r["task"], r["variant"], r["seed"], r["lr"], r["epochs"])


def summarise(results):
    """rows[task][variant][lr] = dict(accs, gains, ...)."""
    base = {}
    for r in results:
        if r["variant"] in ("removed", "dense"):
            base[(r["task"], r["variant"], r["seed"], r["lr"])] = r["acc"]
    rows = {}
    for r in results:
        t, v, s, lr = r["task"], r["variant"], r["seed"], r["lr"]
        rem, den = (
            base.get((t, "removed", s, lr)),
            base.get((t, "dense", s, lr)),
        )
        fro, orth = (
            [
                q["acc"]
                for q in results
                if (q["task"], q["variant"], q["seed"], q["lr"])
                == (t, control, s, lr)
            ]
            for control in ("frozen", "mpo_orth_frozen")
        )
        cell = (
            rows.setdefault(t, {})
            .setdefault(v, {})
            .setdefault(
                lr,
                {
                    "accs": [],
                    "gains": [],
                    "beats_frozen": [],
                    "beats_orth": [],
                    "params": r["stored_params"],
                    "ratio": r["ratio"],
                    "seconds": [],
                },
            )
        )
        cell["accs"].append(r["acc"])
        cell["seconds"].append(r["seconds"])
        if rem is not None and den is not None and den != rem:
            cell["gains"].append((r["acc"] - rem) / (den - rem))
        if fro:
            cell["beats_frozen"].append(r["acc"] > fro[0])
        if orth:
            cell["beats_orth"].append(r["acc"] > orth[0])
    return rows


def write_report(results, out_dir, lrs):
    rows = summarise(results)
    lines = [
        "# Generator quality vs random features (issue 16)",
        "",
        "Written by `benchmarks/generator_quality.py`. Accuracy on 4,000 test",
        "examples; gain = (acc - removed) / (dense - removed) per seed, then",
        "averaged; `> frozen` counts seeds on which the variant beats the",
        "frozen random layer (Dense frozen at its glorot init), `> orth`",
        "those on which it beats the frozen orthogonal generator",
        "(`mpo_orth_frozen`). Stored params = trainable parameters of the",
        "middle layer (the hybrid's seeded random matrix counts 0;",
        "`mpo_orth_frozen`: its cores and bias, stored but not trained).",
        "",
    ]
    for task, vs in rows.items():
        seeds = sorted({r["seed"] for r in results if r["task"] == task})
        ep = sorted({r["epochs"] for r in results if r["task"] == task})
        lines += [
            f"## {task} (seeds {seeds}, epochs {ep}, AdamW, batch 128)",
            "",
            "| middle layer | stored params | ratio | s / run | "
            + " | ".join(
                f"acc lr {lr:g} | gain | > frozen | > orth" for lr in lrs
            )
            + " |",
            "|---|---:|---:|---:|" + "---:|---:|---:|---:|" * len(lrs),
        ]
        for v in VARIANTS:
            if v not in vs:
                continue
            any_cell = next(iter(vs[v].values()))
            ratio = any_cell["ratio"]
            secs = np.mean([t for c in vs[v].values() for t in c["seconds"]])
            cells = []
            for lr in lrs:
                c = vs[v].get(lr)
                if not c:
                    cells += ["", "", "", ""]
                    continue
                a = np.array(c["accs"])
                g = np.array(c["gains"]) if c["gains"] else None
                cells.append(f"{a.mean():.3f} ± {a.std():.3f}")
                cells.append(
                    f"{g.mean():.2f} [{g.min():.2f}, {g.max():.2f}]"
                    if g is not None
                    else ""
                )
                bf = c["beats_frozen"]
                cells.append(f"{sum(bf)}/{len(bf)}" if bf else "")
                bo = c["beats_orth"]
                cells.append(f"{sum(bo)}/{len(bo)}" if bo else "")
            lines.append(
                f"| {v} | {any_cell['params']:,} | "
                + (f"{ratio:,.0f}x" if ratio else "-")
                + f" | {secs:.0f} | "
                + " | ".join(cells)
                + " |"
            )
        lines.append("")
        lines += diagnostics(results, task)
    with open(os.path.join(out_dir, "generator_quality.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    plot(results, rows, out_dir, lrs)


def diagnostics(results, task):
    lines = [
        f"### {task}: diagnostics (seed 0, lr 1e-3 unless said)",
        "",
        "| middle layer | eff. rank init | eff. rank final | stable rank "
        "init | stable rank final | kernel std init -> final | rel. kernel "
        "change / step (first 8) | rel. core change / step |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        if r["task"] != task or "spectrum_init" not in r:
            continue
        p = r["probe"]
        ks = p["kernel_std"]
        step = [v for v in p["kernel_rel_change_step"] if v is not None]
        core = [v for v in p["core_rel_change_step"] if v is not None]
        lines.append(
            f"| {r['variant']} (lr {r['lr']:g}) | "
            f"{r['spectrum_init']['effective_rank']:.0f} | "
            f"{r['spectrum_final']['effective_rank']:.0f} | "
            f"{r['spectrum_init']['stable_rank']:.1f} | "
            f"{r['spectrum_final']['stable_rank']:.1f} | "
            f"{ks[0]:.4f} -> {ks[-1]:.4f} | "
            + (f"{np.mean(step):.2e}" if step else "-")
            + " | "
            + (f"{np.mean(core):.2e}" if core else "-")
            + " |"
        )
    lines += [
        "",
        f"Kernel std per epoch ({task}, seed 0, lr 1e-3; glorot std 0.0313):",
        "",
        "| middle layer | init | ep 1 | ep 2 | ep 4 | ep 8 | last |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if (
            r["task"] != task
            or r["seed"] != 0
            or r["lr"] != 1e-3
            or not r["probe"]["kernel_std"]
        ):
            continue
        ks = r["probe"]["kernel_std"]
        cells = [ks[i] if i < len(ks) else np.nan for i in (0, 1, 2, 4, 8)]
        lines.append(
            f"| {r['variant']} | "
            + " | ".join(f"{c:.3f}" for c in cells + [ks[-1]])
            + " |"
        )
    lines.append("")
    return lines


def plot(results, rows, out_dir, lrs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(rows)
    fig, axes = plt.subplots(
        len(tasks), 3, figsize=(17, 4.5 * len(tasks)), squeeze=False
    )
    for i, task in enumerate(tasks):
        ax = axes[i][0]
        vs = [v for v in VARIANTS if v in rows[task]]
        for j, lr in enumerate(lrs):
            means = [
                np.mean(rows[task][v][lr]["accs"])
                if lr in rows[task][v]
                else np.nan
                for v in vs
            ]
            ax.bar(
                np.arange(len(vs)) + 0.4 * j - 0.2,
                means,
                0.4,
                label=f"lr {lr:g}",
            )
        for lr, ls in zip(lrs, ["--", ":"]):
            for v, col in (("removed", "k"), ("frozen", "r")):
                if lr in rows[task].get(v, {}):
                    ax.axhline(
                        np.mean(rows[task][v][lr]["accs"]),
                        color=col,
                        ls=ls,
                        lw=0.8,
                    )
        accs = [np.mean(c["accs"]) for v in vs for c in rows[task][v].values()]
        if accs:  # a partial run may hold none of the plotted variants
            ax.set_ylim(min(accs) - 0.02, None)
        ax.set_xticks(range(len(vs)))
        ax.set_xticklabels(vs, rotation=60, ha="right", fontsize=8)
        ax.set_title(f"{task}: test accuracy (black removed, red frozen)")
        ax.legend(fontsize=8)
        ax = axes[i][1]
        for r in results:
            if r["task"] == task and "spectrum_init" in r:
                sv = np.array(r["spectrum_final"]["sv"])
                ax.semilogy(sv / sv[0], label=f"{r['variant']} final")
                if r["variant"] in ("dense", "ttn"):
                    sv = np.array(r["spectrum_init"]["sv"])
                    ax.semilogy(sv / sv[0], "--", label=f"{r['variant']} init")
        ax.set_title(f"{task}: singular values / max (seed 0)")
        ax.legend(fontsize=7)
        ax = axes[i][2]
        for r in results:
            if (
                r["task"] == task
                and r["seed"] == 0
                and r["lr"] == lrs[0]
                and r["variant"]
                in ("removed", "dense", "frozen", "ttn", "ttn_hybrid_add")
            ):
                ax.plot(r["probe"]["loss"], label=r["variant"])
        ax.set_yscale("log")
        ax.set_title(f"{task}: training loss, seed 0, lr {lrs[0]:g}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "generator_quality.png"), dpi=90)


# ------------------------------------------------------------------ main


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["signal", "image"])
    p.add_argument("--variants", nargs="+", default=VARIANTS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument(
        "--spectra-variants",
        nargs="+",
        default=[
            "dense",
            "frozen",
            "ttn",
            "ttn_hybrid_add",
            "mpo",
            "mpo_orth",
            "mpo_orth_frozen",
        ],
    )
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "generator_quality.json")
    results = []
    if os.path.exists(path):
        with open(path) as f:
            results = json.load(f)["runs"]
    done = {key(r) for r in results}
    if not args.report_only:
        for task in args.tasks:
            data = make_task(task)
            for seed in args.seeds:
                for lr in args.lrs:
                    for v in args.variants:
                        if (task, v, seed, lr, args.epochs) in done:
                            continue
                        spectra = (
                            seed == 0
                            and lr == args.lrs[0]
                            and v in args.spectra_variants
                        )
                        r = run_one(
                            task, data, v, seed, lr, args.epochs, spectra
                        )
                        results.append(r)
                        print(
                            f"{task:6} {v:16} seed {seed} lr {lr:g}: "
                            f"acc {r['acc']:.3f} params {r['stored_params']}"
                            f" ({r['seconds']:.0f} s)",
                            flush=True,
                        )
                        with open(path, "w") as f:
                            json.dump({"runs": results}, f)
    write_report(results, args.out, args.lrs)


if __name__ == "__main__":
    main()
