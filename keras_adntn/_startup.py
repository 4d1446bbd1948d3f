"""A quiet start for `python -m keras_adntn ...` (standard library only).

`python -m keras_adntn demo` imports this package before `__main__.py`
parses the arguments, so the CLI's own quiet import (the `keras-adntn`
launcher's) would come too late: Keras and TensorFlow are already loaded
and TensorFlow's C++ logs are already on. Imported first by
`keras_adntn/__init__.py`, this module does what the launcher does, and
only for that command line without `--verbose`: `TF_CPP_MIN_LOG_LEVEL=3`
(unless set) before TensorFlow loads, descriptor 2 sent to /dev/null while
the package imports (the start-up lines that ignore the level), and the
Python `tensorflow` / absl loggers at ERROR afterwards (`finish`).
A plain `import keras_adntn` changes nothing.
"""

import os
import sys


def _wanted() -> bool:
    """True for `python -m keras_adntn ...` without `--verbose`."""
    argv = list(getattr(sys, "orig_argv", []))
    if "-m" not in argv:
        return False
    at = argv.index("-m")
    return argv[at + 1 : at + 2] == ["keras_adntn"] and "--verbose" not in argv


_saved_fd = None
QUIET = _wanted()
if QUIET:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        sys.stderr.flush()
        _saved_fd = os.dup(2)
        _devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(_devnull, 2)
        os.close(_devnull)
    except OSError:  # no real descriptor 2
        _saved_fd = None
    _original_hook = sys.excepthook

    def _failed_import_hook(*exc_info):
        """A failed package import still shows its traceback."""
        finish()
        _original_hook(*exc_info)

    sys.excepthook = _failed_import_hook


def finish() -> None:
    """Restores descriptor 2 and turns the Python loggers down (once)."""
    global _saved_fd
    if QUIET and sys.excepthook is _failed_import_hook:
        sys.excepthook = _original_hook
    if _saved_fd is not None:
        sys.stderr.flush()
        os.dup2(_saved_fd, 2)
        os.close(_saved_fd)
        _saved_fd = None
    if QUIET:
        import logging

        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        try:
            from absl import logging as absl_logging

            absl_logging.set_verbosity(absl_logging.ERROR)
        except ImportError:
            pass
