# SPDX-License-Identifier: LGPL-2.1-or-later
"""``upcall watch``, ``upcall doctor`` and ``upcall bench-bpf`` for the BPF path.

:func:`add_commands` registers them on the main CLI's subparsers; each sets
``func`` to a handler taking the parsed arguments and returning the exit
status. ``python -m upcall.bpf`` runs them without the main CLI.
Every refusal is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from .errors import BpfError

PROG = "upcall"


def _hook_from(args: argparse.Namespace) -> object:
    from .subscription import Irq, Kprobe, Tracepoint, Trigger

    if args.irq is not None:
        return Irq(args.irq)
    if args.tracepoint is not None:
        return Tracepoint(args.tracepoint)
    if args.kprobe is not None:
        return Kprobe(args.kprobe, attach=args.attach)
    return Trigger()


def cmd_watch(args: argparse.Namespace) -> int:
    from .subscription import BpfSubscription

    hook = _hook_from(args)
    try:
        with BpfSubscription(
            hook,  # type: ignore[arg-type]
            via=args.via,
            pid=args.pid,
            comm=args.comm,
        ) as sub:
            # The readiness line: tests and scripts wait for it, not a sleep.
            print(f"watching {hook} via {args.via}", file=sys.stderr, flush=True)
            seen = 0
            while args.count is None or seen < args.count:
                want = 256 if args.count is None else min(256, args.count - seen)
                for ev in sub.read(want, timeout=args.timeout):
                    lat = ev.latency_ns
                    print(
                        f"seqno={ev.seqno} value={ev.value} source={ev.source} "
                        f"transport={ev.transport}"
                        + ("" if lat is None else f" latency_us={lat / 1000:.1f}"),
                        flush=True,
                    )
                    seen += 1
                if args.timeout is not None and seen == 0:
                    break
            st = sub.stats()
            if st.dropped:
                print(f"dropped {st.dropped} events (counted in the kernel)", file=sys.stderr)
    except BpfError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from . import probe

    try:
        checks = probe.all_checks()
    except BpfError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    for c in checks:
        print(f"{'ok ' if c.ok else 'NO '} {c.name:<11} {c.detail}")
    needed = {"privileges", "BTF", "ringbuf"}
    return 0 if all(c.ok for c in checks if c.name in needed) else 1


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    try:
        return bench.run(
            events=args.events,
            latency_events=args.latency_events,
            out=args.out,
            plots=not args.no_plots,
        )
    except BpfError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1


def _positive(text: str) -> int:
    n = int(text)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {n}")
    return n


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``watch``, ``doctor`` and ``bench-bpf`` on the main CLI."""
    w = subparsers.add_parser(
        "watch", help="print kernel events from a BPF hook (no module needed)"
    )
    hook = w.add_mutually_exclusive_group(required=True)
    hook.add_argument("--irq", type=int, metavar="N", help="hardware interrupt line N")
    hook.add_argument("--tracepoint", metavar="CAT:NAME", help="a tracepoint by name")
    hook.add_argument("--kprobe", metavar="FUNC", help="a kernel function (fentry or kprobe)")
    w.add_argument(
        "--attach",
        choices=("auto", "fentry", "kprobe"),
        default="auto",
        help="with --kprobe: fentry where BTF has the function (auto), or insist on one",
    )
    w.add_argument("--via", choices=("signal", "ringbuf"), default="ringbuf")
    w.add_argument("--count", type=_positive, help="stop after N events")
    w.add_argument("--pid", type=_positive, help="only events from this process (in-kernel)")
    w.add_argument("--comm", help="only events from tasks with this comm (in-kernel)")
    w.add_argument("--timeout", type=float, help="give up after this many seconds idle")
    w.set_defaults(func=cmd_watch)

    d = subparsers.add_parser("doctor", help="what this kernel supports for the BPF path")
    d.set_defaults(func=cmd_doctor)

    b = subparsers.add_parser(
        "bench-bpf", help="latency and throughput of BPF signal and ring buffer, Python vs C"
    )
    b.add_argument("--events", type=_positive, default=200_000, help="throughput events")
    b.add_argument("--latency-events", type=_positive, default=20_000)
    b.add_argument("--out", default="build/bench", help="where results and plots go")
    b.add_argument("--no-plots", action="store_true")
    b.set_defaults(func=cmd_bench)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG)
    sub = parser.add_subparsers(required=True)
    add_commands(sub)
    args = parser.parse_args(argv)
    # Die quietly on a closed pipe (`upcall watch | head`).
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
