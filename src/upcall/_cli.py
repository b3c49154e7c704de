# SPDX-License-Identifier: LGPL-2.1-or-later
"""The ``upcall`` command.

Exit status: 0 on success; 1 for a runtime error (no device, module not
loaded, permission denied, a listen that got fewer events than asked); 2 for
a usage error (unknown option, a malformed or out-of-range number). Every
error is one line on stderr, prefixed ``upcall: ``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from . import _edu as edu
from . import abi
from ._args import (
    NEGATIVE_NUMBER,
    Parser,
    UsageError,
    parse_count,
    parse_seconds,
    parse_wait,
    ranged,
)
from ._cli_common import Terminated, event_line, finish, out, run, sigterm_ends_run
from ._device import DEFAULT_PATH, TRANSPORTS, Device
from ._errors import ModuleVersionError, UpcallError
from ._event import Event
from ._subscription import Subscription
from ._version import __version__
from .abi import Stats

#: The environment variable that names the device when --device is not given.
DEVICE_ENV = "UPCALL_DEVICE"
SYSFS_MODULE = Path("/sys/module/upcall")


parse_value = ranged("value", abi.S64_MIN, abi.U64_MAX)
parse_source = ranged("source", 0, abi.UPCALL_SOURCE_MAX)


def parse_user_source(text: str) -> int:
    """A source id user space may emit as: 0, or above upcall's reserved range."""
    n = parse_source(text)
    if 0 < n <= abi.UPCALL_SOURCE_RESERVED_MAX:
        raise argparse.ArgumentTypeError(
            f"source {text} is reserved for upcall's own sources (1..."
            f"{abi.UPCALL_SOURCE_RESERVED_MAX:#x}): use 0 or "
            f"{abi.UPCALL_SOURCE_RESERVED_MAX + 1:#x}..{abi.UPCALL_SOURCE_MAX:#x}"
        )
    return n


parse_signal = ranged("signal", int(signal.SIGRTMIN), int(signal.SIGRTMAX))
parse_queue_size = ranged("queue size", abi.UPCALL_QUEUE_MIN, abi.UPCALL_QUEUE_MAX)
parse_rcvbuf = ranged("receive buffer", 1, (1 << 31) - 1)
parse_raise_value = ranged("raise value", 1, 0xFFFFFFFF)
parse_raise_count = ranged("count", 1, 0xFFFFFFFF)
parse_factorial = ranged("factorial operand", 0, edu.FACTORIAL_MAX)

#: The sources ``listen --source`` knows by name.
SOURCE_NAMES = {
    "user": abi.UPCALL_SOURCE_USER,
    "timer": abi.UPCALL_SOURCE_TIMER,
    "edu": abi.UPCALL_SOURCE_EDU,
}


def parse_source_filter(text: str) -> int:
    """A source by name (user, timer, edu) or number."""
    name = text.strip().lower()
    if name in SOURCE_NAMES:
        return SOURCE_NAMES[name]
    try:
        return parse_source(text)
    except argparse.ArgumentTypeError:
        names = ", ".join(SOURCE_NAMES)
        raise argparse.ArgumentTypeError(
            f"source {text!r}: not one of {names} nor a number 0..{abi.UPCALL_SOURCE_MAX}"
        ) from None


def _device_path(args: argparse.Namespace) -> str:
    path: str | None = args.device or os.environ.get(DEVICE_ENV)
    return path or DEFAULT_PATH


def _stats_fields(st: Stats) -> dict[str, Any]:
    return {
        "transport": st.transport_name,
        "signo": st.signo,
        "emitted": st.emitted,
        "delivered": st.delivered,
        "dropped": st.dropped,
        "seqno": st.seqno,
        "pending": st.pending,
        "id": st.id,
        "queue_size": st.queue_size,
        "queued": st.queued,
    }


def _module_info() -> dict[str, str] | None:
    """What /sys/module/upcall tells about the loaded module, or None if absent."""
    if not SYSFS_MODULE.is_dir():
        return None
    info: dict[str, str] = {}
    for name in ("version", "srcversion", "refcnt", "initstate", "taint"):
        try:
            info[name] = (SYSFS_MODULE / name).read_text().strip()
        except OSError:
            continue
    params = SYSFS_MODULE / "parameters"
    if params.is_dir():
        for p in sorted(params.iterdir()):
            try:
                info[f"parameters.{p.name}"] = p.read_text().strip()
            except OSError:
                continue
    return info


