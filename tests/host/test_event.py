"""The Event type: the decoders' fast constructor builds exactly what the public one does."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from upcall._event import Event, make_event

U64 = (1 << 64) - 1
FIELDS = st.tuples(
    st.integers(0, U64),
    st.integers(0, U64),
    st.integers(0, 0xFFFFFFFF),
    st.sampled_from(["signal", "queue", "fasync", "eventfd", "netlink", "ringbuf", "bpf-signal"]),
    st.none() | st.integers(0, U64),
    st.integers(0, U64),
    st.none() | st.integers(1, 64),
    st.integers(0, 0xFFFFFFFF),
)


@given(FIELDS)
def test_make_event_is_the_public_constructor(fields: tuple[object, ...]) -> None:
    fast, public = make_event(*fields), Event(*fields)  # type: ignore[arg-type]
    assert type(fast) is Event
    assert fast == public and public == fast
    assert hash(fast) == hash(public)
    assert repr(fast) == repr(public)
    assert dataclasses.astuple(fast) == dataclasses.astuple(public) == fields
    assert (fast.signed_value, fast.latency_ns) == (public.signed_value, public.latency_ns)
    assert pickle.loads(pickle.dumps(fast)) == public
    assert copy.copy(fast) == public
    assert dataclasses.replace(fast, seqno=0) == dataclasses.replace(public, seqno=0)


@pytest.mark.parametrize("name", ["seqno", "flags", "extra"])
def test_make_event_result_is_as_frozen(name: str) -> None:
    fast = make_event(1, 2, 3, "queue", 4, 5, None, 0)
    public = Event(1, 2, 3, "queue", 4, 5, None, 0)
    raised = []
    for ev in (fast, public):
        with pytest.raises((AttributeError, TypeError)) as info:
            setattr(ev, name, 9)
        raised.append(type(info.value))
    # Python 3.11's slots dataclass raises TypeError for an unknown name.
    assert raised[0] is raised[1]
    if name != "extra":
        assert raised[0] is dataclasses.FrozenInstanceError
    assert fast == public
