"""`keras_adntn.summary` and the `summary` / `export` CLI commands."""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_adntn import TNConv2D
from keras_adntn import TNDense
from keras_adntn import TNMultiHeadAttention
from keras_adntn.cli import main
from keras_adntn.summary import summary


def _model():
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            TNConv2D(8, 3, seed=0),
            keras.layers.Flatten(),
            TNDense(32, generator_activation="prelu", seed=0),
            keras.layers.Dense(4),
        ]
    )


@pytest.fixture
def saved(tmp_path):
    path = os.path.join(tmp_path, "model.keras")
    _model().save(path)
    return path


def test_summary_rows_and_totals():
    model = _model()
    lines = []
    rows = summary(model, print_fn=lines.append)
    assert [r["type"] for r in rows] == [
        "TNConv2D",
        "Flatten",
        "TNDense",
        "Dense",
        "",
    ]
    conv, flat, tn, dense, total = rows
    assert conv["dense_params"] == model.layers[0].dense_params
    assert tn["dense_params"] == 288 * 32 + 32
    assert tn["stored_params"] == model.layers[2].count_params()
    assert tn["ratio"] > 10 and dense["ratio"] == 1.0
    assert flat["stored_params"] == 0 and flat["ratio"] == 1.0
    assert total["stored_params"] == model.count_params()
    assert total["bytes"] == 4 * model.count_params()
    assert total["dense_params"] == sum(r["dense_params"] for r in rows[:-1])
    assert any("TNDense" in line for line in lines)
    assert "total" in lines[-1]


def test_summary_attention_and_nested():
    q = keras.Input((6, 16))
    out = TNMultiHeadAttention(2, 8, seed=0)(q, q)
    inner = keras.Model(q, out, name="inner")
    outer = keras.Sequential([keras.Input((6, 16)), inner])
    rows = summary(outer, print_fn=None)
    att = [r for r in rows if r["type"] == "TNMultiHeadAttention"]
    assert len(att) == 1 and att[0]["name"].startswith("inner/")
    layer = inner.layers[-1]
    assert att[0]["dense_params"] == layer.dense_params
    with pytest.raises(ValueError):
        summary(object())


