"""Run the benchmarks in order and collect their rows."""

from __future__ import annotations

import tempfile
from collections.abc import Collection
from pathlib import Path

import anyio

from benchmarks import (
    b1_overhead,
    b2_sqlite,
    b3_latency,
    b4_memory,
    b5_console,
    b6_startup,
    b7_fleet,
    peers,
)
from benchmarks.measure import progress
from benchmarks.report import Row
from benchmarks.sizes import Sizes

NAMES = ("B1", "B2", "B3", "B4", "B5", "B6", "B7")


def run_all(
    sizes: Sizes,
    only: Collection[str] = NAMES,
    workdir: Path | None = None,
    *,
    with_peers: bool = False,
) -> list[Row]:
    """The rows of every benchmark in ``only``, run one after the other in this process
    (B4, B6 and B7 start their own child processes; B7 needs PostgreSQL, else one row says
    why). With ``with_peers``, the peers' rows come last (:mod:`benchmarks.peers`). Databases
    go to a temporary directory."""
    unknown = set(only) - set(NAMES)
    if unknown:
        raise ValueError(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="novaconsole-bench-", dir=workdir) as tmp:
        return anyio.run(_run, sizes, set(only), Path(tmp), with_peers)


async def _run(sizes: Sizes, only: set[str], workdir: Path, with_peers: bool) -> list[Row]:
    rows: list[Row] = []
    s = sizes
    if "B1" in only:
        progress(f"B1: {s.b1_items:,} no-op items, {s.repeat} rounds")
        rows += await b1_overhead.run(s.b1_items, s.repeat, workdir)
    if "B2" in only:
        progress(f"B2: {s.b2_rows:,} rows, {s.repeat} rounds")
        rows += await b2_sqlite.run(s.b2_rows, s.repeat, workdir)
    if "B3" in only:
        rows += await b3_latency.run(s.b3_rate, s.b3_seconds, workdir)
    if "B4" in only:
        rows += await anyio.to_thread.run_sync(b4_memory.run, s.b4_items, workdir)
    if "B5" in only:
        rows += await b5_console.run(s.b5_seconds, s.b5_rate, s.b5_presses, s.repeat, s.b5_warm_up)
    if "B6" in only:
        starts = 5 if s.repeat >= 3 else s.repeat  # issue 7: best of 5 in a full run
        rows += await anyio.to_thread.run_sync(b6_startup.run, starts)
    if "B7" in only:
        why = await b7_fleet.unavailable()
        if why is None:
            progress(f"B7: {s.b7_items:,} items, workers {s.b7_workers}, {s.repeat} rounds")
            rows += await b7_fleet.run(s.b7_items, s.b7_workers, s.repeat, workdir)
        else:
            rows.append(Row("B7", f"skipped: {why}", 0.0, "", text="-"))
    if with_peers:
        progress(f"peers: {s.peers_items:,} items, {s.repeat} rounds")
        rows += await peers.run(s.peers_items, s.repeat, workdir)
    return rows
