"""`compress(..., max_loss=...)`: the size search, the held-out split by
default, and what the report says of both."""

import math

import keras
import numpy as np
import pytest

from keras_adntn.cli import main
from keras_adntn.compress import api
from keras_adntn.compress import compress
from keras_adntn.compress import finetune
from keras_adntn.compress import search
from keras_adntn.compress.evaluate import _at_chance
from keras_adntn.compress.evaluate import _teacher_saw_it
from keras_adntn.compress.select import replacement_params


def _classifier(rng, n=90):
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(64, activation="relu", name="big"),
            keras.layers.Dense(3, name="logits"),
        ]
    )
    x = rng.normal(size=(n, 16)).astype("float32")
    y = np.repeat(np.arange(3), n // 3)
    return model, x, y


def _fake_student(score_of_bond, made):
    """A stand-in for steps 2-4: the validation score a bond gives."""

    def fake(model, chosen, data, a, sizes, log):
        (bond, _) = sizes[chosen[0].name]
        made.append(bond)
        scores = {
            "teacher": 0.9,
            "student_init": 0.5,
            "student_final": score_of_bond(bond),
        }
        rows = [{"params_after": 10 * bond}]
        return api._Built(model, rows, scores, {"note": ""})

    return fake


def _search(monkeypatch, score_of_bond, **kwargs):
    """`compress` on a small classifier with steps 2-4 faked."""
    made = []
    monkeypatch.setattr(api, "_student", _fake_student(score_of_bond, made))
    monkeypatch.setattr(api, "evaluate", lambda *a, search, **k: search)
    rng = np.random.default_rng(0)
    model, x, y = _classifier(rng)
    _, record = compress(model, (x, y), min_params=0, verbose=0, **kwargs)
    return record, made


def test_search_returns_the_smallest_size_within_the_loss(monkeypatch):
    # the score grows with the bond: 0.9 (no loss) from bond 5 up
    record, made = _search(
        monkeypatch, lambda bond: min(0.9, 0.5 + 0.1 * bond), max_loss=0.05
    )
    sizes = record["sizes"]
    assert sizes == [1, 2, 3, 4, 5]  # 16 x 64: bond 6 shrinks it < 2x
    # bond 3 scores 0.8 (loss 0.1 > 0.05), bond 4 0.9 (loss 0)
    assert record["bond_dim"] == 4 and record["met"]
    assert len(made) == math.ceil(math.log2(len(sizes) + 1))
    assert record["fine_tunes"] == len(made) <= 6
    assert [t["bond_dim"] for t in record["trials"]] == sorted(made)
    assert all(t["within"] == (t["loss"] <= 0.05) for t in record["trials"])


def test_the_budget_bounds_the_fine_tunes(monkeypatch):
    record, made = _search(
        monkeypatch, lambda bond: 0.9 if bond >= 7 else 0.0, search_budget=2
    )
    assert len(record["sizes"]) <= 3 and len(made) <= 2
    assert record["sizes"][0] == 1 and record["budget"] == 2


def test_no_size_within_the_loss_returns_the_best_tried_and_says_so(
    monkeypatch,
):
    record, made = _search(monkeypatch, lambda bond: 0.5 + 0.001 * bond)
    assert not record["met"]
    assert record["bond_dim"] == max(made)  # the one that lost the least
    assert record["max_loss"] == 0.005  # the default


def test_size_ladder_shrinks_every_layer_at_least_twice():
    layer = keras.layers.Dense(256)
    layer.build((None, 256))
    ladder = search.size_ladder([layer], "ttn", budget=10)
    assert ladder == list(range(1, len(ladder) + 1))
    params = [replacement_params(layer, "ttn", b) for b in ladder]
    assert all(2 * p <= layer.count_params() for p in params)
    bigger = replacement_params(layer, "ttn", ladder[-1] + 1)
    assert 2 * bigger > layer.count_params()
    thin = search.size_ladder([layer], "ttn", budget=3)
    assert len(thin) <= 7 and thin[0] == 1 and thin[-1] == ladder[-1]


def test_loss_is_points_for_accuracy_and_relative_for_mse():
    assert search.loss("classification", 0.98, 0.97) == pytest.approx(0.01)
    assert search.loss("regression", 2.0, 2.5) == pytest.approx(0.25)
    assert search.loss("regression", 2.0, 1.0) < 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"bond_dim": 2, "max_loss": 0.01}, "at most one of"),
        ({"target_ratio": 10, "max_loss": 0.01}, "at most one of"),
        ({"max_loss": -0.1}, "max_loss"),
        ({"search_budget": 0}, "search_budget"),
    ],
)
def test_bad_search_arguments_raise_before_any_work(kwargs, match):
    rng = np.random.default_rng(0)
    model, x, y = _classifier(rng)
    with pytest.raises(ValueError, match=match):
        compress(model, (x, y), verbose=0, **kwargs)


