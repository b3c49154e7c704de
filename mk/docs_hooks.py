# SPDX-License-Identifier: LGPL-2.1-or-later
"""MkDocs hook: serve repository files as pages of the site, from one source.

README.md, BENCHMARKS.md, RELIABILITY.md, CHANGELOG.md and bpf/README.md are
added where they sit in the repository, with the figures they show and the
kernel-format documents (Documentation/), so the
links between them resolve as on the repository itself and nothing is copied
into docs/.  Strict builds then check those links too.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent

# repository path -> where the page lands in the site (None: as in the repo)
PAGES = {
    "README.md": "overview/index.html",
    "BENCHMARKS.md": "benchmarks/index.html",
    "RELIABILITY.md": "reliability/index.html",
    "CHANGELOG.md": "changelog/index.html",
    "bpf/README.md": "bpf/index.html",
}
FIGURES = ("bench/*.png", "bpf/*.png")
# Kernel-format documents, served as they are (mkdocs renders neither).
KERNEL_DOCS = ("Documentation/userspace-api/upcall.rst", "Documentation/netlink/specs/upcall.yaml")


def on_files(files: Files, config: MkDocsConfig) -> Files:
    def add(path: str, dest_uri: str | None) -> None:
        files.append(
            File(
                path,
                src_dir=str(ROOT),
                dest_dir=config.site_dir,
                use_directory_urls=config.use_directory_urls,
                dest_uri=dest_uri,
            )
        )

    for path, dest in PAGES.items():
        add(path, dest)
    for pattern in FIGURES:
        for png in sorted(ROOT.glob(pattern)):
            add(png.relative_to(ROOT).as_posix(), None)
    for path in KERNEL_DOCS:
        add(path, None)
    return files
