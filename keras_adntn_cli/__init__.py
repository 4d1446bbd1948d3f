"""Launcher of the `keras-adntn` command.

`import keras_adntn.cli` would first import the `keras_adntn` package, and
so Keras and its backend (about 10 s with TensorFlow, and its start-up
logs). The launcher loads `keras_adntn/cli.py` on its own instead (that
file imports only the standard library at the top), so `--help` and
argument errors are instant; the command then imports `keras_adntn` after
parsing, with TensorFlow's logs silenced.
"""

import importlib.util
import os
import sys


def _cli_module():
    spec = importlib.util.find_spec("keras_adntn")  # does not import it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the keras_adntn package is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "cli.py")
    cli_spec = importlib.util.spec_from_file_location(
        "keras_adntn_cli._cli", path
    )
    module = importlib.util.module_from_spec(cli_spec)
    cli_spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    """Runs `keras-adntn` (see `keras_adntn.cli.main`); returns the status.

    Args:
        argv: arguments (default `sys.argv[1:]`).

    Returns:
        The exit status.
    """
    return _cli_module().main(argv)


if __name__ == "__main__":
    sys.exit(main())
