"""Factorized execution vs generate-then-multiply vs Dense (issue 21).

Run once per backend, e.g.
    KERAS_BACKEND=jax python benchmarks/bench_factorized.py
    KERAS_BACKEND=tensorflow python benchmarks/bench_factorized.py
    KERAS_BACKEND=torch python benchmarks/bench_factorized.py --jit off

For `Input(W) -> Dense(W)` and `TNDense(W, network="mpo")` with
`execution="factorized"` (the input contracted with the cores),
`"on_the_fly"` (the kernel generated, then multiplied) and `"auto"` (the
default: the cost model picks per call shape), the train step
(`train_on_batch`, Adam on MSE) and `predict_on_batch` medians, the models
timed in turn call by call; ratios are to Dense in the same run.

Goals (issue 21), printed as MET / MISSED with the margin:
- W=4096, batch 128: train step <= 0.6x Dense and predict <= 0.5x Dense
  with jit (jax, tensorflow); <= 1.0x both eagerly on torch;
- W=1024, batch 128: <= 1.0x;
- the automatic choice: predict never more than 10 % slower than the better
  of the two paths at batch 1, 32, 128 and 1024 (W = 1024 and 4096);
- ttn at 4096 (`--ttn`): jit train step <= 1.5x Dense.

Writes `benchmarks/results/factorized_{backend}.json` and `.md`.
"""

import argparse
import json
import os
import statistics
import sys
import time

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_speed import _measure  # noqa: E402

from keras_adntn import TNDense  # noqa: E402

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def _dense(width, layer_fn):
    def build():
        inputs = keras.Input((width,))
        layer = layer_fn()
        return keras.Model(inputs, layer(inputs)), layer

    return build


def _builds(width, networks=("mpo",)):
    builds = {"dense": _dense(width, lambda: keras.layers.Dense(width))}
    for net in networks:
        modes = ("factorized", "on_the_fly", "auto") if net == "mpo" else (
            "on_the_fly",
        )
        for mode in modes:
            builds[f"{net} {mode}"] = _dense(
                width,
                lambda net=net, mode=mode: TNDense(
                    width, network=net, execution=mode, seed=0
                ),
            )
    return builds


def _predict_blocks(builds, x, repeats, jit):
    """Median predict seconds of each model, each timed in its own block
    of calls (twice, in opposite orders; the better median counts): a
    model timed right after one that generates a 64 MB kernel would run
    on cold caches, which is not what the choice is about."""
    models = {}
    for key, build in builds.items():
        keras.utils.set_random_seed(0)
        model, _ = build()
        model.compile(jit_compile=jit)
        model.predict_on_batch(x)
        models[key] = model
    best = {}
    for order in (list(models), list(models)[::-1]):
        for key in order:
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                models[key].predict_on_batch(x)
                times.append(time.perf_counter() - start)
            median = statistics.median(times)
            best[key] = min(best.get(key, median), median)
    return best


def _goal(lines, name, value, goal):
    verdict = "MET" if value <= goal else "MISSED"
    margin = "" if value <= goal else f" (by {value / goal:.2f}x)"
    lines.append(f"{verdict}: {name} {value:.2f}x <= {goal}x{margin}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jit", choices=["on", "off", "auto"], default="auto")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--ttn", action="store_true")
    parser.add_argument("--widths", default="1024,4096")
    parser.add_argument("--batches", default="1,32,128,1024")
    args = parser.parse_args(argv)
    backend = keras.backend.backend()
    jit = {"on": True, "off": False}.get(args.jit, backend != "torch")
    rng = np.random.default_rng(0)
    result = {"backend": backend, "jit": jit, "cases": {}, "auto": {}}
    lines = [f"# Factorized execution, {backend}, jit={jit}", ""]
    goals = []
    for width in [int(w) for w in args.widths.split(",")]:
        x = rng.standard_normal((128, width)).astype("float32")
        nets = ("mpo", "ttn") if args.ttn and width == 4096 else ("mpo",)
        res = _measure(_builds(width, nets), x, args.repeats, jit)
        result["cases"][width] = res
        base = res["dense"]
        lines.append(f"## {width} -> {width}, batch 128")
        lines.append("| layer | step s | step / Dense | predict s | "
                     "predict / Dense |")
        lines.append("|---|---:|---:|---:|---:|")
        for key, r in res.items():
            lines.append(
                f"| {key} | {r['step']:.5f} | {r['step'] / base['step']:.2f} "
                f"| {r['predict']:.5f} | "
                f"{r['predict'] / base['predict']:.2f} |"
            )
        lines.append("")
        step = res["mpo auto"]["step"] / base["step"]
        pred = res["mpo auto"]["predict"] / base["predict"]
        if width == 4096:
            sgoal, pgoal = (0.6, 0.5) if jit else (1.0, 1.0)
        else:
            sgoal, pgoal = 1.0, 1.0
        _goal(goals, f"mpo {width} train step (auto)", step, sgoal)
        _goal(goals, f"mpo {width} predict (auto)", pred, pgoal)
        if "ttn on_the_fly" in res:
            _goal(
                goals,
                "ttn 4096 train step",
                res["ttn on_the_fly"]["step"] / base["step"],
                1.5,
            )
        # the automatic choice at other batch sizes (predict)
        lines.append(f"### automatic choice, {width}, predict seconds")
        lines.append("| batch | factorized | generated | auto | chose | "
                     "auto / best |")
        lines.append("|---:|---:|---:|---:|---|---:|")
        for batch in [int(b) for b in args.batches.split(",")]:
            xb = rng.standard_normal((batch, width)).astype("float32")
            builds = {
                k: v
                for k, v in _builds(width).items()
                if k.startswith("mpo")
            }
            r = _predict_blocks(builds, xb, args.repeats, jit)
            fac = r["mpo factorized"]
            gen = r["mpo on_the_fly"]
            auto = r["mpo auto"]
            probe = TNDense(width, network="mpo", seed=0)
            probe.build((None, width))
            chose = probe.execution_paths(batch)["generated_kernel"]
            ratio = auto / min(fac, gen)
            result["auto"][f"{width}/{batch}"] = {
                "factorized": fac,
                "generated": gen,
                "auto": auto,
                "chose": chose,
            }
            lines.append(
                f"| {batch} | {fac:.5f} | {gen:.5f} | {auto:.5f} | {chose} "
                f"| {ratio:.2f} |"
            )
            _goal(goals, f"auto at {width}, batch {batch}", ratio, 1.1)
        lines.append("")
    lines += ["## Goals", ""] + [f"- {g}" for g in goals]
    text = "\n".join(lines)
    print(text)
    os.makedirs(RESULTS, exist_ok=True)
    stem = os.path.join(RESULTS, f"factorized_{backend}")
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
