"""No import circles in the library and the checkout's tooling (upcall_dev): no
module imports one that imports it back; the library imports no tooling.

Every ``import``/``from ... import`` counts, also one inside a function, and
so does a module name in a string (``importlib.import_module("upcall_dev.vm")``);
not the package ``__init__`` files (importing ``upcall.abi`` runs
``upcall/__init__.py`` whatever one does) nor an ``if __name__ == "__main__":``
block, which runs as another module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import upcall
import upcall_dev

#: Each package and the directory it is in.
ROOTS = {
    "upcall": Path(upcall.__file__).parent.parent,
    "upcall_dev": Path(upcall_dev.__file__).parent.parent,
}
PACKAGES = {"upcall", "upcall.bpf", "upcall._transports", "upcall_dev"}


def _modules() -> dict[str, Path]:
    mods = {}
    for package, root in ROOTS.items():
        for path in root.joinpath(package).rglob("*.py"):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
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


def test_the_library_imports_no_tooling_and_seeks_no_checkout() -> None:
    """The wheel holds upcall alone: it must work without upcall_dev and a checkout.

    No module of it reads its own ``__file__`` (``parents[2]``, a walk up to a
    ``build/``): what it needs is beside it in the package.
    """
    mods = _modules()
    for name, path in mods.items():
        if name.startswith("upcall_dev"):
            continue
        imported = _imports(name, path, mods)
        assert not {m for m in imported if m.startswith("upcall_dev")}, name
        assert "__file__" not in path.read_text(), f"{name} looks around its own file"
    assert len(mods) > 30 and "upcall_dev.vm" in mods
