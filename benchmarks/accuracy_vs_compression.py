"""Accuracy vs compression on sklearn digits, with honest controls.

    KERAS_BACKEND=jax python benchmarks/accuracy_vs_compression.py

One layer of an MLP and of a CNN is, in turn: dense (the Keras layer); each
generator network at two bond dims; a low-rank U.V factorisation with as
many parameters as the ttn layer at bond_dim 2; a frozen random layer
(seeded, regenerable: ~0 stored bytes); the MPO with
`generator_init="orthogonal"` trained (`mpo_orth`) and frozen
(`mpo_orth_frozen`, MLP only: the 3 x 3 conv kernel is not a power of two
per axis); and the layer removed. Each variant
is trained from scratch with 3 seeds (mean +- std of test accuracy).

Configurations (chosen so the layer is worth several points over removing
it; a narrow bottleneck in front of a wide nonlinear layer):
- MLP: 64 -> Dense(8, tanh) -> [8 -> 512, relu] -> Dense(10)
- CNN: 8x8x1 -> Conv2D(4, 3, tanh) -> [3x3 conv 4 -> 32, relu]
       -> GlobalAveragePooling2D -> Dense(10)

Writes benchmarks/results/accuracy_vs_compression.{json,md,png}.
"""

import argparse
import json
import os
import time

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from keras_adntn import TNConv2D
from keras_adntn import TNDense

NETWORKS = ["ttn", "attn", "mera", "brickwall", "mpo"]
HERE = os.path.dirname(os.path.abspath(__file__))


def data():
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    return train_test_split(
        x, digits.target, test_size=0.5, random_state=0, stratify=digits.target
    )


def layer_under_test(kind, variant, seed, rank):
    """Returns (list of layers, stored-parameter counter)."""
    conv = kind == "cnn"
    out = 32 if conv else 512
    args = {"activation": "relu"}
    if variant == "removed":
        return []
    if variant == "dense":
        return [
            keras.layers.Conv2D(out, 3, padding="same", **args)
            if conv
            else keras.layers.Dense(out, **args)
        ]
    if variant == "frozen":
        init = keras.initializers.GlorotUniform(seed=seed)
        layer = (
            keras.layers.Conv2D(
                out, 3, padding="same", kernel_initializer=init, **args
            )
            if conv
            else keras.layers.Dense(out, kernel_initializer=init, **args)
        )
        layer.trainable = False
        return [layer]
    if variant == "lowrank":
        if conv:
            return [
                keras.layers.Conv2D(rank, 3, padding="same", use_bias=False),
                keras.layers.Conv2D(out, 1, **args),
            ]
        return [
            keras.layers.Dense(rank, use_bias=False),
            keras.layers.Dense(out, **args),
        ]
    if variant.startswith("mpo_orth"):
        return [
            TNDense(
                out,
                network="mpo",
                generator_init="orthogonal",
                trainable=variant == "mpo_orth-2",
                seed=seed,
                **args,
            )
        ]
    network, bond = variant.rsplit("-", 1)
    cls = TNConv2D if conv else TNDense
    extra = {"kernel_size": 3, "padding": "same"} if conv else {}
    return [
        cls(
            out, network=network, bond_dim=int(bond), seed=seed, **extra, **args
        )
    ]


def build(kind, variant, seed, rank):
    if kind == "mlp":
        head = [keras.Input((64,)), keras.layers.Dense(8, activation="tanh")]
        tail = [keras.layers.Dense(10)]
    else:
        head = [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, padding="same", activation="tanh"),
        ]
        tail = [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]
    tested = layer_under_test(kind, variant, seed, rank)
    model = keras.Sequential(head + tested + tail)
    stored = sum(
        int(np.prod(w.shape))
        for layer in tested
        # a frozen generator stores its cores (a frozen Dense: a seed)
        for w in (
            layer.weights
            if variant == "mpo_orth_frozen-2"
            else layer.trainable_weights
        )
    )
    return model, stored


def run(kind, variant, seed, rank, epochs, split):
    x_train, x_test, y_train, y_test = split
    if kind == "cnn":
        x_train = x_train.reshape(-1, 8, 8, 1)
        x_test = x_test.reshape(-1, 8, 8, 1)
    keras.utils.set_random_seed(seed)
    model, stored = build(kind, variant, seed, rank)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    return model.evaluate(x_test, y_test, verbose=0)[1], stored


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--bond-dims", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    split = data()
    variants = (
        ["dense"]
        + [f"{n}-{b}" for n in NETWORKS for b in args.bond_dims]
        + ["lowrank", "frozen", "removed"]
    )
    results = {
        "backend": keras.backend.backend(),
        "epochs": args.epochs,
        "seeds": args.seeds,
        "models": {},
    }
    for kind in args.models:
        _, ttn_params = build(kind, "ttn-2", 0, 1)
        fan = (8 + 512) if kind == "mlp" else (9 * 4 + 32)
        rank = max(
            1, round((ttn_params - (512 if kind == "mlp" else 32)) / fan)
        )
        rows = {}
        orth = ["mpo_orth-2", "mpo_orth_frozen-2"] if kind == "mlp" else []
        for variant in variants[:-3] + orth + variants[-3:]:
            start = time.perf_counter()
            scores = [
                run(kind, variant, s, rank, args.epochs, split)
                for s in range(args.seeds)
            ]
            accs = [a for a, _ in scores]
            rows[variant] = {
                "stored_params": scores[0][1],
                "mean": float(np.mean(accs)),
                "std": float(np.std(accs)),
            }
            print(
                f"{kind} {variant:<12} params {scores[0][1]:>6} "
                f"acc {np.mean(accs):.4f} +- {np.std(accs):.4f} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
        gain = rows["dense"]["mean"] - rows["removed"]["mean"]
        for row in rows.values():
            row["recovered"] = (
                (row["mean"] - rows["removed"]["mean"]) / gain
                if gain > 0
                else float("nan")
            )
        results["models"][kind] = {
            "rank": rank,
            "rows": rows,
            "dense_gain_over_removed": gain,
        }
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "accuracy_vs_compression")
    with open(stem + ".json", "w") as f:
        json.dump(results, f, indent=2)
    with open(stem + ".md", "w") as f:
        f.write(markdown(results))
    plot(results, stem + ".png")
    print(markdown(results))


def markdown(results):
    lines = [
        f"Backend {results['backend']}, {results['epochs']} epochs, "
        f"{results['seeds']} seeds (mean ± std test accuracy).",
        "",
    ]
    for kind, block in results["models"].items():
        lines += [
            f"### {kind.upper()} (dense gain over removed: "
            f"{100 * block['dense_gain_over_removed']:.1f} points; "
            f"low-rank rank {block['rank']})",
            "",
            "| layer | stored params | accuracy | recovered gain |",
            "|---|---:|---:|---:|",
        ]
        for name, row in block["rows"].items():
            lines.append(
                f"| {name} | {row['stored_params']} | "
                f"{100 * row['mean']:.1f} ± {100 * row['std']:.1f} | "
                f"{100 * row['recovered']:.0f}% |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results["models"]), figsize=(11, 4))
    axes = np.atleast_1d(axes)
    for ax, (kind, block) in zip(axes, results["models"].items()):
        for name, row in block["rows"].items():
            x = max(row["stored_params"], 1)
            ax.errorbar(
                x, 100 * row["mean"], yerr=100 * row["std"], fmt="o", capsize=3
            )
            ax.annotate(
                name,
                (x, 100 * row["mean"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set_xscale("log")
        ax.set_xlabel("stored parameters of the layer (log; 0 shown at 1)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(kind.upper())
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
