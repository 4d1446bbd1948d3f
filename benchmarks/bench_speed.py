"""Speed of the TN layers vs the Keras layers they replace, with goals.

Run once per backend, e.g.
    KERAS_BACKEND=jax python benchmarks/bench_speed.py
    KERAS_BACKEND=tensorflow python benchmarks/bench_speed.py --large
    KERAS_BACKEND=torch python benchmarks/bench_speed.py --jit off

Cases (one layer on a random input, Adam on MSE):
- `dense{W}`: `Input(W) -> Dense(W)` vs `TNDense(W)`, batch 128;
- `conv{S}`: `Conv2D(C, 3, "same")` on `(S, S, C)` vs `TNConv2D`;
- `mha{T}x{D}`: self-attention `MultiHeadAttention(H, D // H)` vs
  `TNMultiHeadAttention`.
For each, the train step (`train_on_batch`) and `predict_on_batch` times
(medians after a warm-up, the models timed in turn call by call) of the
Keras layer and of the TN layer with
`execution="on_the_fly"` (kernel generated in every call) and
`execution="cached"` (inference reuses the kernel), with `jit_compile` on
and off (on: TensorFlow and JAX only, unless `--jit on` on torch). Ratios
are TN time / Keras time, measured in the same run.

Goals (issue 7), checked and printed with the margin when missed:
- cached predict <= 1.05x the Keras layer, every case;
- jit train step of TNDense(4096) on 4096 inputs at batch 128 <= 1.5x.
(Kernel generation vs the memory-write floor: `bench_generation.py`.)

Writes `benchmarks/results/speed_{backend}.json` and `.md`.
"""

import argparse
import json
import os
import statistics
import time

import keras
import numpy as np

from keras_adntn import TNConv2D
from keras_adntn import TNDense
from keras_adntn import TNMultiHeadAttention

RESULTS = os.path.join(os.path.dirname(__file__), "results")
PREDICT_GOAL = 1.05
STEP_GOAL = 1.5


def _measure(builds, x, repeats, jit):
    """Median step / predict seconds of each model, timed interleaved.

    The models take turns call by call, so a load change on the machine
    hits all of them alike and the ratios stay meaningful.
    """
    entries = {}
    for key, build in builds.items():
        keras.utils.set_random_seed(0)
        model, layer = build()
        model.compile(optimizer="adam", loss="mse", jit_compile=jit)
        y = np.zeros((len(x), *model.outputs[0].shape[1:]), "float32")
        entries[key] = (model, layer, y)
    result = {}
    for phase in ("step", "predict"):
        times = {key: [] for key in entries}
        for k in range(repeats + 1):  # the first round is the warm-up
            for key, (model, _, y) in entries.items():
                start = time.perf_counter()
                if phase == "step":
                    model.train_on_batch(x, y)
                else:
                    model.predict_on_batch(x)
                if k:
                    times[key].append(time.perf_counter() - start)
        for key in entries:
            result.setdefault(key, {})[phase] = statistics.median(times[key])
    for key, (_, layer, _) in entries.items():
        result[key]["params"] = layer.count_params()
    return result


def _model(shape, layer, attention=False):
    inputs = keras.Input(shape)
    out = layer(inputs, inputs) if attention else layer(inputs)
    return keras.Model(inputs, out), layer


