"""`upcall_dev bench`'s targets table: each ratio of a run, met or missed against its threshold."""

from __future__ import annotations

from typing import Any

from upcall_dev import bench


def _lat(transport: str, api: str, p50: int) -> dict[str, Any]:
    return {"transport": transport, "mode": "latency", "api": api, "p50_ns": p50,
            "received": 1, "dropped": 0, "lost": 0}  # fmt: skip


def _tp(transport: str, api: str, received: int, seconds: float) -> dict[str, Any]:
    return {"transport": transport, "mode": "throughput", "api": api, "received": received,
            "seconds": seconds, "dropped": 0, "lost": 0}  # fmt: skip


def _result() -> dict[str, Any]:
    runs = [
        _tp("queue", "c", 1000, 1.0),
        _tp("queue", "read", 500, 1.0),
        _tp("queue", "read_batch", 900, 1.0),
        _lat("queue", "c", 10_000),
        _lat("queue", "callback", 14_000),
        _lat("queue", "bare", 10_000),
        _lat("queue", "read", 12_000),
        _lat("queue", "poll", 13_000),
        _lat("queue", "iter", 11_000),
        _lat("queue", "aread", 30_000),
    ]
    for r in runs:
        r["receiver"] = "c" if r["api"] == "c" else "python"
        r["accounting_ok"] = True
    return {"runs": runs, "kernel": "k", "cpus": 2, "throughput_events": 1,
            "latency_events": 1, "gap_us": 1}  # fmt: skip


def test_every_target_has_its_row_and_verdict() -> None:
    rows = {r["target"]: r for r in bench.summarize(_result())["targets"]}
    read = rows["queue: p50 `read(1)` / bare read"]
    assert read["ratio"] == 1.2 and read["met"] is True  # at the threshold: met
    assert rows["queue: p50 `poll()` / bare read"]["met"] is False
    assert rows["queue: p50 `await aread(1)` / bare read"]["ratio"] == 3.0
    on_event = rows["queue: p50 `on_event` / C receiver"]
    assert on_event["threshold"] == 1.5 and on_event["met"] is True
    batch = rows["queue: events/s `read_batch(4096)` / C receiver"]
    assert batch["op"] == ">=" and batch["ratio"] == 0.9 and batch["met"] is True
    # No --edu: the edu targets are listed, not measured.
    edu = [r for t, r in rows.items() if t.startswith("edu")]
    assert len(edu) == 2 and all(r["ratio"] is None and r["met"] is None for r in edu)


def test_markdown_shows_the_table() -> None:
    result = _result()
    text = bench.markdown(result, bench.summarize(result))
    assert "| queue: p50 `poll()` / bare read | 1.30x | <= 1.2x | **missed** |" in text
    assert "| queue: events/s `read_batch(4096)` / C receiver | 90% | >= 80% | met |" in text
    assert "not measured" in text


def test_asyncio_floor_is_the_reason_shown_for_aread() -> None:
    """The bare asyncio read: asyncio's own cost against the bare read, and aread's against it."""
    result = _result()
    result["runs"].append(_lat("queue", "abare", 25_000) | {"receiver": "python"})
    summary = bench.summarize(result)
    (row,) = summary["ratios"]
    assert row["p50_ratio_bare_abare"] == 2.5 and row["p50_ratio_abare_aread"] == 1.2
    assert row["p50_ratio_c_bare"] == 1.0  # Python's bare read against the C receiver
    text = bench.markdown(result, summary)
    assert "bare read p50 10.0 µs (1.00x the C receiver); against it read 1.20x" in text
    assert "bare asyncio read p50 25.0 µs, 2.50x the bare read; aread 1.20x it" in text
    # Not a target of its own: the aread target still compares with the bare read.
    rows = {r["target"]: r for r in summary["targets"]}
    assert rows["queue: p50 `await aread(1)` / bare read"]["ratio"] == 3.0
