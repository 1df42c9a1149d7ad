"""The emulator's modules form no import cycle, import alone, and never import Airflow.

The import graph is read with :mod:`ast` from the source (every ``import`` counts: module level,
``TYPE_CHECKING`` blocks and function bodies), so a cycle cannot hide behind a function-local import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import airflow_here_batch.emulator

PACKAGE = "airflow_here_batch.emulator"
ROOT = Path(airflow_here_batch.emulator.__file__).resolve().parent
#: Function-local emulator imports whose point is laziness (documented in the module), not a cycle.
LAZY_IMPORTS = {"airflow_here_batch.emulator.pytest_plugin"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """``(imported emulator module, function-local?)`` for every import of an emulator module."""
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    local: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            local.update(id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from pkg import sub`` imports the submodule ``pkg.sub``; ``from pkg import name`` the module.
            subs = [f"{node.module}.{a.name}" for a in node.names]
            names = [s for s in subs if s in MODULES] or [node.module]
        for name in names:
            if name in MODULES:
                found.append((name, id(node) in local))
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        # Importing a submodule runs its package's __init__ first; that is no edge of the graph.
        graph[name] = {target for target, _ in _imports(path) if not name.startswith(target + ".")}
    return graph


def test_the_emulator_modules_are_found() -> None:
    for name in ("server", "state", "errors", "jobs", "upload", "access", "notifications", "admin"):
        assert f"{PACKAGE}.{name}" in MODULES
    assert f"{PACKAGE}.admin.handlers" in MODULES and f"{PACKAGE}.admin.client" in MODULES


def test_no_import_cycle() -> None:
    graph = _graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycle = [*path[path.index(node) :], node]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        for target in sorted(graph[node]):
            visit(target, [*path, node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])


def test_no_function_local_emulator_imports() -> None:
    found = [
        f"{name} imports {target}"
        for name, path in MODULES.items()
        if name not in LAZY_IMPORTS
        for target, local in _imports(path)
        if local
    ]
    assert found == []


def test_errors_and_notifications_need_nothing_from_the_server() -> None:
    graph = _graph()
    assert graph[f"{PACKAGE}.errors"] <= {f"{PACKAGE}.constants"}
    assert f"{PACKAGE}.server" not in graph[f"{PACKAGE}.notifications"]
    assert f"{PACKAGE}.state" not in graph[f"{PACKAGE}.notifications"]


_ALONE = """
import importlib, sys
importlib.import_module(sys.argv[1])
heavy = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
assert not heavy, f"{sys.argv[1]} imported Airflow: {heavy[:5]}"
if sys.argv[1] in ("airflow_here_batch.emulator", "airflow_here_batch.emulator.admin"):
    assert "aiohttp" not in sys.modules, f"{sys.argv[1]} imported aiohttp"
"""


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.endswith(".__main__")))  # runs the CLI
def test_module_imports_alone_without_airflow(module: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _ALONE, module], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
