"""The layers point one way and no module imports another in a cycle, type-only imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("abtest", "service", "analysis")
# Only the outer shell may reach both the core and the layers above it.
SHELL = ("abtest.cli", "abtest.demo", "abtest.demo_rollout")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> project modules it imports anywhere (top level, functions, TYPE_CHECKING)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import sub` names the submodule; the package itself is its parent.
                subs = [f"{node.module}.{a.name}" for a in node.names]
                targets = [s for s in subs if s in modules] or [node.module]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


GRAPH = _imports(_modules())


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    """No two modules of the project import each other, directly or through others."""
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle():
    """The check above can fail: a planted two-module cycle is reported."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


CORE = sorted(m for m in GRAPH if m.startswith("abtest") and not m.startswith(SHELL))


@pytest.mark.parametrize("module", CORE)
def test_the_core_never_imports_the_layers_above_it(module):
    """`abtest` uses neither `service` nor `analysis`, except the CLI and the demo (the shell)."""
    above = sorted(t for t in GRAPH[module] if t.split(".")[0] in ("service", "analysis"))
    assert above == []


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("analysis")))
def test_analysis_never_imports_the_service(module):
    """The statistics know nothing of HTTP."""
    assert not [t for t in GRAPH[module] if t.startswith("service")]


@pytest.mark.parametrize("room", ["analysis.planning", "analysis.statistics"])
def test_pure_rooms_stay_pure(room):
    """Planning and statistics import neither the data edge, the decision, nor the report."""
    impure = ("analysis.data", "analysis.decision", "analysis.report", "analysis.analyzer")
    for module in (m for m in GRAPH if m.startswith(room)):
        assert not [t for t in GRAPH[module] if t.startswith(impure)], module
