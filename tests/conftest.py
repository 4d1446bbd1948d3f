import os
import random

import keras
import pytest

# the seed of the random hypothesis profile (tests/robustness/
# test_properties.py): drawn once per run, printed in the header
if os.environ.get("ADNTN_HYPOTHESIS") == "random":
    os.environ.setdefault(
        "ADNTN_HYPOTHESIS_SEED", str(random.SystemRandom().randrange(2**32))
    )


@pytest.fixture(autouse=True)
def _reset_keras_state():
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session()


def pytest_report_header(config):
    lines = [f"keras backend: {keras.backend.backend()}"]
    if os.environ.get("ADNTN_HYPOTHESIS") == "random":
        lines.append(
            "hypothesis profile: random, seed "
            f"{os.environ['ADNTN_HYPOTHESIS_SEED']} (rerun with "
            "ADNTN_HYPOTHESIS=random ADNTN_HYPOTHESIS_SEED=<seed>)"
        )
    else:
        lines.append("hypothesis profile: fixed (derandomized)")
    return lines


def pytest_terminal_summary(terminalreporter):
    # also under -q, which hides the header
    if os.environ.get("ADNTN_HYPOTHESIS") == "random":
        terminalreporter.write_line(
            "hypothesis profile: random, seed "
            f"{os.environ['ADNTN_HYPOTHESIS_SEED']}"
        )