def cmd_stats(args: argparse.Namespace) -> int:
    """Print module information and the counters of a fresh open file.

    Counters are per open file (one subscriber each), so a fresh file shows
    zeros; a listener prints its own subscriber's counters when it exits.
    """
    with Device(_device_path(args)) as dev:
        st = dev.stats()
        module = _module_info()
        if args.json:
            out(json.dumps({"device": dev.path, "module": module, "stats": _stats_fields(st)}))
            return 0
        if module is None:
            out("module: not listed in /sys/module (built in, or sysfs not mounted)")
        else:
            out("module: " + " ".join(f"{k}={v}" for k, v in module.items()))
        out(f"device: {dev.path}")
        out("counters: " + " ".join(f"{k}={v}" for k, v in _stats_fields(st).items()))
        out(
            "note: counters are per open file (one subscriber each); this fresh file is "
            "not subscribed, so they are 0: `upcall listen` prints its own when it exits"
        )
    return 0


def cmd_emit(args: argparse.Namespace) -> int:
    """Emit VALUE COUNT times; print how many subscriber queues it reached in all."""
    with Device(_device_path(args)) as dev:
        queued = 0
        for _ in range(args.count):
            queued += dev.emit(args.value, args.source)
    if args.json:
        out(
            json.dumps(
                {"count": args.count, "value": args.value, "source": args.source, "queued": queued}
            )
        )
    else:
        out(f"emitted count={args.count} value={args.value} source={args.source} queued={queued}")
    return 0


def cmd_listen(args: argparse.Namespace) -> int:
    """Print events as they arrive; a summary line on exit.

    Ends after --count events, after --timeout seconds without an event, or on
    Ctrl-C/SIGTERM. Exit status 1 if --count was not reached, or if --timeout
    ran out before any event at all; else 0. With --source, the module
    queues only that source's events for this subscription: the others are
    neither received nor counted, and cannot push its events out of the
    queue.
    """
    signal_options = args.signal is not None or args.thread
    if signal_options and args.via not in ("signal", "fasync"):
        raise UsageError(f"--signal and --thread apply to --via signal or fasync, not {args.via}")
    if args.rcvbuf is not None and args.via != "netlink":
        raise UsageError(f"--rcvbuf applies to --via netlink, not {args.via}")
    options: dict[str, Any] = {"queue_size": args.queue_size}
    if signal_options:
        options.update(signo=args.signal, thread=args.thread)
    if args.rcvbuf is not None:
        options["rcvbuf"] = args.rcvbuf
    if args.source is not None:
        options["sources"] = args.source
    if args.source == abi.UPCALL_SOURCE_EDU:
        edu.bound_device()  # else no event would ever come: say why now
    with Device(_device_path(args)) as dev:
        sub = dev.subscribe(args.via, **options)
    received = 0
    final: Stats | None = None

    def show(ev: Event) -> None:
        nonlocal received, final
        out(event_line(ev, args.json))
        received += 1
        if args.count is not None and received >= args.count:
            final = sub.stats()
            sub.close()  # ends run() in callback mode

    def done() -> bool:
        return args.count is not None and received >= args.count

    with sub, sigterm_ends_run():
        signo = getattr(sub, "signo", None)
        if args.json:
            out(
                json.dumps(
                    {"type": "listening", "via": args.via, "signo": signo, "pid": os.getpid()}
                )
            )
        else:
            out(f"listening via={args.via} signo={signo} pid={os.getpid()}")
        try:
            if args.api == "callback":
                sub.on_event(show)
                while not sub.closed and sub.run(args.timeout) and not done():
                    pass
            elif args.api == "asyncio":
                asyncio.run(_listen_async(sub, show, done, args.timeout))
            else:
                for ev in sub.events(args.timeout):
                    show(ev)
                    if done():
                        break
        except (KeyboardInterrupt, Terminated):
            pass
        if final is None:
            final = sub.stats()
        lost, foreign = sub.lost, getattr(sub, "foreign", 0)
    summary = {"received": received, "lost": lost, "dropped": final.dropped, "foreign": foreign}
    return finish(args, summary)


