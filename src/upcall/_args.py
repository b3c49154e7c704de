# SPDX-License-Identifier: LGPL-2.1-or-later
"""The command line's parser class and its number and duration parsers, for every command.

Each parser takes the option's text and returns the value, or raises
:class:`argparse.ArgumentTypeError` with one readable line; the command
then prints ``upcall: argument --X: <that line>`` and exits with status 2.
No number reaches a command unchecked: nan, inf, out-of-range and
malformed input are refused here, never as a traceback later.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn


class UsageError(Exception):
    """A bad command line: reported in one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, not usage plus message.

    Epilogs (each command's examples) keep their line breaks.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


#: argparse reads "-0x10" as an option; a parser with this matcher takes negative hex too.
NEGATIVE_NUMBER = re.compile(r"^-(\d[\d_]*|0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+)$")

#: The longest duration any option takes, in seconds (about 11.5 days): far
#: below what poll(2), epoll and threading accept.
SECONDS_MAX = 1_000_000
#: The kernel's PID_MAX_LIMIT: no pid is ever above it.
PID_MAX_LIMIT = 1 << 22
#: A count that fits every counter (u64 in the kernel, a Python int here).
COUNT_MAX = 1 << 62


def parse_int(text: str) -> int:
    """An integer in decimal, 0x hex, 0o octal or 0b binary, optionally negative."""
    try:
        return int(text.strip(), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def ranged(name: str, lo: int, hi: int, *, shown: str | None = None) -> Callable[[str], int]:
    """A parser of integers from ``lo`` to ``hi``, named ``name`` in its refusals.

    ``shown``: the range as the refusal says it (default ``lo..hi``).
    """

    def parse(text: str) -> int:
        n = parse_int(text)
        if not lo <= n <= hi:
            raise argparse.ArgumentTypeError(f"{name} {text} out of range {shown or f'{lo}..{hi}'}")
        return n

    return parse


parse_count = ranged("count", 1, COUNT_MAX, shown="1..2**62")


def pid_max() -> int:
    """This kernel's highest pid (``/proc/sys/kernel/pid_max``), else PID_MAX_LIMIT."""
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return PID_MAX_LIMIT


def parse_pid(text: str) -> int:
    """A process id this kernel can have: 1..pid_max."""
    return ranged("pid", 1, pid_max())(text)


def parse_seconds(text: str) -> float:
    """A finite number of seconds, 0 to SECONDS_MAX."""
    try:
        s = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if math.isnan(s) or not 0 <= s <= SECONDS_MAX:
        raise argparse.ArgumentTypeError(f"seconds {text} out of range 0..{SECONDS_MAX}")
    return s


def parse_wait(text: str) -> float:
    """A number of seconds above 0, up to SECONDS_MAX."""
    s = parse_seconds(text)
    if s == 0:
        raise argparse.ArgumentTypeError("seconds must be more than 0")
    return s


_SIZE_RE = re.compile(r"^(\d+)([KMGT]?)$", re.IGNORECASE)
_MIB = 1 << 20
_SIZE_UNITS = {"K": 1 << 10, "M": _MIB, "G": 1 << 30, "T": 1 << 40}


def _size_text(n: int) -> str:
    for unit in "TGM":
        if n % _SIZE_UNITS[unit] == 0:
            return f"{n // _SIZE_UNITS[unit]}{unit}"
    return f"{n // _SIZE_UNITS['K']}K"


def parse_mib_size(name: str, lo: int, hi: int) -> Callable[[str], str]:
    """A parser of memory sizes as QEMU's ``-m`` takes them, ``lo`` to ``hi`` bytes:
    a number of MiB, or a number with K, M, G or T (powers of 1024), a whole
    number of MiB.

    Returns the size in MiB as QEMU reads it (``2048M``).
    """

    def parse(text: str) -> str:
        m = _SIZE_RE.match(text.strip())
        if m is None:
            raise argparse.ArgumentTypeError(
                f"not a size: {text!r} (MiB, or a number with K, M, G or T)"
            )
        n = int(m.group(1)) * _SIZE_UNITS[m.group(2).upper() or "M"]
        if not lo <= n <= hi:
            raise argparse.ArgumentTypeError(
                f"{name} {text} out of range {_size_text(lo)}..{_size_text(hi)}"
            )
        if n % _MIB:
            raise argparse.ArgumentTypeError(f"{name} {text} is not a whole number of MiB")
        return f"{n // _MIB}M"

    return parse
