"""100,000 no-op items through the real command: the process's memory stays flat (RSS sampled
while it works), however long the backlog."""

from __future__ import annotations

import signal
import sqlite3

import psutil
import pytest

from tests.faults.process_support import LedgerProject, exited, ledger, running

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

__all__ = ["ledger"]  # the fixture

TOTAL = 100_000
WARM = 20_000
"""Items after which the process is warm (caches, pools, buffers at their working size)."""
GROWTH_MB = 25
"""What RSS may still grow by after ``WARM`` items: far below a leak of bytes per item
(100 bytes x 80,000 items is 8 MB, a retained outcome is about 1 kB)."""

NOOP = f"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    id: int


class Noop:
    issued = 0

    async def fetch_next(self, max_items):
        start = Noop.issued
        count = min(max_items, {TOTAL} - start)
        Noop.issued += count
        return [Item(i) for i in range(start + 1, start + count + 1)]

    async def process(self, item):
        pass
"""


def megabytes(process: psutil.Process) -> float:
    return float(process.memory_info().rss) / 2**20


async def test_100k_no_op_items_in_flat_memory(ledger: LedgerProject) -> None:
    (ledger.root / "handlers").mkdir()
    (ledger.root / "handlers" / "__init__.py").write_text("")
    (ledger.root / "handlers" / "noop.py").write_text(NOOP)
    (ledger.root / "config.toml").write_text(
        '[processing]\npoll_interval = "0.01"\n\n'
        f'[database]\nurl = "sqlite+aiosqlite:///{ledger.db}"\n\n'
        '[[handlers]]\nname = "Noop"\nfactory = "handlers.noop:Noop"\n'
        "max_items_per_cycle = 1000\n"
    )
    run = ledger.start()
    watched = psutil.Process(run.process.pid)
    samples: list[tuple[int, float]] = []

    def sampled(count: int) -> bool:
        """Sample RSS with the results recorded so far; True once ``count`` are."""
        try:
            recorded = ledger.query("SELECT count(*) FROM novaconsole_results")[0][0]
        except sqlite3.OperationalError:  # no such table yet: the store is starting
            recorded = 0
        samples.append((recorded, megabytes(watched)))
        return bool(recorded >= count)

    await running(run, f"{WARM} items recorded", lambda: sampled(WARM))
    warm = samples[-1][1]
    await running(run, f"{TOTAL} items recorded", lambda: sampled(TOTAL))
    peak = max(rss for recorded, rss in samples if recorded >= WARM)
    run.process.send_signal(signal.SIGTERM)
    assert await exited(run) == 0, run.output()
    late = [f"{recorded}: {rss:.0f} MB" for recorded, rss in samples[:: max(1, len(samples) // 20)]]
    assert peak - warm < GROWTH_MB, f"RSS grew from {warm:.0f} to {peak:.0f} MB: {late}"
    print(f"RSS {warm:.1f} MB after {WARM} items, at most {peak:.1f} MB up to {TOTAL}")