def cmd_trigger(args: argparse.Namespace) -> int:
    """Make the edu PCI device interrupt (root only); its handler emits each interrupt.

    Raises --count interrupts one after another, each with the status value
    --value (default: the raise's number, 1, 2, ...), or with --factorial N
    has the device compute N! --count times, each completion interrupting
    with status 0x1. Each interrupt is handled before the next is raised
    (the device merges raises that overlap), so --count interrupts give
    --count events per subscriber.
    """
    dev = edu.bound_device()
    before = edu.irq_count(dev)
    for i in range(1, args.count + 1):
        if args.factorial is not None:
            edu.factorial(dev, args.factorial, wait=args.timeout)
        else:
            edu.raise_irq(dev, args.value or i, wait=args.timeout)
    fields: dict[str, Any] = {"device": dev.name, "irq_mode": edu.irq_mode(dev)}
    fields["count"] = args.count
    if args.factorial is not None:
        fields["factorial"] = args.factorial
    elif args.value is not None:
        fields["value"] = args.value
    else:
        fields["values"] = "1" if args.count == 1 else f"1..{args.count}"
    fields["irq_count"] = f"{before}->{edu.irq_count(dev)}"
    if args.json:
        out(json.dumps({"type": "triggered", **fields}))
    else:
        out("triggered edu " + " ".join(f"{k}={v}" for k, v in fields.items()))
    return 0


async def _listen_async(
    sub: Subscription,
    show: Callable[[Event], None],
    done: Callable[[], bool],
    timeout: float | None,
) -> None:
    async for ev in sub.aevents(timeout):
        show(ev)
        if done():
            break


# -- Subcommands that live in their own modules ------------------------------
# Their parsers are Parser too, so their usage errors are one line, status 2.
# Each sets func=<callable(args) -> int>; UpcallError and OSError become one
# `upcall: ...` line and exit status 1; UsageError gives exit status 2.
#: Where each of them is added: (module, its function adding its command(s)).
_EXTRA_COMMANDS = {
    "watch": ("upcall.bpf._cli", "add_commands"),
    "doctor": ("upcall.bpf._cli", "add_commands"),
}


def _add_extra_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], command: str | None
) -> None:
    """Add the BPF path's commands (``watch``, ``doctor``).

    Only ``command``'s module is imported when it is one of them (an import
    costs seconds in a guest); every one otherwise (help, a bad command).
    """
    wanted = [_EXTRA_COMMANDS[command]] if command in _EXTRA_COMMANDS else _EXTRA_COMMANDS.values()
    for module, adder in dict.fromkeys(wanted):
        getattr(importlib.import_module(module), adder)(commands)


# ----------------------------------------------------------------------------


def version_text() -> str:
    """``upcall --version``: the library's version and ABI, and the loaded module's.

    The module's version comes from sysfs; its ABI from the device
    (``UPCALL_IOC_VERSION``) when this user may open it.
    """
    text = f"upcall {__version__} (ABI {abi.UPCALL_ABI_VERSION})"
    if not SYSFS_MODULE.is_dir():
        return text
    try:
        text += f", module {(SYSFS_MODULE / 'version').read_text().strip()}"
    except OSError:
        text += ", module loaded (no version)"
    try:
        with Device(os.environ.get(DEVICE_ENV) or DEFAULT_PATH) as dev:
            text += f" (ABI {dev.abi_version})"
    except ModuleVersionError:
        text += " (a different ABI: see `upcall stats`)"
    except (UpcallError, OSError):
        pass  # no device, or not ours to open: the sysfs version is all there is
    return text


class _VersionAction(argparse.Action):
    """--version: read the module's version only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        out(version_text())
        parser.exit()


EPILOG = """\
examples:
  upcall doctor                    can this kernel run the BPF path (no module)?
  upcall watch --tracepoint sched:sched_process_exec --count 3
  upcall listen --count 10                  (needs the module: /dev/upcall)
  upcall emit 42

