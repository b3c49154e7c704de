"""Loss accounting checks shared by the kernel tests.

Every event the module gives a sequence number is delivered or counted as
dropped, and the receiver sees each drop as a gap in the sequence numbers.
These helpers wait for the module to be done and check exactly that.
"""

from __future__ import annotations

import time

import upcall
from upcall import abi


def settle(sub: upcall.Subscription, timeout: float = 30.0) -> upcall.Stats:
    """Wait until the module has delivered or dropped every event it accepted.

    For a QUEUE subscriber a record counts as delivered once read, so call
    this only after reading the queue empty (see :func:`drain`).
    """
    deadline = time.monotonic() + timeout
    while True:
        st = sub.stats()
        if st.pending == 0:
            return st
        assert time.monotonic() < deadline, f"events still pending after {timeout} s: {st}"
        time.sleep(0.01)


def drain(sub: upcall.Subscription, events: list[upcall.Event], timeout: float = 120.0) -> None:
    """Read into ``events`` until nothing is pending in the module or on the way.

    Once ``stats().pending`` is 0 every delivered event is already in the
    receiver's queue (signalfd, socket, file), so a last non-blocking read
    takes the rest.
    """
    deadline = time.monotonic() + timeout
    while True:
        batch = sub.read(4096, timeout=0.2)
        events += batch
        if batch:
            continue
        if sub.stats().pending == 0:
            tail = sub.read(65536, timeout=0)
            events += tail
            if not tail:
                return
        assert time.monotonic() < deadline, f"still not drained after {timeout} s: {sub.stats()}"


def check_accounting(sub: upcall.Subscription, events: list[upcall.Event]) -> upcall.Stats:
    """Every emitted event was received or counted as dropped, and gaps say which."""
    st = settle(sub)
    gaps = check_seqnos(st, [e.seqno for e in events])
    assert sub.lost == gaps
    return st


def check_seqnos(st: upcall.Stats | abi.UpcallStats, seqnos: list[int]) -> int:
    """The counters ``st`` (taken with nothing pending) against the seqnos received.

    Every emitted event was received or counted as dropped, and the gaps in
    ``seqnos`` (including after the last) are exactly the drops. Returns the
    gaps before the last received event.
    """
    assert st.delivered + st.dropped == st.emitted, st
    assert len(seqnos) == st.delivered, (len(seqnos), st)
    assert seqnos == sorted(set(seqnos)), "seqnos must be strictly increasing"
    gaps = sum(b - a - 1 for a, b in zip([0, *seqnos], seqnos, strict=False))
    trailing = st.seqno - (seqnos[-1] if seqnos else 0)
    assert gaps + trailing == st.dropped, (gaps, trailing, st)
    return gaps
