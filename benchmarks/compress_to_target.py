"""Compressing to a target: `compress(..., max_loss=...)` against a sweep.

    KERAS_BACKEND=jax python benchmarks/compress_to_target.py [--quick]

Two parts, on sklearn digits (train/test split 75/25, stratified):

1. Defaults. The digits MLP 64 -> Dense(512, relu) -> Dense(512, relu) ->
   10 (Adam, 30 epochs), trained with each seed, then `compress(model,
   (x_train, y_train))` with nothing else: `max_loss` 0.005 on 20% of
   the training data held out. Reported: the teacher's and the student's test
   accuracy, the whole model's ratio, the bond chosen, the fine-tunes the
   search ran, and the split the report names. Goal: test accuracy within
   1 point of the teacher on every seed, whole-model ratio >= 5x.
   The same with validation data the teacher has not seen (seed 0, or
   every seed with `--unseen-seeds`): the teacher trains on 80% of the
   training data and `compress` gets that 80% and, as
   `validation_data`, the other 20% (stratified).
2. The pretrained-layer benchmark's MLP and CNN
   (`pretrained_compression.py`: 64-256-256-10 with `h2` replaced; two
   3x3 convolutions with `conv2` replaced; its validation split): the
   search with
   `max_loss=0.01` against an exhaustive sweep of the same sizes (every
   bond the search could try, from the smallest up, each initialised and
   fine-tuned alike, scored on the same validation data; the first within
   the loss is the smallest, and the sweep stops there). Goal: the
   search's size within 2x of the smallest size the sweep finds within
   the loss, in <= 6 fine-tunes.

Writes benchmarks/results/compress_to_target.{json,md}.
"""

import argparse
import json
import os
import sys
import time

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from keras_adntn.compress import compress
from keras_adntn.compress import finetune
from keras_adntn.compress import search

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pretrained_compression as pretrained  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def digits_split():
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    return train_test_split(
        x, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )


def digits_mlp(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        keras.optimizers.Adam(),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def part_defaults(seeds, epochs, unseen=False):
    x_tr, x_te, y_tr, y_te = digits_split()
    val = None
    if unseen:
        x_tr, x_va, y_tr, y_va = train_test_split(
            x_tr, y_tr, test_size=0.2, random_state=0, stratify=y_tr
        )
        val = (x_va, y_va)
    rows = []
    for seed in seeds:
        teacher = digits_mlp(seed)
        teacher.fit(x_tr, y_tr, epochs=epochs, batch_size=32, verbose=0)
        start = time.time()
        student, report = compress(
            teacher, (x_tr, y_tr), validation_data=val, verbose=0
        )
        rows.append(
            {
                "seed": seed,
                "unseen": unseen,
                "teacher_test": pretrained.accuracy(teacher, x_te, y_te),
                "student_test": pretrained.accuracy(student, x_te, y_te),
                "whole_ratio": teacher.count_params() / student.count_params(),
                "bond_dim": report.search["bond_dim"],
                "layer_ratio": report.layers[0]["ratio"],
                "fine_tunes": report.search["fine_tunes"],
                "met": report.search["met"],
                "validation_loss": min(
                    t["loss"]
                    for t in report.search["trials"]
                    if t["bond_dim"] == report.search["bond_dim"]
                ),
                "split": report.evaluated_on,
                "notes": report.notes,
                "seconds": time.time() - start,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def part_sweep(key, epochs, max_loss):
    (x_tr, y_tr), val, (x_te, y_te) = pretrained.data()
    build, shape, name, teacher_epochs = pretrained.MODELS[key]
    x_tr, x_te, val = shape(x_tr), shape(x_te), (shape(val[0]), val[1])
    teacher = pretrained.train(build, x_tr, y_tr, teacher_epochs)
    args = {
        "validation_data": val,
        "epochs": epochs,
        "verbose": 0,
        "layers": [name],
    }
    start = time.time()
    student, report = compress(teacher, (x_tr, y_tr), max_loss=max_loss, **args)
    searched = {
        "bond_dim": report.search["bond_dim"],
        "params": report.layers[0]["params_after"],
        "fine_tunes": report.search["fine_tunes"],
        "met": report.search["met"],
        "sizes": report.search["sizes"],
        "test": pretrained.accuracy(student, x_te, y_te),
        "seconds": time.time() - start,
    }
    print(json.dumps(searched), flush=True)
    teacher_val = finetune.score(teacher, *val, "classification", 256)
    sweep = []
    for bond in report.search["sizes"]:
        student, fixed = compress(teacher, (x_tr, y_tr), bond_dim=bond, **args)
        score = fixed.scores["student_final"]
        sweep.append(
            {
                "bond_dim": bond,
                "params": fixed.layers[0]["params_after"],
                "validation": score,
                "loss": search.loss("classification", teacher_val, score),
                "test": pretrained.accuracy(student, x_te, y_te),
            }
        )
        print(json.dumps(sweep[-1]), flush=True)
        if sweep[-1]["loss"] <= max_loss:
            break  # the smallest size within the loss
    within = [s for s in sweep if s["loss"] <= max_loss]
    best = min(within, key=lambda s: s["params"]) if within else None
    return {
        "model": key,
        "layer": name,
        "teacher_validation": teacher_val,
        "teacher_test": pretrained.accuracy(teacher, x_te, y_te),
        "max_loss": max_loss,
        "search": searched,
        "sweep": sweep,
        "sweep_best": best,
        "size_vs_best": (searched["params"] / best["params"]) if best else None,
    }


def table(defaults, sweeps, header):
    lines = [header, "", "### 1. Defaults: the digits MLP (64-512-512-10)", ""]
    lines += [
        "Validation: 20% of the training data held out by `compress` (the",
        "teacher trained on all of it), or, marked *unseen*, 20% the",
        "teacher did not train on, given as `validation_data`.",
        "",
        "| seed | teacher test | student test | loss (points) | whole ratio "
        "| bond | layer ratio | fine-tunes | validation split | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in defaults:
        lost = 100 * (r["teacher_test"] - r["student_test"])
        seed = f"{r['seed']}{' *unseen*' if r['unseen'] else ''}"
        lines.append(
            f"| {seed} | {r['teacher_test']:.4f} | "
            f"{r['student_test']:.4f} | {lost:.1f} | {r['whole_ratio']:.1f}x "
            f"| {r['bond_dim']} | {r['layer_ratio']:.1f}x | "
            f"{r['fine_tunes']} | {r['split']} | {r['seconds']:.0f} |"
        )
    lines += ["", "### 2. `max_loss=0.01` against an exhaustive sweep", ""]
    for sweep in sweeps:
        lines += _sweep_table(sweep)
    return "\n".join(lines) + "\n"


def _sweep_table(sweep):
    s = sweep["search"]
    lines = [
        f"#### {sweep['model']} (`{sweep['layer']}`)",
        "",
        f"Teacher: validation {sweep['teacher_validation']:.4f}, test "
        f"{sweep['teacher_test']:.4f}. Search: bond {s['bond_dim']} "
        f"({s['params']} parameters), {s['fine_tunes']} fine-tunes, "
        f"within the loss: {s['met']}, test {s['test']:.4f}, "
        f"{s['seconds']:.0f} s.",
        "",
        "| bond | params | validation | loss | test |",
        "|---|---|---|---|---|",
    ]
    for r in sweep["sweep"]:
        mark = " **search**" if r["bond_dim"] == s["bond_dim"] else ""
        lines.append(
            f"| {r['bond_dim']}{mark} | {r['params']} | "
            f"{r['validation']:.4f} | {r['loss']:.4f} | {r['test']:.4f} |"
        )
    best = sweep["sweep_best"]
    lines += [
        "",
        "Sweep's smallest within the loss: "
        + (
            f"bond {best['bond_dim']} ({best['params']} parameters); the "
            f"search's size is {sweep['size_vs_best']:.2f}x it."
            if best
            else "none."
        ),
        "",
    ]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="one seed, fewer epochs"
    )
    parser.add_argument(
        "--unseen-seeds",
        action="store_true",
        help="the unseen-validation variant on every seed, not only 0",
    )
    args = parser.parse_args(argv)
    seeds = [0] if args.quick else [0, 1, 2]
    teacher_epochs = 5 if args.quick else 30
    tune_epochs = 2 if args.quick else 10
    start = time.time()
    defaults, sweeps = [], []

    def write():  # after every part: a long run leaves what it measured
        header = (
            f"Backend {keras.backend.backend()}, "
            f"{time.time() - start:.0f} s in all"
            f"{' (--quick)' if args.quick else ''}."
        )
        out = os.path.join(HERE, "results", "compress_to_target")
        with open(out + ".json", "w") as f:
            json.dump({"defaults": defaults, "sweeps": sweeps}, f, indent=1)
        text = table(defaults, sweeps, header)
        with open(out + ".md", "w") as f:
            f.write(text)
        return text

    defaults += part_defaults(seeds, teacher_epochs)
    write()
    sweeps.append(part_sweep("mlp", tune_epochs, 0.01))
    write()
    unseen = seeds if args.unseen_seeds else seeds[:1]
    defaults += part_defaults(unseen, teacher_epochs, unseen=True)
    write()
    sweeps.append(part_sweep("cnn", tune_epochs, 0.01))
    print(write())


if __name__ == "__main__":
    main()
