"""Smoke tests: every example runs end to end (few epochs)."""

import importlib.util
import os
import re

import keras
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")


def load(name):
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(EXAMPLES, f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_runs():
    # measured 0.75 (jax) and 0.78 (torch) after 2 epochs; chance is 0.1
    assert load("quickstart").main(epochs=2) > 0.65


def test_attention_model_runs():
    losses = load("attention_model").main(epochs=2)
    # 2 epochs only start the learning (measured 0.717 -> 0.698 on jax,
    # 0.757 -> 0.697 on torch): the loss must fall
    assert len(losses) == 2 and np.isfinite(losses).all()
    assert losses[1] < losses[0], losses


def test_compress_trained_model_runs():
    report = load("compress_trained_model").main(
        epochs=2, fine_tune_epochs=1, verbose=0
    )
    assert [r["name"] for r in report.layers] == ["hidden_2"]
    assert report.layers[0]["ratio"] > 50


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="exports through a TensorFlow subprocess elsewhere; run once",
)
def test_tinyml_autoencoder_runs_whole_on_tflm(tmp_path):
    pytest.importorskip("tflite_micro")
    ref, tn = load("tinyml_autoencoder").main(
        str(tmp_path), epochs=2, network="mpo", width=32, samples=300
    )
    # the whole TN model runs on TFLM as Keras computes it (int8), in less
    # flash than its int8 Dense self and within the default arena
    assert tn["int8_error"] < 0.25
    assert tn["flash"] < ref["flash"]
    assert tn["arena"] <= 256 * 1024
    assert len(tn["plan"]) >= 10  # every TNDense planned and reported


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="exports through a TensorFlow subprocess elsewhere; run once",
)
def test_deploy_litert_runs(tmp_path):
    pytest.importorskip("tflite_micro")
    results = load("deploy_litert").main(str(tmp_path), epochs=3)
    fly_flash, fly_accuracy, fly_arena = results["on_the_fly"]
    cached_flash, cached_accuracy, _ = results["cached"]
    assert fly_flash < cached_flash
    assert fly_arena <= 32 * 1024  # the example's SRAM budget
    # the same predictions on the device, whatever the mode
    assert abs(fly_accuracy - cached_accuracy) < 0.01


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the demo exports through a TensorFlow subprocess elsewhere",
)
def test_demo_main_job_runs(tmp_path, capsys):
    from keras_adntn.cli import main

    out = str(tmp_path / "demo")
    args = ["demo", "--epochs", "1", "--width", "32", "--samples", "256"]
    assert main([*args, "--out", out]) == 0
    printed = capsys.readouterr().out
    assert printed.count("(ok)") == 2  # both LiteRT files match Keras
    image = printed[printed.index("1. Image task") : printed.index("2. Digits")]
    digits = printed[printed.index("2. Digits") : printed.index("gain =")]
    # the image task: the 1024 x 1024 layer dense, generated, and the two
    # controls (frozen at random, removed) that train nothing in it
    assert re.search(r"\ndense +1049600 +1\.0x +[0-9.]+ +1\.00\n", image)
    assert re.search(r"\nttn +1176 +892\.5x ", image)  # the balanced tree
    assert re.search(r"\nfrozen random +0 +- ", image)
    assert re.search(r"\nremoved +0 +- +[0-9.]+ +-?0\.00\n", image)
    # the digits MLP keeps the orthogonal MPO and its frozen control
    assert re.search(r"\ndense +2080 +1\.0x +[0-9.]+ +1\.00\n", digits)
    for row in ("mpo orth", "frozen orth", "frozen random", "removed"):
        assert f"\n{row} " in digits
    assert image.count("\nverdict: ") == digits.count("\nverdict: ") == 1
    assert os.path.exists(os.path.join(out, "demo.png"))


def test_demo_verdict_names_the_winner_over_both_controls():
    from keras_adntn.demo import verdict

    def rows(ttn, frozen):
        accuracy = {"dense": 0.70, "ttn": ttn, "frozen random": frozen}
        accuracy["removed"] = 0.50
        return [
            (k, 1 if k == "ttn" else 0, 886, a, 0.0)
            for k, a in accuracy.items()
        ]

    # numbers of the generator_quality image task (seed 0, lr 1e-3)
    wins = verdict(rows(ttn=0.72, frozen=0.476))
    assert "ttn recovers 1.10" in wins and "above both controls" in wins
    loses = verdict(rows(ttn=0.60, frozen=0.65))
    assert "not above the controls (frozen random 0.75)" in loses
    flat = verdict(
        [
            ("dense", 9, 9, 0.5, 0),
            ("ttn", 1, 9, 0.6, 0),
            ("removed", 0, 9, 0.5, 0),
        ]
    )
    assert "too little to tell layers apart" in flat