def test_default_holds_out_a_stratified_fifth_it_never_trains_on(
    monkeypatch,
):
    seen = {}
    real = finetune.fine_tune

    def spy(student, teacher, x, y, val, *args, **kwargs):
        seen["x"], seen["y"], seen["val"] = x, y, val
        return real(student, teacher, x, y, val, *args, **kwargs)

    monkeypatch.setattr(finetune, "fine_tune", spy)
    rng = np.random.default_rng(0)
    model, x, y = _classifier(rng)
    _, report = compress(
        model,
        (x, y),
        min_params=0,
        search_budget=1,
        reconstruction_steps=5,
        epochs=1,
        verbose=0,
    )
    vx, vy = seen["val"]
    assert np.bincount(vy).tolist() == [6, 6, 6]  # 20% of each class
    assert len(seen["x"]) == 72
    rows = {tuple(row) for row in seen["x"]}
    assert not any(tuple(row) in rows for row in vx)
    assert report.evaluated_on == (
        "18 of 90 samples of data held out (stratified, seed 0)"
    )
    assert report.search["fine_tunes"] == 1
    table = report.table()
    assert "size search: max_loss 0.005 (accuracy points) on 18 of 90" in table
    assert "1 fine-tunes (budget 1)" in table


def test_a_real_search_keeps_the_smallest_size_within_a_loose_loss():
    rng = np.random.default_rng(0)
    model, x, y = _classifier(rng)
    student, report = compress(
        model,
        (x, y),
        min_params=0,
        max_loss=1.0,  # every size is within it: the smallest is kept
        search_budget=2,
        reconstruction_steps=5,
        epochs=1,
        verbose=0,
    )
    r = report.search
    assert r["met"] and r["bond_dim"] == r["sizes"][0] == 1
    assert report.layers[0]["bond_dim"] == 1
    assert student.get_layer("big").bond_dim == 1
    assert r["sizes"] == [1, 2, 5]  # bonds 1..5 thinned to 2**2 - 1
    assert r["fine_tunes"] == len(r["trials"]) == 2


def test_a_student_at_chance_after_init_is_reported():
    class Data:
        task = "classification"
        vy = np.repeat(np.arange(10), 5)

    scores = {"teacher": 0.98, "student_init": 0.1}
    trials = [
        {"bond_dim": 1, "params_after": 50, "score_init": 0.1},
        {"bond_dim": 4, "params_after": 400, "score_init": 0.7},
        {"bond_dim": 8, "params_after": 900, "score_init": 0.9},
    ]
    note = _at_chance(Data, scores, {"trials": trials})
    assert "at chance" in note and "bond 4, 400 parameters" in note
    assert _at_chance(Data, {**scores, "student_init": 0.5}, None) == ""


def test_a_teacher_perfect_on_the_held_out_split_is_reported():
    class Data:
        task = "classification"
        evaluated_on = "18 of 90 samples of data held out (stratified, seed 0)"

    note = _teacher_saw_it(Data, {"teacher": 1.0})
    assert "the teacher is perfect on the 18 of 90 samples" in note
    assert "give validation_data the teacher has not seen" in note
    assert _teacher_saw_it(Data, {"teacher": 0.97}) == ""
    Data.evaluated_on = "validation_data"  # the user's: presumably unseen
    assert _teacher_saw_it(Data, {"teacher": 1.0}) == ""


def test_cli_compress_takes_max_loss(tmp_path, capsys):
    rng = np.random.default_rng(0)
    model, x, y = _classifier(rng)
    path = str(tmp_path / "m.keras")
    model.save(path)
    data = str(tmp_path / "d.npz")
    np.savez(data, x=x, y=y)
    out = str(tmp_path / "small.keras")
    argv = ["compress", path, data, out, "--max-loss", "1.0"]
    code = main(argv + ["--search-budget", "1", "--epochs", "0"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "size search: max_loss 1" in printed and "budget 1" in printed
    assert main(argv + ["--bond-dim", "2"]) == 2
    assert "at most one of --bond-dim" in capsys.readouterr().err
