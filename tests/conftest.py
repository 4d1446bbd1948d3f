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
    unexpected = _unexpected_skips()
    if unexpected:
        terminalreporter.section("unexpected skips (fail the run)", red=True)
        for nodeid, reason in unexpected:
            terminalreporter.write_line(f"{nodeid}: {reason}")
        terminalreporter.write_line(
            "A skip that is meant goes into tests/expected_skips.txt with "
            "its reason (ADNTN_ALLOW_SKIPS=1 turns this check off)."
        )
    # also under -q, which hides the header
    if os.environ.get("ADNTN_HYPOTHESIS") == "random":
        terminalreporter.write_line(
            "hypothesis profile: random, seed "
            f"{os.environ['ADNTN_HYPOTHESIS_SEED']}"
        )


# -- unexpected skips fail the run ------------------------------------------
# A skip is allowed only when tests/expected_skips.txt lists it (backend,
# test id pattern, reason). Anything else -- a dependency that failed to
# install or import (an `importorskip`), a new skip nobody listed -- fails
# the session, so that CI cannot go green on tests that did not run.
# ADNTN_ALLOW_SKIPS=1 turns the check off (e.g. a local run without the
# `litert` extra).
EXPECTED_SKIPS = os.path.join(os.path.dirname(__file__), "expected_skips.txt")
_skipped = []


def _expected_skips():
    entries = []
    with open(EXPECTED_SKIPS) as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            spec, _, reason = line.partition(" -- ")
            fields = spec.split()
            if len(fields) != 2 or not reason.strip():
                raise ValueError(
                    f"{EXPECTED_SKIPS}:{number}: expected "
                    "'<backends|*> <test id glob> -- <reason>'"
                )
            backends, pattern = fields
            entries.append((backends.split(","), pattern))
    return entries


def _is_expected(nodeid, entries):
    import fnmatch

    backend = keras.backend.backend()
    return any(
        ("*" in backends or backend in backends)
        and fnmatch.fnmatchcase(nodeid, pattern)
        for backends, pattern in entries
    )


def _record_skip(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if report.longrepr else ""
        _skipped.append((report.nodeid, str(reason)))


def pytest_runtest_logreport(report):
    _record_skip(report)


def pytest_collectreport(report):
    _record_skip(report)


def _unexpected_skips():
    if os.environ.get("ADNTN_ALLOW_SKIPS") == "1":
        return []
    entries = _expected_skips()
    return [(n, r) for n, r in _skipped if not _is_expected(n, entries)]


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller sees every report
    if _unexpected_skips() and exitstatus == 0:
        session.exitstatus = 1