def test_cli_summary(saved, capsys):
    assert main(["summary", saved]) == 0
    out = capsys.readouterr().out
    assert "TNDense" in out and "TNConv2D" in out and "total" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["summary", "missing.keras"], "not found"),
        (["summary", "{data}"], ".keras"),
        (["summary", "{bad}"], "not a Keras"),
        (["export", "{model}", "{out}", "--quantize", "int8"], "--data"),
        (
            [
                "export",
                "{model}",
                "{out}",
                "--quantize",
                "int8",
                "--data",
                "{wrong}",
            ],
            "shape",
        ),
        (
            [
                "export",
                "{model}",
                "{out}",
                "--quantize",
                "int8",
                "--data",
                "{bad}",
            ],
            ".npz",
        ),
        (["export", "{model}", "/no/such/dir/out.tflite"], "directory"),
        (["export", "missing.keras", "{out}"], "not found"),
        (["export", "{model}", "{out}", "--sram", "lots"], "--sram"),
    ],
)
def test_cli_errors_exit_cleanly(args, message, saved, tmp_path, capsys):
    data = os.path.join(tmp_path, "data.npz")
    wrong = os.path.join(tmp_path, "wrong.npz")
    bad = os.path.join(tmp_path, "bad.keras")
    np.savez(data, x=np.zeros((4, 8, 8, 3), "f4"))
    np.savez(wrong, x=np.zeros((4, 5), "f4"))
    with open(bad, "w") as f:
        f.write("not a zip")
    names = dict(
        model=saved,
        out=os.path.join(tmp_path, "out.tflite"),
        data=data,
        wrong=wrong,
        bad=bad,
    )
    argv = [a.format(**names) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err
    assert "Traceback" not in err


def test_cli_export(saved, tmp_path, capsys):
    """A real conversion on every backend (jax / torch convert in a
    TensorFlow subprocess): the file runs in LiteRT and gives the saved
    model's outputs; under TensorFlow the table of every mode measured on
    TFLite Micro is printed too (elsewhere skipped: four more subprocess
    exports)."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("tflite_micro")
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    out = os.path.join(tmp_path, "model.tflite")
    argv = ["export", saved, out, "--sram", "64K"]
    compare = keras.backend.backend() == "tensorflow"
    assert main(argv + ([] if compare else ["--no-compare"])) == 0
    printed = capsys.readouterr().out
    # the report of the file written, measured on TFLM
    flash = os.path.getsize(out)
    assert f"file={flash:,} bytes" in printed
    # the default mode: the deployment plan, reported per TNDense
    assert "mode=auto" in printed and "TFLite Micro (measured)" in printed
    assert "deployment plan (estimates):" in printed
    # --sram 64K reached the export as a 65,536-byte arena budget and the
    # measured arena meets it (regression caught: --sram dropped or
    # misparsed, e.g. 64K read as 64,000, or the budget not enforced)
    found = re.search(
        r"TFLite Micro \(measured\): arena ([\d,]+) bytes "
        r"\((within|OVER) the budget of ([\d,]+)\)",
        printed,
    )
    assert found, printed
    arena, verdict, budget = found.groups()
    assert int(budget.replace(",", "")) == 64 * 1024
    assert 0 < int(arena.replace(",", "")) <= 64 * 1024
    assert verdict == "within"
    if compare:
        table = printed.split("Every deployment, measured on TensorFlow")[1]
        for label in ("Dense twin", "cached float32", "on the fly float32"):
            assert label in table
        assert "arena budget 64.0 KB" in table
    x = np.random.default_rng(0).standard_normal((1, 8, 8, 3)).astype("f4")
    interpreter = litert.Interpreter(model_path=out)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    want = keras.models.load_model(saved).predict(x, verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_cli_export_passes_arguments(saved, tmp_path, monkeypatch):
    import keras_adntn.export

    calls = []

    def fake(model, path, mode, quantize, representative_dataset, **kw):
        calls.append((model, path, mode, quantize, representative_dataset))
        assert kw == {
            "arena_budget": 2048,
            "flash_budget": 1024**2,
            "strip_strings": True,
        }
        return "report"

    monkeypatch.setattr(keras_adntn.export, "export_litert", fake)
    data = os.path.join(tmp_path, "data.npz")
    np.savez(data, x=np.ones((5, 8, 8, 3), "f8"))
    out = os.path.join(tmp_path, "q.tflite")
    argv = ["export", saved, out, "--mode", "cached", "--quantize", "int8"]
    argv += ["--sram", "2K", "--flash", "1M", "--strip-strings"]
    argv += ["--no-compare"]
    assert main(argv + ["--data", data]) == 0
    model, path, mode, quantize, samples = calls[0]
    assert isinstance(model, keras.Model) and path == out
    assert (mode, quantize) == ("cached", "int8")
    assert samples.shape == (5, 8, 8, 3) and samples.dtype == np.float32


# -- the launcher: fast, quiet, plain ------------------------------------------
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _launch(*args, code=None):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    command = ["-m", "keras_adntn_cli", *args] if code is None else ["-c", code]
    return subprocess.run(
        [sys.executable, *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_help_and_argument_errors_do_not_import_keras():
    code = (
        "import sys, keras_adntn_cli\n"
        "for argv in (['--help'], ['compress', 'm.keras', '--ratio', 'x']):\n"
        "    try:\n"
        "        keras_adntn_cli.main(argv)\n"
        "    except SystemExit as e:\n"
        "        print('exit', e.code)\n"
        "print('keras imported:', 'keras' in sys.modules)\n"
    )
    result = _launch(code=code)
    assert "exit 0" in result.stdout and "exit 2" in result.stdout
    assert "keras imported: False" in result.stdout, result.stdout
    assert "--ratio" in result.stderr


def test_launcher_prints_no_tensorflow_logs(saved):
    result = _launch("summary", saved)
    assert result.returncode == 0, result.stderr
    assert "TNDense" in result.stdout
    for noise in ("oneDNN", "absl", "I0000", "cpu_feature_guard"):
        assert noise not in result.stderr, result.stderr


def test_fit_output_is_plain_when_not_a_terminal(monkeypatch):
    from keras_adntn import cli

    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert cli._fit_verbose("normal") == 2
    assert cli._fit_verbose("quiet") == 0
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert cli._fit_verbose("normal") == 1


def test_errors_name_the_flags(tmp_path, capsys):
    model = keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(64, name="big")]
    )
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    data = os.path.join(tmp_path, "d.npz")
    np.savez(data, x=np.ones((8, 16), "f4"), y=np.ones((8, 64), "f4"))
    out = os.path.join(tmp_path, "o.keras")
    argv = ["compress", path, data, out, "--quiet", "--ratio", "0.5"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--ratio" in err and "target_ratio" not in err, err
