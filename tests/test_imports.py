"""labkit's modules depend on each other one way: no import circle, not even inside a function.

A circle hides in a function-level import (``from .spawn import run`` in
the body of a pid function) as well as at the top of a file, so the graph
is read from every import statement of each module's syntax tree, wherever
it stands, and not from what Python happens to load.
"""

from __future__ import annotations

import ast
from pathlib import Path

LABKIT = Path(__file__).resolve().parent.parent / "labkit"


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The labkit modules PATH imports anywhere: ``from . import x``, ``from .x import y``, ``labkit.x``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module is None:  # from . import syscalls, user
                found.update(alias.name for alias in node.names)
            elif node.level == 1:  # from .spawn import run
                found.add(node.module.split(".")[0])
            elif node.module and node.module.startswith("labkit."):  # from labkit.spawn import run
                found.add(node.module.split(".")[1])
            elif node.module == "labkit":  # from labkit import spawn
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names
                         if alias.name.startswith("labkit."))
    return (found & modules) - {path.stem}


def graph() -> dict[str, set[str]]:
    paths = {p.stem: p for p in LABKIT.glob("*.py")}
    return {name: imports_of(path, set(paths)) for name, path in paths.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(edges[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_finder_sees_a_circle_through_a_function_level_import(tmp_path):
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from .c import g\n")
    (tmp_path / "c.py").write_text("import labkit.a\n")
    (tmp_path / "d.py").write_text("from .a import x\n")
    modules = {"a", "b", "c", "d"}
    edges = {name: imports_of(tmp_path / f"{name}.py", modules) for name in modules}
    assert edges == {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(edges) == [["a", "b", "c"]]


def test_labkit_has_no_import_circle():
    found = circles(graph())
    assert found == [], f"import circles among labkit modules: {found}"


def test_spawn_stands_between_the_per_type_modules():
    """user is below spawn (spawn writes the maps); pid and timens above it (they show with spawn)."""
    edges = graph()
    assert "user" in edges["spawn"] and "spawn" not in edges["user"]
    for above in ("pid", "timens"):
        assert "spawn" in edges[above] and above not in edges["spawn"]
