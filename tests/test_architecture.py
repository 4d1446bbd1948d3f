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


# -- structural limits (issue 33) ---------------------------------------------
PACKAGES = [ROOT, ROOT.parent / "keras_adntn_cli"]
# total lines of one module, everything counted
MAX_MODULE_LINES = 450
# lines of one function or method, its docstring aside (a nested function
# counts inside its parent and on its own)
MAX_FUNCTION_LINES = 80
# the context helpers of an export (networks/executors.py) a layer must not
# read: the export hands a layer what it needs, not a global switch
EXPORT_STATE = ("device", "generation_ops")


def _package_sources():
    return sorted(p for package in PACKAGES for p in package.rglob("*.py"))


def _name(path):
    return str(path.relative_to(ROOT.parent))


def test_no_module_over_450_lines():
    long = {
        _name(p): n
        for p in _package_sources()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


def _function_lines(node):
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        if isinstance(first.value.value, str):
            lines -= first.end_lineno - first.lineno + 1
    return lines


def test_no_function_over_80_lines():
    long = {}
    for path in _package_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _function_lines(node)
                if n > MAX_FUNCTION_LINES:
                    long[f"{_name(path)}:{node.lineno} {node.name}"] = n
    assert not long, long
    # the measure leaves a docstring out: a 40-line docstring does not make
    # a function long
    tree = ast.parse((ROOT / "compress" / "api.py").read_text())
    compress = next(
        n
        for n in tree.body
        if isinstance(n, ast.FunctionDef) and n.name == "compress"
    )
    assert _function_lines(compress) < compress.end_lineno - compress.lineno


def test_at_most_one_context_variable():
    # a ContextVar is global state a call reads without being passed it
    made = []
    for path in _package_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else None
                name = f.id if isinstance(f, ast.Name) else name
                if name == "ContextVar":
                    made.append(f"{_name(path)}:{node.lineno}")
    assert len(made) <= 1, made


def _reads_export_state(name):
    return any(word in name for word in EXPORT_STATE)


def test_no_layer_module_reads_export_state():
    reads = []
    for path in sorted((ROOT / "layers").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(a.name for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.Attribute):
                names = [node.attr]
            elif isinstance(node, ast.Name):
                names = [node.id]
            for name in names:
                last = name.split(".")[-1]
                if name == "keras_adntn.export" or name.startswith(
                    "keras_adntn.export."
                ):
                    reads.append(f"{_name(path)}:{node.lineno} {name}")
                elif _reads_export_state(last):
                    reads.append(f"{_name(path)}:{node.lineno} {name}")
    assert not reads, "\n".join(reads)


def _module_names():
    return {_module(p): p for p in _package_sources()}


def _module_level_nodes(tree):
    """The nodes run when the module is imported: function bodies aside."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(
            node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
        ):
            todo.extend(ast.iter_child_nodes(node))


def _module_level_imports(path, modules):
    """The package's modules that `path` imports when it is imported;
    `from a import b` names the submodule `a.b` where there is one."""
    for node in _module_level_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level or node.module not in modules:
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                yield sub if sub in modules else node.module


def _import_cycle(graph):
    """One cycle of `graph` ({module: set of modules}) as a list, or None."""
    state = {}  # 1: on the current path, 2: done

    def visit(module, path):
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target, [*path, target])
                if found:
                    return found
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module, [module])
            if found:
                return found
    return None


def test_no_import_circle():
    modules = _module_names()
    graph = {
        module: set(_module_level_imports(path, modules)) - {module}
        for module, path in modules.items()
    }
    cycle = _import_cycle(graph)
    assert cycle is None, " -> ".join(cycle)
    # the search finds a circle where there is one
    assert _import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [
        "a",
        "b",
        "c",
        "a",
    ]
