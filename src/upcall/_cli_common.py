# SPDX-License-Identifier: LGPL-2.1-or-later
"""What the command lines share: output lines, how a run ends, how an error is told.

Apart from :mod:`upcall._cli` so that the BPF path's commands
(:mod:`upcall.bpf._cli`), which the main command line loads, need not
import it back.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from ._args import UsageError
from ._errors import DeviceError, UpcallError
from ._event import Event


def out(line: str) -> None:
    """Print one line of results on stdout, at once."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()  # a test or pipe reads line by line


class Terminated(Exception):
    """SIGTERM during listen or watch: end like Ctrl-C, with the summary."""


@contextmanager
def sigterm_ends_run() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def event_line(ev: Event, as_json: bool, *, transport: bool = False) -> str:
    """One event as ``upcall listen`` and ``upcall watch`` print it (``transport``: say it)."""
    latency = ev.latency_ns
    if as_json:
        return json.dumps(
            {
                "type": "event",
                "seqno": ev.seqno,
                "value": ev.value,
                "signed_value": ev.signed_value,
                "source": ev.source,
                "transport": ev.transport,
                "signo": ev.signo,
                "latency_ns": latency,
            }
        )
    value = str(ev.value)
    if ev.signed_value < 0:
        value += f" ({ev.signed_value})"
    lat = "-" if latency is None else f"{latency / 1000:.1f}us"
    via = f" transport={ev.transport}" if transport else ""
    return f"seqno={ev.seqno} value={value} source={ev.source}{via} latency={lat}"


def finish(args: argparse.Namespace, summary: dict[str, int]) -> int:
    """Print the summary line of ``listen`` or ``watch``; return the exit status.

    1 if ``--count`` was not reached (``summary["received"]`` events), or if
    ``--timeout`` ran out before any event at all; else 0.
    """
    if args.json:
        out(json.dumps({"type": "summary", **summary}))
    else:
        out("summary " + " ".join(f"{k}={v}" for k, v in summary.items()))
    received = summary["received"]
    if args.count is not None and received < args.count:
        return 1
    if args.timeout is not None and received == 0:
        return 1
    return 0


def run(
    prog: str,
    build_parser: Callable[[str | None], argparse.ArgumentParser],
    argv: Sequence[str] | None,
) -> int:
    """Parse ``argv`` (None: ``sys.argv[1:]``), run its command; the exit status.

    ``build_parser(command)`` builds the parser (for ``command`` alone where
    it can). Every error is one ``prog: ...`` line, never a traceback: 2 for
    bad usage, 1 for a failed run, 130 for Ctrl-C.
    """

    def error(message: str) -> None:
        sys.stderr.write(f"{prog}: {message}\n")
        sys.stderr.flush()

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        error(str(e))
        return 2
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UsageError as e:
        error(str(e))
        return 2
    except BrokenPipeError:
        # `upcall listen | head -1`: the reader left; end quietly, like cat(1).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except DeviceError as e:
        error(e.strerror or str(e))
        return 1
    except (UpcallError, OSError) as e:
        error(str(e))
        return 1
    except KeyboardInterrupt:
        return 130
