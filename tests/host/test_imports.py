"""No import circles in the library: no module imports one that imports it back.

Every ``import``/``from ... import`` counts, also one inside a function, and
so does a module name in a string (``importlib.import_module("upcall.vm")``);
not the package ``__init__`` files (importing ``upcall.abi`` runs
``upcall/__init__.py`` whatever one does) nor an ``if __name__ == "__main__":``
block, which runs as another module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import upcall

SRC = Path(upcall.__file__).parent.parent
PACKAGES = {"upcall", "upcall.bpf", "upcall.transports"}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in SRC.joinpath("upcall").rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            node.body = [  # type: ignore[attr-defined]
                b for b in body if not (isinstance(b, ast.If) and "__main__" in ast.unparse(b.test))
            ]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in mods else module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value:
            found.add(node.value)
    return {m for m in found if m in mods and m not in PACKAGES and m != name}


def test_no_import_circles() -> None:
    mods = _modules()
    graph = {name: _imports(name, path, mods) for name, path in mods.items()}
    circles = []
    for start in graph:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    circles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert circles == []
