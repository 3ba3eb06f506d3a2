"""The package layout: docs/DESIGN.md's module list matches the tree, imports have no cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "flowdeblur"


def _modules_in_tree() -> set[str]:
    """Paths like 'media/atomic.py' of every module (package __init__ and __main__ excluded)."""
    return {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
            if p.name not in ("__init__.py", "__main__.py")}


def _modules_in_design() -> set[str]:
    text = (ROOT / "docs" / "DESIGN.md").read_text()
    section = text.split("## Modules", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([\w/]+\.py)`", section))
    return {m for m in named if not m.endswith("__init__.py") and not m.startswith("tests/")}


def test_design_lists_every_module_and_nothing_else():
    tree, design = _modules_in_tree(), _modules_in_design()
    assert not tree - design, f"modules missing from docs/DESIGN.md: {sorted(tree - design)}"
    assert not design - tree, f"docs/DESIGN.md lists modules that do not exist: " \
                              f"{sorted(design - tree)}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path) -> set[str]:
    """Package modules imported at module level (not inside functions) by ``path``."""
    tree = ast.parse(path.read_text())
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("flowdeblur"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("flowdeblur"))
    return found


def test_no_import_cycles_between_modules():
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: {t for t in _top_level_imports(p) if t in files and t != name}
             for name, p in files.items()}
    # A package's __init__ may re-export its own submodules; that is not a cycle of code.
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")
                       and not name.startswith(t + ".")}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
