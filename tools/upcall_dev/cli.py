# SPDX-License-Identifier: LGPL-2.1-or-later
"""``python -m upcall_dev``: the kernel harness and the benchmarks.

Exit status and errors as the ``upcall`` command has them: 0 on success, 1
for a runtime error, 2 for a usage error; every error one line on stderr,
prefixed ``upcall_dev: ``.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from typing import cast

from upcall._args import Parser
from upcall._cli_common import run

PROG = "upcall_dev"

#: Each command's module (imported only for that command: an import costs
#: seconds in a guest, where ``bench --in-guest`` runs).
COMMANDS = {
    "vm": "upcall_dev.vm",
    "bench": "upcall_dev.bench",
    "bench-bpf": "upcall_dev.bench_bpf",
}

EPILOG = """\
examples:
  python -m upcall_dev vm --edu -- python -m pytest -q tests/kernel/test_edu.py
  python -m upcall_dev bench --small
  sudo .venv/bin/python -m upcall_dev bench-bpf --no-plots

exit status: 0 success; 1 a build, boot or run that failed; 2 bad usage."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser (``command``: only that command's module is imported)."""
    parser = Parser(
        prog=PROG,
        description="upcall's developer tooling: the kernel harness and the benchmarks.",
        epilog=EPILOG,
    )
    commands = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True, metavar="COMMAND"),
    )
    wanted = [COMMANDS[command]] if command in COMMANDS else COMMANDS.values()
    for module in wanted:
        importlib.import_module(module).add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m upcall_dev`` with ``argv`` (None: ``sys.argv[1:]``); return the status."""
    return run(PROG, build_parser, argv)
