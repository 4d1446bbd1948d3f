"""`python -m keras_adntn ...` starts as quietly as the `keras-adntn`
launcher: the package import (TensorFlow on that backend) writes none of
TensorFlow's C++ start-up lines unless `--verbose`."""

import os
import re
import subprocess
import sys

import keras

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TF_LOG_LINE = re.compile(r"^[IWE]\d{4} |oneDNN|absl::InitializeLog", re.M)


def test_python_m_keras_adntn_is_quiet():
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run(
        [sys.executable, "-m", "keras_adntn", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: keras-adntn" in result.stdout
    assert not TF_LOG_LINE.search(result.stderr), result.stderr
    assert not TF_LOG_LINE.search(result.stdout), result.stdout
