"""pykbroker's modules depend one way: any import cycle among them fails here, listed.

Every import counts, including those under ``if TYPE_CHECKING:`` and inside functions: a
cycle hidden there still ties two layers together (ARCHITECTURE.md, "Dependencies point one
way"). A package's ``__init__`` may import its submodules; a submodule importing the package
root back is a cycle like any other.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def module_paths(root: Path, package: str) -> dict[str, Path]:
    """``dotted module name -> file`` for every .py file of ``package`` under ``root``."""
    out: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imported_names(module: str, is_package: bool, tree: ast.AST) -> Iterator[tuple[str, str]]:
    """``(base, name)`` per imported name; ``name`` is "" for a plain ``import base``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ""
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                yield base, alias.name


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """``module -> modules of the package it imports`` (``from pkg import name`` is an edge
    to ``pkg.name`` when that is a module, else to ``pkg``)."""
    modules = module_paths(root, package)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        edges = graph[module] = set()
        for base, name in _imported_names(module, path.name == "__init__.py", tree):
            target = f"{base}.{name}" if name and f"{base}.{name}" in modules else base
            if target in modules and target != module:
                edges.add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components with more than one module, each sorted, in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(out)


def _shortest_cycle(graph: dict[str, set[str]], members: set[str], start: str) -> list[str]:
    """The shortest path ``start -> ... -> start`` inside one component (breadth first)."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node] & members):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if child not in came_from:
                came_from[child] = node
                queue.append(child)
    raise AssertionError(f"{start} is on no cycle of its component")


def find_cycles(root: Path, package: str) -> list[str]:
    """One ``a → b → a`` line per cycle, until every module of every component is on one."""
    graph = import_graph(root, package)
    lines: list[str] = []
    for component in strongly_connected(graph):
        members, covered = set(component), set()
        for module in component:
            if module not in covered:
                cycle = _shortest_cycle(graph, members, module)
                covered.update(cycle)
                lines.append(" → ".join(cycle))
    return lines


def test_pykbroker_has_no_import_cycles() -> None:
    cycles = find_cycles(ROOT, "pykbroker")
    if cycles:
        pytest.fail("import cycles in pykbroker:\n" + "\n".join(cycles), pytrace=False)


# ----------------------------------------------------------------- the finder on small trees


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_cycle_through_type_checking_import_is_reported(tmp_path: Path) -> None:
    _write_tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from typing import TYPE_CHECKING\n"
                    "if TYPE_CHECKING:\n    from pkg.b import B\n",
        "pkg/b.py": "from pkg.a import A\n",
    })
    assert find_cycles(tmp_path, "pkg") == ["pkg.a → pkg.b → pkg.a"]


def test_cycle_through_function_level_relative_import_is_reported(tmp_path: Path) -> None:
    _write_tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "",
        "pkg/sub/a.py": "def f():\n    from ..c import C\n",
        "pkg/c.py": "import pkg.sub.a\n",
    })
    assert find_cycles(tmp_path, "pkg") == ["pkg.c → pkg.sub.a → pkg.c"]


def test_submodule_importing_its_package_root_is_reported(tmp_path: Path) -> None:
    _write_tree(tmp_path, {
        "pkg/__init__.py": "from pkg.a import A\nX = 1\n",
        "pkg/a.py": "from pkg import X\n",
    })
    assert find_cycles(tmp_path, "pkg") == ["pkg → pkg.a → pkg"]


def test_acyclic_tree_is_not_reported(tmp_path: Path) -> None:
    _write_tree(tmp_path, {
        "pkg/__init__.py": "from pkg.a import A\nfrom . import b\n",
        "pkg/a.py": "from typing import TYPE_CHECKING\nimport os\n"
                    "if TYPE_CHECKING:\n    from .b import B\n",
        "pkg/b.py": "from pkg import c\ndef f():\n    import pkg.c\n",
        "pkg/c.py": "",
    })
    assert import_graph(tmp_path, "pkg") == {
        "pkg": {"pkg.a", "pkg.b"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": set(),
    }
    assert find_cycles(tmp_path, "pkg") == []
