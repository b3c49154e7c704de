# SPDX-License-Identifier: LGPL-2.1-or-later
"""``upcall watch`` and ``upcall doctor`` for the BPF path.

:func:`add_commands` registers them on the main CLI's subparsers; each sets
``func`` to a handler taking the parsed arguments and returning the exit
status. Errors are the main CLI's: a BpfError is one ``upcall: ...`` line on
stderr and exit status 1, a bad option exit status 2.
``python -m upcall.bpf`` runs the same commands.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from upcall._args import parse_count, parse_pid, parse_seconds, ranged
from upcall._cli_common import Terminated, event_line, finish, out, sigterm_ends_run

#: Interrupt lines as the kernel numbers them (``/sys/kernel/irq/N``).
parse_irq = ranged("IRQ", 0, (1 << 31) - 1)


def _comm(text: str) -> str:
    if not 0 < len(text.encode()) <= 15:
        raise argparse.ArgumentTypeError(f"comm {text!r} must be 1 to 15 bytes (TASK_COMM_LEN)")
    return text


def _hook_from(args: argparse.Namespace) -> object:
    from ._subscription import Irq, Kprobe, Tracepoint, Trigger

    if args.irq is not None:
        return Irq(args.irq)
    if args.tracepoint is not None:
        return Tracepoint(args.tracepoint)
    if args.kprobe is not None:
        return Kprobe(args.kprobe, attach=args.attach)
    return Trigger()


def cmd_watch(args: argparse.Namespace) -> int:
    """Print the events of one kernel hook, delivered by BPF (no module needed).

    Ends after --count events, after --timeout seconds without an event, or
    on Ctrl-C/SIGTERM, with a summary line. Exit status 1 if --count was not
    reached, or if --timeout ran out before any event at all; else 0.
    """
    from ._subscription import BpfSubscription

    hook = _hook_from(args)
    seen = 0
    with (
        BpfSubscription(
            hook,  # type: ignore[arg-type]
            via=args.via,
            pid=args.pid,
            comm=args.comm,
        ) as sub,
        sigterm_ends_run(),
    ):
        # The readiness line, on stderr so that stdout holds only results:
        # tests and scripts wait for it, not a sleep.
        print(f"watching {hook} via {args.via}", file=sys.stderr, flush=True)
        try:
            while args.count is None or seen < args.count:
                want = 256 if args.count is None else min(256, args.count - seen)
                events = sub.read(want, timeout=args.timeout)
                for ev in events:
                    out(event_line(ev, args.json, transport=True))
                    seen += 1
                if not events:  # --timeout seconds without an event
                    break
        except (KeyboardInterrupt, Terminated):
            pass
        st = sub.stats()
    return finish(args, {"received": seen, "dropped": st.dropped, "filtered": st.filtered})


def cmd_doctor(args: argparse.Namespace) -> int:
    """Say what this machine offers the BPF path, one check a line.

    Exit status 1, with the fix in one line on stderr, when something every
    subscription needs is missing (libbpf, the BPF object, privileges, BTF,
    the ring buffer, tracefs); kfunc, fentry and kprobes only narrow what
    runs.
    """
    from . import _doctor

    checks = _doctor.all_checks()
    missing = [c for c in checks if c.needed and not c.ok]
    if args.json:
        rows: list[dict[str, Any]] = [
            {"name": c.name, "ok": c.ok, "needed": c.needed, "detail": c.detail, "fix": c.fix}
            for c in checks
        ]
        out(json.dumps({"ok": not missing, "checks": rows}))
    else:
        for c in checks:
            out(f"{'ok ' if c.ok else 'NO '} {c.name:<11} {c.detail}")
    if missing:
        fixes = "; ".join(f"{c.name}: {c.fix}" for c in missing)
        print(f"upcall: the BPF path cannot run here: {fixes}", file=sys.stderr, flush=True)
        return 1
    return 0


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``watch`` and ``doctor`` on the main CLI."""
    w = subparsers.add_parser(
        "watch",
        help="print kernel events from a BPF hook (no module needed)",
        description=cmd_watch.__doc__,
        epilog="examples:\n"
        "  upcall watch --tracepoint sched:sched_process_exec --count 3\n"
        "  upcall watch --irq 36 --via ringbuf --comm kworker/0:1 --json\n"
        "  upcall watch --kprobe do_sys_openat2 --pid 1234 --timeout 10",
    )
    hook = w.add_mutually_exclusive_group(required=True)
    hook.add_argument("--irq", type=parse_irq, metavar="N", help="hardware interrupt line N")
    hook.add_argument("--tracepoint", metavar="CAT:NAME", help="a tracepoint by name")
    hook.add_argument("--kprobe", metavar="FUNC", help="a kernel function (fentry or kprobe)")
    w.add_argument(
        "--attach",
        choices=("auto", "fentry", "kprobe"),
        default="auto",
        help="with --kprobe: fentry where BTF has the function (auto), or insist on one",
    )
    w.add_argument(
        "--via",
        choices=("signal", "ringbuf"),
        default="ringbuf",
        help="a real-time signal with the value (needs Linux 6.13 for another task), "
        "or the BPF ring buffer (default)",
    )
    w.add_argument("--count", type=parse_count, metavar="N", help="stop after N events")
    w.add_argument(
        "--pid", type=parse_pid, metavar="PID", help="only events from this process (in-kernel)"
    )
    w.add_argument(
        "--comm", type=_comm, metavar="NAME", help="only events from tasks named NAME (in-kernel)"
    )
    w.add_argument(
        "--timeout", type=parse_seconds, metavar="S", help="stop after S seconds without an event"
    )
    w.add_argument("--json", action="store_true", help="print JSON lines")
    w.set_defaults(func=cmd_watch)

    d = subparsers.add_parser(
        "doctor",
        help="what this machine offers the BPF path, and the fix for what is missing",
        description=cmd_doctor.__doc__,
        epilog="example:\n  sudo upcall doctor --json",
    )
    d.add_argument("--json", action="store_true", help="print one JSON object")
    d.set_defaults(func=cmd_doctor)
