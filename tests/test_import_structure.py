"""The import graphs of ``deployments/`` and ``benchmarks/`` have no cycle, function-local imports
included.

``lint-imports`` (run by ``scripts/test.sh``) enforces the contracts in ``pyproject.toml`` on
the module-level graph that grimp builds; this plain AST scan also follows imports made inside
function bodies, which is where an import circle hides.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """``{module: {module it imports}}`` for every module of ``package`` under ``root``: every
    ``import`` / ``from … import`` anywhere in the file (function bodies too), relative imports
    resolved, targets cut to the nearest module of the package."""
    modules: dict[str, Path] = {}
    for path in (root / package).rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = name.split(".") if is_package else name.split(".")[:-1]
                    here = here[: len(here) - node.level + 1]
                    base = ".".join(here + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_deployments_has_no_import_cycle():
    graph = import_graph(ROOT, "deployments")
    assert "deployments.state" in graph and "deployments.routes.chat" in graph
    assert cycles(graph) == []


def test_benchmarks_has_no_import_cycle():
    graph = import_graph(ROOT, "benchmarks")
    assert "benchmarks.scenario" in graph and "benchmarks.scenarios.chat" in graph
    assert cycles(graph) == []
    # the base types are a leaf: nothing else of benchmarks
    assert not {m for m in graph["benchmarks.scenario"] if m.startswith("benchmarks")}


def test_wire_models_import_nothing_else_of_deployments():
    graph = import_graph(ROOT, "deployments")
    protocol = {m for m in graph if m.startswith("deployments.protocol")}
    assert {"deployments.protocol.chat", "deployments.protocol.realtime", "deployments.protocol.audio"} <= protocol
    for name in protocol:
        assert graph[name] <= protocol, (name, graph[name] - protocol)


def test_routes_and_realtime_depend_on_the_role_interface_not_the_ingress():
    graph = import_graph(ROOT, "deployments")
    for name, imported in graph.items():
        if name.startswith(("deployments.routes", "deployments.realtime")):
            assert not imported & {"deployments.ingress", "deployments.http", "deployments.app"}, name
    assert "deployments.state" in graph["deployments.realtime.cascade"]
    assert not any(m.startswith("deployments.routes") for m in graph["deployments.ingress"])


def test_the_scan_finds_a_cycle_hidden_in_a_function_body(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    assert cycles(import_graph(tmp_path, "pkg")) == [["pkg.a", "pkg.b"]]
