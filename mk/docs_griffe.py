# SPDX-License-Identifier: LGPL-2.1-or-later
"""Griffe extension for the API reference: upcall's docstrings as Markdown.

The docstrings are written for reading in the source and in ``help()``:
Sphinx roles (``:class:`Event```) and field lists of the form
``name: what it is`` with indented continuation lines.  This rewrites them
at render time, leaving the source alone:

- a role becomes a cross-reference when its target is an object the
  reference renders (public, in a documented package), else a code span;
- a run of ``name: text`` lines becomes a list with the names in code;
- a paragraph ending in ``::`` ends in ``:``, and the indented block after
  it becomes a fenced Python code block; so does a doctest (``>>>``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|meth|attr|func|data|mod|exc|const|obj):`(~?)([^`]+)`")
FIELD = re.compile(r"^([a-z_][a-z0-9_]*): (\S.*)$")
DOCUMENTED = ("upcall", "upcall.abi", "upcall.bpf")


class MarkdownDocstrings(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "upcall":
            return
        self.pkg = pkg
        self.public = self._public_paths(pkg)
        self._walk(pkg, set())

    # -- which objects the reference renders, by canonical path --------

    def _public_paths(self, pkg: griffe.Module) -> set[str]:
        paths: set[str] = set()
        for modpath in DOCUMENTED:
            mod = pkg if modpath == "upcall" else pkg.get_member(modpath.split(".", 1)[1])
            names = mod.exports if mod.exports is not None else list(mod.members)
            for name in names:
                name = str(name)
                if name.startswith("_"):
                    continue
                member = mod.members.get(name)
                if member is None:
                    continue
                target = self._final(member)
                # The reference leaves out what has no docstring.
                if target is None or not target.has_docstrings:
                    continue
                paths.add(target.canonical_path)
                if target.is_class:
                    for sub, m in target.members.items():
                        if not sub.startswith("_") and m.has_docstring:
                            paths.add(f"{target.canonical_path}.{sub}")
        return paths

    @staticmethod
    def _final(obj: griffe.Object | griffe.Alias) -> griffe.Object | None:
        try:
            return obj.final_target if obj.is_alias else obj  # type: ignore[union-attr]
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None

    def _resolve(self, scope: griffe.Object, name: str) -> str | None:
        """The canonical path a role's target names, seen from ``scope``."""
        head, _, rest = name.partition(".")
        cands: list[griffe.Object | griffe.Alias] = []
        obj: griffe.Object | None = scope
        while obj is not None:
            members = obj.all_members if obj.is_class else obj.members
            if head in members:
                cands.append(members[head])
                break
            obj = obj.parent
        if not cands and head == "upcall":
            cands.append(self.pkg)
        if not cands:
            return None
        target = self._final(cands[0])
        for part in rest.split(".") if rest else []:
            if target is None:
                return None
            members = target.all_members if target.is_class else target.members
            target = self._final(members[part]) if part in members else None
        return None if target is None else target.canonical_path

    # -- the rewriting --------------------------------------------------

    def _walk(self, obj: griffe.Object, seen: set[int]) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if obj.docstring is not None:
            obj.docstring.value = self._rewrite(obj, obj.docstring.value)
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, seen)  # type: ignore[arg-type]

    def _role(self, scope: griffe.Object, m: re.Match[str]) -> str:
        tilde, name = m.group(1), m.group(2)
        shown = name.rsplit(".", 1)[-1] if tilde else name
        if any(p.startswith("_") for p in name.lstrip(".").split(".")):
            return f"`{shown}`"
        path = None if name.startswith(".") else self._resolve(scope, name)
        if path is None or path not in self.public:
            return f"`{shown}`"
        return f"[`{shown}`][{path}]"

    def _rewrite(self, scope: griffe.Object, text: str) -> str:
        text = ROLE.sub(lambda m: self._role(scope, m), text)
        out: list[str] = []
        lines = text.split("\n")
        in_fields = False
        i = 0
        while i < len(lines):
            line = lines[i]
            field = FIELD.match(line) if i > 0 else None  # never the summary line
            prev_blank = not lines[i - 1].strip() or in_fields
            if field and prev_blank:
                out.append(f"- `{field.group(1)}`: {field.group(2)}")
                in_fields = True
            elif in_fields and line.startswith("    ") and line.strip():
                out.append("  " + line.strip())
            elif line.endswith("::") and not line.startswith(" ") and line.strip() != "::":
                # A literal block: the indented lines after it, as fenced code.
                in_fields = False
                out.append(line[:-1])
                j = i + 1
                block: list[str] = []
                while j < len(lines) and (not lines[j].strip() or lines[j].startswith("    ")):
                    block.append(lines[j][4:])
                    j += 1
                while block and not block[-1].strip():
                    block.pop()
                while block and not block[0].strip():
                    block.pop(0)
                out += ["", "```python", *block, "```", ""]
                i = j
                continue
            elif line.startswith(">>>"):
                # A doctest: fenced, or Markdown reads ">>>" as quotes.
                in_fields = False
                j = i
                while j < len(lines) and lines[j].strip() and not FIELD.match(lines[j]):
                    j += 1
                out += ["```pycon", *lines[i:j], "```"]
                i = j
                continue
            else:
                in_fields = False
                out.append(line)
            i += 1
        return "\n".join(out)
