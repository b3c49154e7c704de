# SPDX-License-Identifier: LGPL-2.1-or-later
"""Types of the compiled core, src/upcall/_core.c (see there and upcall._accel)."""

from collections.abc import Callable
from typing import Any

RECORD_SIZE: int

class Lock:
    """A recursive lock, threading.RLock's place: a subscription's _lock."""

    def acquire(self) -> bool: ...
    def release(self) -> None: ...
    def __enter__(self) -> bool: ...
    def __exit__(self, *args: object) -> None: ...
    def _is_owned(self) -> bool: ...

class State:
    """A subscription's state in C fields: Subscription's base with the core."""

    _dispatcher: Any
    _last_seqno: int
    _received: int
    _lost: int
    _signalled: int
    _sigio: int
    _foreign: int
    _malformed: int
    _overruns: int
    _busy: int
    _closed: bool
    _drained: bool
    _missed: bool

class Reader:
    """The per-event read path of one subscription (queue-record, signal or netlink)."""

    def __init__(
        self,
        sub: State,
        fd: int,
        wait_fd: int,
        wake_fd: int,
        transport: str,
        event_type: type[Any],
        closed_error: type[BaseException],
        upcall_error: type[BaseException],
        *,
        read_first: bool = False,
        counter_fd: int = -1,
        signal_fd: int = -1,
        signo: int = 0,
        siginfos: bool = False,
        check_thread: Callable[[], object] | None = None,
        tid: int = 0,
        netlink_family: int = 0,
        netlink_id: int = 0,
        decode_datagram: Callable[[bytes], list[Any]] | None = None,
        min_read: int = 0,
        rounds: int = 1,
        block: bool = False,
        batch: int = 64,
    ) -> None: ...
    def read(
        self, max_events: int = 64, timeout: float | None = None, *, block: bool = True
    ) -> list[Any]: ...
    def poll(self, timeout: float | None = 0.0) -> Any: ...
    def get(self, take: int, batch: int, timeout: float | None, /) -> list[Any]: ...
    def fetch(self, take: int, batch: int, timeout: float | None, /) -> list[Any]: ...
    def read_queue(self, max_records: int, /) -> list[Any]: ...
    def nonblocking(self) -> None: ...
