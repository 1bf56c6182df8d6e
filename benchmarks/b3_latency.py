"""B3 latency: at a steady arrival rate, time from an item becoming pending to its outcome.

A producer task makes items pending at ``rate`` per second, stamping each with its creation
time; the engine polls every 10 ms (batches of up to 1,000, 8 workers, SQLite store). Every
outcome's ``finished_at`` (when the engine records it) minus the creation time is the total,
split into: at the source until fetched and queued (total - wait - duration), waiting in the
queue (``ItemOutcome.wait``) and processing (``ItemOutcome.duration``). The engine's own
``snapshot().latency.fetch`` (duration of the ``fetch_next`` calls) is shown beside them.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.measure import percentile, progress
from benchmarks.report import Row, spread
from benchmarks.workloads import Arrivals, no_op_service
from novaconsole.engine.events import ItemFinished

POLL = 0.010
MS = 1000.0


async def run(rate: float, seconds: float, workdir: Path) -> list[Row]:
    source = Arrivals()
    service = no_op_service(
        source.handler(), poll_interval=POLL, database_url=f"sqlite+aiosqlite:///{workdir}/b3.db"
    )
    totals: list[float] = []
    at_source: list[float] = []
    queued: list[float] = []
    processing: list[float] = []
    subscription = service.events(max_buffer=1_000_000)
    async with service.running():
        await source.produce(rate, seconds)
        await source.drained()
        fetch = service.snapshot().latency.fetch
    for event in subscription.drain():
        if isinstance(event, ItemFinished):
            outcome = event.outcome
            total = outcome.finished_at.timestamp() - source.created_at[outcome.item_id]
            totals.append(total)
            queued.append(outcome.wait)
            processing.append(outcome.duration)
            at_source.append(max(0.0, total - outcome.wait - outcome.duration))
    subscription.close()
    progress(f"B3: {len(totals):,} items at {rate:,.0f}/s for {seconds:g}s")
    rows = [
        _row(f"pending → recorded at {rate:,.0f} items/s", totals),
        _row("  at the source until queued (poll 10 ms)", at_source),
        _row("  waiting in the queue", queued),
        _row("  processing", processing),
    ]
    rows.append(
        Row(
            "B3",
            "  fetch_next call (snapshot().latency.fetch)",
            fetch.p99 * MS,
            "ms",
            text=spread(fetch.p50 * MS, fetch.p95 * MS, fetch.p99 * MS, "ms"),
        )
    )
    return rows


def _row(measure: str, samples: list[float]) -> Row:
    """p50 / p95 / p99 of ``samples`` (seconds) in milliseconds; the value kept is p99."""
    p50, p95, p99 = (percentile(samples, f) * MS for f in (0.50, 0.95, 0.99))
    return Row("B3", f"{measure} p50/p95/p99", p99, "ms", text=spread(p50, p95, p99, "ms"))