exit status: 0 success; 1 no device, module not loaded, permission refused,
or fewer events than --count; 2 bad usage or a bad number."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``upcall`` argument parser (``command``: only what that command needs)."""
    parser = Parser(
        prog="upcall", description="Kernel events delivered to user space.", epilog=EPILOG
    )
    parser.add_argument(
        "--version",
        action=_VersionAction,
        help="print the library's version and ABI, and the loaded module's, and exit",
    )
    # The subcommands' parsers are Parser (argparse uses the parent's class);
    # typed as plain ArgumentParser for the add_command(s) hooks below.
    commands = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True, metavar="COMMAND"),
    )

    device = Parser(add_help=False)
    device.add_argument(
        "--device",
        metavar="PATH",
        help=f"the device (default: ${DEVICE_ENV}, else {DEFAULT_PATH})",
    )
    device.add_argument("--json", action="store_true", help="print JSON lines")

    p = commands.add_parser(
        "stats",
        parents=[device],
        help="module information and counters",
        description=cmd_stats.__doc__,
        epilog="example:\n  upcall stats --json",
    )
    p.set_defaults(func=cmd_stats)

    p = commands.add_parser(
        "emit",
        parents=[device],
        help="emit an event",
        description=cmd_emit.__doc__,
        epilog="examples:\n  upcall emit 42 --source 0x200\n  upcall emit --count 10000 -0x10",
    )
    p._negative_number_matcher = NEGATIVE_NUMBER
    p.add_argument(
        "value", type=parse_value, metavar="VALUE", help="decimal, 0x hex, may be negative"
    )
    p.add_argument(
        "--source",
        type=parse_user_source,
        default=abi.UPCALL_SOURCE_USER,
        metavar="N",
        help=f"the event's source id: 0 (the default) or "
        f"{abi.UPCALL_SOURCE_RESERVED_MAX + 1:#x}..{abi.UPCALL_SOURCE_MAX:#x} "
        "(the ids between are upcall's own sources)",
    )
    p.add_argument("--count", type=parse_count, default=1, metavar="N", help="emit N times")
    p.set_defaults(func=cmd_emit)

    p = commands.add_parser(
        "listen",
        parents=[device],
        help="print events as they arrive",
        description=cmd_listen.__doc__,
        epilog="examples:\n  upcall listen --count 10\n"
        "  upcall listen --via signal --signal 40 --count 10\n"
        "  upcall listen --source edu --count 5 --timeout 10 --json",
    )
    p.add_argument(
        "--via",
        choices=TRANSPORTS,
        default="queue",
        help="the transport (default: queue, the library's default: no signal to block, "
        "any thread may read)",
    )
    p.add_argument(
        "--queue-size",
        type=parse_queue_size,
        metavar="N",
        help=f"the subscriber's queue in the module, in events "
        f"({abi.UPCALL_QUEUE_MIN}..{abi.UPCALL_QUEUE_MAX}; default {abi.UPCALL_QUEUE_DEFAULT})",
    )
    p.add_argument(
        "--rcvbuf",
        type=parse_rcvbuf,
        metavar="BYTES",
        help="the netlink socket's receive buffer (default: the system's)",
    )
    p.add_argument(
        "--signal",
        type=parse_signal,
        metavar="N",
        help="the real-time signal of --via signal or fasync (default: a free one)",
    )
    p.add_argument(
        "--thread",
        action="store_true",
        help="direct the signals (--via signal or fasync) at the listening thread",
    )
    p.add_argument("--count", type=parse_count, metavar="N", help="exit after N events")
    p.add_argument(
        "--timeout", type=parse_seconds, metavar="S", help="exit after S seconds without an event"
    )
    p.add_argument(
        "--api",
        choices=("read", "callback", "asyncio"),
        default="read",
        help="receive with blocking reads (default), on_event callbacks or asyncio",
    )
    p.add_argument(
        "--source",
        type=parse_source_filter,
        metavar="SOURCE",
        help="subscribe to the events of SOURCE only (user, timer, edu or a number): "
        "the module neither queues nor counts the other sources' events for it",
    )
    p.set_defaults(func=cmd_listen)

    p = commands.add_parser(
        "trigger",
        help="make a device raise real interrupts (root)",
        description=cmd_trigger.__doc__,
        epilog="examples:\n  upcall trigger edu --count 5\n  upcall trigger edu --factorial 10",
    )
    p.add_argument("what", choices=("edu",), help="the QEMU edu PCI device")
    p.add_argument(
        "--count", type=parse_raise_count, default=1, metavar="N", help="N interrupts (default 1)"
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--value",
        type=parse_raise_value,
        metavar="V",
        help="the status value to raise, 1..0xffffffff (default: 1, 2, ... N)",
    )
    what.add_argument(
        "--factorial",
        type=parse_factorial,
        metavar="N",
        help=f"interrupt when the device has computed N! (0..{edu.FACTORIAL_MAX}), status 0x1",
    )
    p.add_argument(
        "--timeout",
        type=parse_wait,
        default=5.0,
        metavar="S",
        help="fail if an interrupt is not handled within S seconds (default 5)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON line")
    p.set_defaults(func=cmd_trigger)

    # A command defined above needs none of the BPF path's modules, whose
    # import costs seconds in a guest.
    if command not in commands.choices:
        _add_extra_commands(commands, command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``upcall`` command with ``argv`` (None: ``sys.argv[1:]``); return the exit status."""
    return run("upcall", build_parser, argv)