def _cases(args):
    rng = np.random.default_rng(0)
    cases = []
    for width in args.widths:
        x = rng.standard_normal((args.batch, width)).astype("float32")
        cases.append(
            (
                f"dense{width}",
                x,
                lambda w=width: keras.layers.Dense(w),
                lambda net, ex, w=width: TNDense(
                    w, network=net, execution=ex, seed=0
                ),
                False,
            )
        )
    big = args.large
    size, ch = (32, 256) if big else (16, 64)
    x = rng.standard_normal((32 if big else 16, size, size, ch))
    cases.append(
        (
            f"conv{size}x{ch}",
            x.astype("float32"),
            lambda: keras.layers.Conv2D(ch, 3, padding="same"),
            lambda net, ex: TNConv2D(
                ch, 3, padding="same", network=net, execution=ex, seed=0
            ),
            False,
        )
    )
    seq, dim, heads = (128, 512, 8) if big else (32, 64, 4)
    x = rng.standard_normal((32 if big else 16, seq, dim))
    cases.append(
        (
            f"mha{seq}x{dim}",
            x.astype("float32"),
            lambda: keras.layers.MultiHeadAttention(heads, dim // heads),
            lambda net, ex: TNMultiHeadAttention(
                heads, dim // heads, network=net, execution=ex, seed=0
            ),
            True,
        )
    )
    return cases


def _goal(ratio, goal):
    if ratio <= goal:
        return "met"
    return f"MISSED by {ratio / goal:.2f}x"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--large", action="store_true")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--networks", nargs="+", default=["ttn", "mpo"])
    parser.add_argument(
        "--jit",
        choices=["on", "off", "both"],
        default=None,
        help="jit_compile (default: both on TensorFlow/JAX, off on torch)",
    )
    parser.add_argument("--only", nargs="+", default=None, help="case names")
    args = parser.parse_args()
    backend = keras.backend.backend()
    jit_arg = args.jit or ("off" if backend == "torch" else "both")
    jits = {"on": [True], "off": [False], "both": [True, False]}[jit_arg]
    print(f"backend={backend} repeats={args.repeats}")
    header = (
        f"{'case':<12} {'layer':<10} {'jit':<4} {'params':>9} "
        f"{'step ms':>9} {'pred ms':>9} {'cached ms':>9} {'step x':>7} "
        f"{'pred x':>7} {'cached x':>8}  goals"
    )
    print(header)
    rows = []
    for name, x, keras_layer, tn_layer, attention in _cases(args):
        if args.only and name not in args.only:
            continue
        shape = x.shape[1:]
        for jit in jits:
            builds = {"keras": lambda: _model(shape, keras_layer(), attention)}
            for network in args.networks:
                for ex in ("on_the_fly", "cached"):
                    builds[(network, ex)] = lambda n=network, e=ex: _model(
                        shape, tn_layer(n, e), attention
                    )
            times = _measure(builds, x, args.repeats, jit)
            base = times["keras"]
            print(
                f"{name:<12} {'keras':<10} {str(jit):<4} "
                f"{base['params']:>9} {base['step'] * 1e3:>9.2f} "
                f"{base['predict'] * 1e3:>9.2f}",
                flush=True,
            )
            for network in args.networks:
                otf = times[(network, "on_the_fly")]
                cached = times[(network, "cached")]
                row = {
                    "case": name,
                    "network": network,
                    "jit": jit,
                    "keras_params": base["params"],
                    "params": otf["params"],
                    "keras_step_ms": base["step"] * 1e3,
                    "keras_predict_ms": base["predict"] * 1e3,
                    "step_ms": otf["step"] * 1e3,
                    "predict_ms": otf["predict"] * 1e3,
                    "cached_step_ms": cached["step"] * 1e3,
                    "cached_predict_ms": cached["predict"] * 1e3,
                    "step_ratio": otf["step"] / base["step"],
                    "predict_ratio": otf["predict"] / base["predict"],
                    "cached_predict_ratio": cached["predict"] / base["predict"],
                }
                goals = [
                    "cached predict "
                    + _goal(row["cached_predict_ratio"], PREDICT_GOAL)
                ]
                if name == "dense4096" and jit and args.batch == 128:
                    goals.append(
                        "jit step " + _goal(row["step_ratio"], STEP_GOAL)
                    )
                row["goals"] = goals
                rows.append(row)
                print(
                    f"{name:<12} {network:<10} {str(jit):<4} "
                    f"{row['params']:>9} {row['step_ms']:>9.2f} "
                    f"{row['predict_ms']:>9.2f} "
                    f"{row['cached_predict_ms']:>9.2f} "
                    f"{row['step_ratio']:>7.2f} {row['predict_ratio']:>7.2f} "
                    f"{row['cached_predict_ratio']:>8.2f}  " + "; ".join(goals),
                    flush=True,
                )
    _write(backend, rows)


def _merge_rows(old, new):
    """`old` with the rows `new` reruns replaced in place (a rerun case
    goes where its first old row was; new cases go last)."""

    def row_key(r):
        return (r["case"], r["network"], r["jit"])

    fresh = {row_key(r) for r in new}
    merged, placed = [], set()
    for r in old:
        if row_key(r) not in fresh:
            merged.append(r)
        elif r["case"] not in placed:
            merged += [n for n in new if n["case"] == r["case"]]
            placed.add(r["case"])
    return merged + [n for n in new if n["case"] not in placed]


def _write(backend, rows):
    """Writes the rows, keeping earlier rows of cases not rerun (`--only`,
    `--networks`, `--jit` reruns replace just their own rows)."""
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"speed_{backend}")
    if os.path.exists(path + ".json"):
        with open(path + ".json") as f:
            old = json.load(f).get("rows", [])
        rows = _merge_rows(old, rows)
    with open(path + ".json", "w") as f:
        json.dump({"backend": backend, "rows": rows}, f, indent=1)
    lines = [
        f"# Speed, backend {backend} (TN / Keras time, same run)",
        "",
        "| case | network | jit | params (Keras) | step x | predict x "
        "(on the fly) | predict x (cached) | goals |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['network']} | {r['jit']} | "
            f"{r['params']} ({r['keras_params']}) | {r['step_ratio']:.2f} | "
            f"{r['predict_ratio']:.2f} | {r['cached_predict_ratio']:.2f} | "
            f"{'; '.join(r['goals'])} |"
        )
    with open(path + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {path}.json and .md")


if __name__ == "__main__":
    main()
