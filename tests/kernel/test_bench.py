"""The module benchmark's in-guest part (``python -m upcall_dev bench --in-guest``),
CI-sized: it runs, writes well-formed results, loses nothing.

Timing is not checked (the guest is emulated and shares its host): only that
every run of every transport, C and Python, accounts for every event
(received + dropped == emitted, the seqno gaps equal the drops) and that the
JSON and the latency samples are what the host side reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from upcall_dev import bench

LATENCY = 200
THROUGHPUT = 4000
ROUNDS = 2


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    if not bench.BENCH_BIN.is_file():
        pytest.fail(f"{bench.BENCH_BIN} not built: make bench-build (make test-kernel does it)")
    out = tmp_path_factory.mktemp("bench")
    # A process of its own: signal subscriptions want no other threads around.
    proc = subprocess.run(
        [sys.executable, "-m", "upcall_dev", "bench", "--in-guest",
         "--latency-events", str(LATENCY), "--throughput-events", str(THROUGHPUT),
         "--rounds", str(ROUNDS), "--gap-us", "100"],
        env={**os.environ, "UPCALL_VM_OUTDIR": str(out)},
        capture_output=True,
        text=True,
        timeout=1800,  # the debug kernel (KASAN, lockdep) is several times slower
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    guest = out / "bench"
    return json.loads((guest / "results.json").read_text()), guest


def test_every_transport_and_receiver_ran(results: tuple[dict[str, Any], Path]) -> None:
    result, _ = results
    runs = result["runs"]
    got = {(r["transport"], r["mode"], r["api"]) for r in runs}
    want = {(t, "throughput", api) for t in bench.TRANSPORTS for api in ("c", "read", "read_batch")}
    lat_apis = ("c", "callback", "bare", "abare", *bench.READ_APIS)
    want |= {(t, "latency", api) for t in bench.TRANSPORTS for api in lat_apis}
    assert got == want


def test_accounting_is_exact(results: tuple[dict[str, Any], Path]) -> None:
    result, _ = results
    runs = result["runs"]
    for r in runs:
        n = THROUGHPUT if r["mode"] == "throughput" else LATENCY
        assert r["events"] == r["emitted"] == n, r
        assert r["received"] + r["dropped"] == r["emitted"], r
        assert r["lost"] == r["dropped"], r
        assert r["pending"] == 0, r
        assert r["accounting_ok"] is True
        if r["mode"] == "latency":
            # One event in flight: nothing can be dropped.
            assert r["received"] == n and r["dropped"] == 0, r


def test_latency_samples_match(results: tuple[dict[str, Any], Path]) -> None:
    result, guest = results
    runs = result["runs"]
    for r in runs:
        if r["mode"] != "latency":
            continue
        assert r["rounds"] == ROUNDS
        samples = (guest / r["samples"]).read_bytes()
        assert len(samples) == 8 * r["received"], r
        assert 0 < r["p50_ns"] <= r["p90_ns"] <= r["p99_ns"] <= r["max_ns"], r


def test_host_report_renders(results: tuple[dict[str, Any], Path]) -> None:
    result, _ = results
    summary = bench.summarize(result)
    assert summary["accounting_ok"] is True
    assert {row["transport"] for row in summary["ratios"]} == set(bench.TRANSPORTS)
    text = bench.markdown(result, summary)
    assert "| queue | C |" in text and "Python on_event" in text
    # The floors that say why a target misses: asyncio's, and Python's against C.
    for row in summary["ratios"]:
        assert row["p50_ratio_bare_abare"] > 0 and row["p50_ratio_abare_aread"] > 0, row
        assert row["p50_ratio_c_bare"] > 0, row
    assert "Python bare asyncio read" in text and "x the C receiver)" in text
    # Every target the guest part measures has its ratio (edu's need --edu).
    for row in summary["targets"]:
        assert row["ratio"] is not None or row["target"].startswith("edu"), row
    assert "Targets (issue 14)" in text
    json.dumps({**result, "summary": summary})
