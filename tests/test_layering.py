"""The package's imports go one way: kernels -> base -> data -> models -> engine -> eval -> search -> cli.

Every import is read with `ast`, at module level and inside functions alike, so a function-level
import cannot hide an upward dependency or a cycle. ARCHITECTURE.md draws the same diagram.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"sparseinfer_dse": ROOT / "sparseinfer_dse", "sparseinfer_kernels": ROOT / "kernels"}

# Module prefix -> layer (the longest matching prefix wins). A module may import its own layer and
# the layers below it, never one above.
LAYERS: dict[str, int] = {
    "sparseinfer_kernels": 0,
    "sparseinfer_dse": 1,  # the package root: version only
    "sparseinfer_dse.errors": 1,
    "sparseinfer_dse.atomic": 1,
    "sparseinfer_dse.interrupts": 1,
    "sparseinfer_dse.machine": 1,
    "sparseinfer_dse.openmp": 1,
    "sparseinfer_dse.stats": 1,  # confidence intervals and paired tests
    "sparseinfer_dse.data": 2,  # shipped GSM8K / BBH files and the prompt readers
    "sparseinfer_dse.demo": 2,  # the demo's checkpoint, problems and lm-eval task (data it supplies)
    "sparseinfer_dse.models": 3,
    "sparseinfer_dse.engine": 4,
    "sparseinfer_dse.eval": 5,
    "sparseinfer_dse.demo.train": 5,  # the demo's training recipe: trains and measures with the layers below
    "sparseinfer_dse.search": 6,
    "sparseinfer_dse.cli": 7,
}
LAYER_NAMES = ["kernels", "base", "data", "models", "engine", "eval", "search", "cli"]

# Third-party packages a layer must not touch (kernels know nothing of models or search tools; only
# the eval layer and above run lm-eval, only the search layer and above run optuna).
FORBIDDEN: dict[int, tuple[str, ...]] = {
    0: ("transformers", "optuna", "lm_eval", "sparseinfer_dse"),
    1: ("optuna", "lm_eval", "transformers"),
    2: ("optuna", "lm_eval"),
    3: ("optuna", "lm_eval"),
    4: ("optuna", "lm_eval"),
    5: ("optuna",),
}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg, base in SOURCES.items():
        for path in base.rglob("*.py"):
            parts = [pkg, *path.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def layer_of(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {Path(__file__).name}")
    return LAYERS[best]


def _target(name: str) -> str | None:
    """The project module an imported name refers to (the longest module prefix), or None."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> tuple[set[str], set[str]]:
    """(project modules, top-level third-party names) that `module` imports anywhere in its body."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    own, other = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            # `from pkg import sub` imports the module pkg.sub when there is one, else names of pkg
            names = [f"{src}.{a.name}" if f"{src}.{a.name}" in MODULES else src for a in node.names]
        else:
            continue
        for name in names:
            target = _target(name)
            if target is not None:
                if target != module:
                    own.add(target)
            elif not name.startswith(tuple(SOURCES)):
                other.add(name.split(".")[0])
    return own, other


GRAPH = {m: imports_of(m)[0] for m in MODULES}


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_import_goes_up():
    wrong = [f"{m} ({LAYER_NAMES[layer_of(m)]}) imports {t} ({LAYER_NAMES[layer_of(t)]})"
             for m, targets in GRAPH.items() for t in sorted(targets) if layer_of(t) > layer_of(m)]
    assert not wrong, "imports from a higher layer:\n" + "\n".join(wrong)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN), ids=lambda i: LAYER_NAMES[i])
def test_layer_keeps_off_forbidden_packages(layer):
    wrong = [f"{m} imports {name}" for m in MODULES if layer_of(m) == layer
             for name in sorted(imports_of(m)[1] | {t.split(".")[0] for t in GRAPH[m]}) if name in FORBIDDEN[layer]]
    assert not wrong, "\n".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    cycles = _cycles(GRAPH)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_cycles_and_upward_imports():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert layer_of("sparseinfer_dse.search.driver") > layer_of("sparseinfer_dse.engine.sparsify")
    assert layer_of("sparseinfer_dse.demo.train") > layer_of("sparseinfer_dse.demo")


# Function-level imports of the project's own modules: only the CLI defers them (it keeps `--help`
# fast), and the kernel API imports a backend when asked for one (Numba and numba-cuda are heavy).
LAZY_PROJECT_IMPORTS_ALLOWED = ("sparseinfer_dse.cli", "sparseinfer_kernels.api")


def _function_level_project_imports(module: str) -> list[str]:
    tree = ast.parse(MODULES[module].read_text())
    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(tuple(SOURCES))):
                    found.append(f"{MODULES[module].relative_to(ROOT)}:{node.lineno} {node.module}")
                elif isinstance(node, ast.Import) and any(a.name.startswith(tuple(SOURCES)) for a in node.names):
                    found.append(f"{MODULES[module].relative_to(ROOT)}:{node.lineno} {node.names[0].name}")
    return found


def test_project_modules_are_imported_at_module_level():
    wrong = [hit for m in sorted(MODULES)
             if not any(m == p or m.startswith(p + ".") for p in LAZY_PROJECT_IMPORTS_ALLOWED)
             for hit in _function_level_project_imports(m)]
    assert not wrong, "imports inside functions (move them to the top of the module):\n" + "\n".join(wrong)
