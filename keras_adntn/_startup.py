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

import contextlib
import sys

from keras_adntn import _quiet


def _wanted() -> bool:
    """True for `python -m keras_adntn ...` without `--verbose`."""
    argv = list(getattr(sys, "orig_argv", []))
    if "-m" not in argv:
        return False
    at = argv.index("-m")
    return argv[at + 1 : at + 2] == ["keras_adntn"] and "--verbose" not in argv


QUIET = _wanted()
_quiet_start = contextlib.ExitStack()
if QUIET:
    _quiet_start.enter_context(_quiet.quiet_start())
    _original_hook = sys.excepthook

    def _failed_import_hook(*exc_info):
        """A failed package import still shows its traceback."""
        finish()
        _original_hook(*exc_info)

    sys.excepthook = _failed_import_hook


def finish() -> None:
    """Restores descriptor 2 and turns the Python loggers down (once)."""
    if QUIET and sys.excepthook is _failed_import_hook:
        sys.excepthook = _original_hook
    _quiet_start.close()
