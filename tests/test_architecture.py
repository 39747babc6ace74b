"""The package's layers: imports point only down, no cycles, no hidden local imports."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "freeflow"

#: Bottom to top. A module may import modules of its own layer or of layers below it. The
#: package itself (``freeflow/__init__.py``, the public API) sits on top.
LAYERS = ["freeflow.checks", "freeflow.fingerprint", "freeflow.progress", "freeflow.parallel", "freeflow.physics",
          "freeflow.flows", "freeflow.estimators", "freeflow.sampling", "freeflow.fields",
          "freeflow.rundir", "freeflow.training", "freeflow.workflows", "freeflow.reports",
          "freeflow.cli", "freeflow"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> int:
    """Index of the layer containing ``module`` (the package itself only as ``freeflow``)."""
    if module == "freeflow":
        return LAYERS.index("freeflow")
    return next(i for i, prefix in enumerate(LAYERS)
                if prefix != "freeflow" and (module == prefix or module.startswith(prefix + ".")))


def imports(path: Path) -> list[tuple[str, bool]]:
    """``(imported freeflow module, at module level?)`` for every import in ``path``."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((f"relative import in {path.name}", False))
            continue
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from freeflow import rundir" imports the module freeflow.rundir, not freeflow.
            submodules = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [m for m in submodules if m in MODULES] or [node.module]
        else:
            continue
        for name in names:
            if name == "freeflow" or name.startswith("freeflow."):
                found.append((name, id(node) in top_level))
    return found


def graph() -> dict[str, set[str]]:
    edges = {}
    for name, path in MODULES.items():
        targets = {m for m, _ in imports(path) if m in MODULES and m != name}
        edges[name] = targets
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def closure(edges: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for target in edges.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_layer_rule_can_fail():
    assert layer("freeflow.physics.system") < layer("freeflow.reports.tables")
    assert layer("freeflow.physics.system") == layer("freeflow.physics.potentials.base")
    assert layer("freeflow") == len(LAYERS) - 1


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycles():
    assert find_cycle(graph()) is None


def test_imports_point_down_the_layers():
    upward = sorted(f"{source} -> {target}" for source, targets in graph().items()
                    for target in targets
                    if source != "freeflow" and layer(target) > layer(source))
    assert upward == []


def test_physics_never_reaches_flows_estimators_or_reports_the_trainer():
    """Not even through other modules."""
    edges = graph()
    forbidden = {"freeflow.physics": ("freeflow.flows", "freeflow.training"),
                 "freeflow.estimators": ("freeflow.training", "freeflow.flows"),
                 "freeflow.reports": ("freeflow.training",),
                 # The lattice field shows the generic layers need no crystal.
                 "freeflow.fields": ("freeflow.physics",)}
    reached = sorted(f"{source} -> {target}" for source in edges
                     for layer_name, banned in forbidden.items() if source.startswith(layer_name)
                     for target in closure(edges, source) if target.startswith(banned))
    assert reached == []


def test_no_function_local_imports_of_freeflow_modules():
    local = sorted(f"{module_name(p)}: {m}" for p in PACKAGE.rglob("*.py")
                   for m, top in imports(p) if not top)
    assert local == []
