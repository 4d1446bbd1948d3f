"""Silencing what C++ libraries write straight to a file descriptor.

TensorFlow's start-up lines ("oneDNN custom operations are on", absl's
"All log messages before absl::InitializeLog()") ignore
`TF_CPP_MIN_LOG_LEVEL`, TensorFlow Lite Micro prints "Failed to resize
buffer" for every arena that is too small, the LiteRT quantiser prints its
settings to stdout: only the descriptor itself can be silenced.

Standard library only, and no import of the package: the files that run
before it or without it (`cli.py` under the `keras-adntn` launcher,
`export/tflm.py` as TFLM's child process) load this file on its own
(`runpy.run_path`); `_startup` imports it first thing in the package.
"""

import contextlib
import logging
import os
import sys


@contextlib.contextmanager
def quiet_fd(target: int = 2):
    """Sends file descriptor `target` (2: stderr, 1: stdout) to /dev/null
    for the block (Python's own buffered writes are flushed before it);
    a no-op where there is no such descriptor (embedded interpreters,
    output captured in a test)."""
    stream = sys.stdout if target == 1 else sys.stderr
    try:
        stream.flush()
        saved = os.dup(target)
    except (OSError, ValueError):  # no real descriptor (or a closed stream)
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), target)
            yield
    finally:
        os.dup2(saved, target)
        os.close(saved)


@contextlib.contextmanager
def quiet_start(enabled: bool = True, loggers: bool = True):
    """TensorFlow loaded quietly within the block (when `enabled`):
    `TF_CPP_MIN_LOG_LEVEL=3` unless set, descriptor 2 silenced, and after
    the block (`loggers`) the Python `tensorflow` and absl loggers at
    ERROR."""
    if not enabled:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_fd(2):
        yield
    if loggers:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        try:
            from absl import logging as absl_logging

            absl_logging.set_verbosity(absl_logging.ERROR)
        except ImportError:
            pass
