"""The folder tree is the architecture (docs/architecture.md).

Every import inside the package, at module level or inside a function,
must point down the layering below (or stay in its own unit). Catches a
new upward edge -- e.g. a layer importing `compress` inside a method to
reach the converters, which hides a dependency circle -- and a module that
grows past 400 lines of code (docstrings and comments aside), the size at
which the package's modules started to hold several roles.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent / "keras_adntn"

# bottom to top; a unit may import its own level and the levels below
LAYERS = [
    {"_quiet", "_startup", "activations", "losses", "regularizers"},
    {"networks"},
    {"tensorize"},
    {"factorized"},
    {"kernels"},
    {"layers"},
    {"explicit"},
    {"export"},
    {"distiller", "compress"},
    {"callbacks"},
    {"summary", "demo"},
    {"cli", "cli_commands", "__init__"},
]
LEVEL = {unit: k for k, units in enumerate(LAYERS) for unit in units}
# lines of code in one module: docstrings, comments and blank lines aside
# (a layer's class docstring alone can be 150 lines, as in Keras)
MAX_CODE_LINES = 400


def _module(path):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__") or "keras_adntn"


def _unit(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.level == 0 and node.module == "keras_adntn":
                # `from keras_adntn import x`: a unit, or the package root
                for alias in node.names:
                    if alias.name in LEVEL:
                        yield f"keras_adntn.{alias.name}"
                    else:
                        yield "keras_adntn"
            elif node.level == 0 and node.module.startswith("keras_adntn."):
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (
                a.name for a in node.names if a.name.startswith("keras_adntn")
            )


def _sources():
    return sorted(ROOT.rglob("*.py"))


def test_every_unit_has_a_level():
    units = {_unit(_module(p)) for p in _sources()} - {"__main__"}
    assert units <= set(LEVEL), sorted(units - set(LEVEL))


def test_no_import_points_up():
    upward = []
    for path in _sources():
        if path.stem == "__main__":
            continue  # entry points (`python -m ...`) may load the package
        source = _unit(_module(path))
        for target in _imports(path):
            unit = _unit(target)
            if unit == "__main__" or LEVEL.get(unit, -1) <= LEVEL[source]:
                continue
            upward.append(f"{path.relative_to(ROOT.parent)} -> {target}")
    assert not upward, "\n".join(upward)


def _code_lines(path):
    text = path.read_text()
    docs = set()
    for node in ast.walk(ast.parse(text)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(
                first.value, ast.Constant
            ):
                docs.update(range(first.lineno, first.end_lineno + 1))
    return sum(
        1
        for k, line in enumerate(text.splitlines(), 1)
        if k not in docs and line.strip() and not line.strip().startswith("#")
    )


def test_no_module_is_too_long():
    long = {
        str(p.relative_to(ROOT.parent)): n
        for p in _sources()
        if (n := _code_lines(p)) > MAX_CODE_LINES
    }
    assert not long, long
    # the measure counts code: a 150-line docstring does not make a module
    # long, a long function does
    assert _code_lines(ROOT / "layers" / "tn_dense.py") < len(
        (ROOT / "layers" / "tn_dense.py").read_text().splitlines()
    )
