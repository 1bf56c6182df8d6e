"""Helpers for the console tests: real services with scripted handlers, and a fixed-data service.

Pilot tests drive a real ``ProcessingService`` (memory store) whose handlers read a
``Source``. Snapshot tests use ``FixedService``: the console's read API (``snapshot()``,
``events()``) over fixed data, so every picture is the same on every run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from novaconsole import BackgroundProcessing, HandlerPurpose, RetryPolicy
from novaconsole.console import NovaConsole
from novaconsole.console.widgets.log_pane import LogSink
from novaconsole.engine.events import EventHub, EventSubscription, ItemFinished
from novaconsole.engine.operator import PauseInfo
from novaconsole.engine.outcomes import Attempt, CycleReport, ItemOutcome, OutcomeStatus
from novaconsole.engine.service import ProcessingService
from novaconsole.engine.snapshot import HandlerView, Latency, Percentiles, Snapshot
from tests.factories import Item, Source
from tests.factories import outcome as make_outcome

__all__ = ["Item", "Source", "build_service", "fixed_app", "poll_until", "wait_until"]

T0 = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)
"""The fixed "now" of every picture."""


# --------------------------------------------------------------------------- real service


def build_service(
    sources: dict[str, Source], *, purposes: dict[str, HandlerPurpose] | None = None
) -> ProcessingService:
    """A memory-store service running one scripted handler per source; it never polls by
    itself (startup delay of an hour): only ``run_once`` / ``r`` fetches."""
    processing = BackgroundProcessing(
        poll_interval=timedelta(hours=1),
        startup_delay=timedelta(hours=1),
        max_concurrency=4,
        shutdown_grace=timedelta(seconds=10),
        retry=RetryPolicy(max_attempts=2, base_delay=timedelta(0), max_delay=timedelta(0)),
    )
    for name, source in sources.items():
        processing.add_handler(
            source.handler(),
            name=name,
            max_items_per_cycle=10,
            purpose=(purposes or {}).get(name, HandlerPurpose.INTERNAL),
        )
    return processing.build(worker_id="test-worker")


async def wait_until(pilot: Any, condition: Callable[[], bool], *, limit: float = 5.0) -> None:
    """Let the app run until ``condition()`` holds (fails the test after ``limit`` seconds)."""
    with anyio.fail_after(limit):
        while not condition():
            await pilot.pause(0.01)


async def settle(app: NovaConsole) -> None:
    """Wait for the app's workers (run once, retry, …) but not the one hosting the service."""
    workers = [w for w in app.workers if w.group != "service"]
    if workers:  # an empty list would mean every worker, the host included
        await app.workers.wait_for_complete(workers)


async def poll_until(condition: Callable[[], bool], *, limit: float = 5.0) -> None:
    """``wait_until`` without a pilot (before the app runs or after it has exited)."""
    with anyio.fail_after(limit):
        while True:
            if condition():
                return
            await anyio.sleep(0.01)


# --------------------------------------------------------------------------- fixed data


def _outcome(
    handler: str,
    item_id: object,
    status: OutcomeStatus,
    seconds: int,
    *,
    attempts: int = 1,
    duration: float = 0.012,
    error: str | None = None,
    traceback: str | None = None,
) -> ItemOutcome:
    finished = T0 - timedelta(seconds=seconds)
    history = tuple(
        Attempt(
            number=n,
            started_at=finished - timedelta(seconds=2 * (attempts - n) + 1),
            duration=duration / attempts,
            error=error if (n < attempts or status is not OutcomeStatus.SUCCEEDED) else None,
            timed_out=status is OutcomeStatus.TIMED_OUT and n == attempts,
        )
        for n in range(1, attempts + 1)
    )
    return make_outcome(
        item_id,
        handler=handler,
        status=status,
        attempts=attempts,
        duration=duration,
        error=error,
        started_at=finished - timedelta(seconds=attempts * 2),
        finished_at=finished,
        traceback=traceback,
        history=history if status is not OutcomeStatus.SKIPPED else (),
        wait=0.004,
    )


TRACEBACK = """Traceback (most recent call last):
  File "handlers/catalogue_import.py", line 88, in process
    row = await self._parse(item)
  File "handlers/catalogue_import.py", line 121, in _parse
    raise ValueError(f"bad ISRC {raw!r} in batch {item.batch}")
ValueError: bad ISRC 'XX-000' in batch 17"""

FIXED_OUTCOMES: tuple[ItemOutcome, ...] = (
    # oldest first, as events arrive
    _outcome("PhysicalDeletion", 9001, OutcomeStatus.SUCCEEDED, 40, duration=0.031),
    _outcome("PhysicalDeletion", 9002, OutcomeStatus.SUCCEEDED, 39, duration=0.027),
    _outcome(
        "CatalogueImport",
        "batch-17/row-4",
        OutcomeStatus.FAILED,
        30,
        attempts=3,
        duration=0.42,
        error="ValueError: bad ISRC 'XX-000' in batch 17",
        traceback=TRACEBACK,
    ),
    _outcome(
        "NotificationExport",
        "n-552",
        OutcomeStatus.TIMED_OUT,
        25,
        attempts=2,
        duration=60.0,
        error="timed out after 30 s",
    ),
    _outcome(
        "CatalogueImport",
        "batch-16/row-9",
        OutcomeStatus.SKIPPED,
        20,
        attempts=3,
        duration=0.0,
        error="out of attempts (3)",
    ),
    _outcome(
        "NotificationExport",
        "n-553",
        OutcomeStatus.CANCELLED,
        15,
        duration=1.5,
        error="service stopped before the item ran",
    ),
    _outcome("CatalogueImport", "batch-18/row-1", OutcomeStatus.SUCCEEDED, 10, duration=0.0008),
    _outcome(
        "CatalogueImport",
        "batch-18/row-2",
        OutcomeStatus.SUCCEEDED,
        5,
        attempts=2,
        duration=2.4,
        error="ConnectionResetError: peer reset",
    ),
)


def _handler(name: str, purpose: HandlerPurpose, **changes: Any) -> HandlerView:
    base = HandlerView(
        name=name,
        purpose=purpose,
        paused=False,
        enabled=True,
        batch_size=50,
        configured_batch_size=50,
        succeeded=1204,
        failed=3,
        last_error=None,
        last_run=T0 - timedelta(seconds=42),
        next_poll_in=258.0,
    )
    return replace(base, **changes)


def fixed_snapshot() -> Snapshot:
    handlers = (
        _handler("PhysicalDeletion", HandlerPurpose.INTERNAL, in_flight=2, queued=5),
        _handler(
            "CatalogueImport",
            HandlerPurpose.INGESTION,
            batch_size=80,
            failing=True,
            failed=17,
            retrying=1,
            last_error="ValueError: bad ISRC 'XX-000' in batch 17",
            last_run=T0 - timedelta(seconds=30),
        ),
        _handler(
            "NotificationExport",
            HandlerPurpose.EXPORT,
            paused=True,
            succeeded=88,
            failed=1,
            last_error="timed out after 30 s",
            last_run=T0 - timedelta(minutes=12),
        ),
        _handler(
            "LegacySync",
            HandlerPurpose.INTERNAL,
            enabled=False,
            succeeded=0,
            failed=0,
            last_run=None,
            next_poll_in=None,
        ),
    )
    return Snapshot(
        state="running",
        paused=False,
        concurrency=8,
        configured_concurrency=8,
        queue_depth=312,
        queue_capacity=1000,
        in_flight=6,
        cycles=128,
        handlers={h.name: h for h in handlers},
        succeeded=2496,
        failed=21,
        skipped=4,
        rate=148.5,
        throughput=(40, 80, 120, 160, 150, 90, 30, 0, 60, 140, 180, 175, 150, 148, 149, 150),
        next_poll_in=258.0,
        last_cycle_duration=1.84,
        latency=Latency(
            fetch=Percentiles(0.0042, 0.021),
            queue=Percentiles(0.120, 0.480),
            process=Percentiles(0.011, 0.095),
        ),
        database="postgresql+asyncpg://app:***@db.internal/novaconsole",
        worker_id="worker-1",
    )


class FixedService:
    """The console's view of a service, over fixed data; controls change the snapshot."""

    def __init__(
        self,
        snapshot: Snapshot | None = None,
        outcomes: Iterable[ItemOutcome] = FIXED_OUTCOMES,
    ) -> None:
        self._snapshot = snapshot or fixed_snapshot()
        self._outcomes = tuple(outcomes)
        self._hub = EventHub()

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def recent_outcomes(self) -> list[ItemOutcome]:
        return []

    def events(self, max_buffer: int = 10_000) -> EventSubscription:
        subscription = self._hub.subscribe(max_buffer)
        for outcome in self._outcomes:
            self._hub.publish(ItemFinished(outcome))
        return subscription

    def _handler(self, name: str, **changes: Any) -> None:
        handlers = dict(self._snapshot.handlers)
        handlers[name] = replace(handlers[name], **changes)
        self._snapshot = replace(self._snapshot, handlers=handlers)

    def pause(self, *, reason: str | None = None, until: timedelta | None = None) -> None:
        """Paused by a fixed operator 3 minutes before T0 (no hostname in a picture)."""
        info = PauseInfo(
            by="console@ops1",
            at=T0 - timedelta(minutes=3),
            reason=reason,
            resumes_at=None if until is None else T0 - timedelta(minutes=3) + until,
        )
        self._snapshot = replace(self._snapshot, paused=True, state="paused", pause=info)

    def resume(self) -> None:
        self._snapshot = replace(self._snapshot, paused=False, state="running")

    def pause_handler(
        self, name: str, *, reason: str | None = None, until: timedelta | None = None
    ) -> None:
        """Paused by the same fixed operator, 1 minute before T0."""
        at = T0 - timedelta(minutes=1)
        info = PauseInfo(
            by="console@ops1",
            at=at,
            reason=reason,
            resumes_at=None if until is None else at + until,
        )
        self._handler(name, paused=True, pause=info)

    def resume_handler(self, name: str) -> None:
        self._handler(name, paused=False)

    def set_batch_size(self, name: str, size: int) -> None:
        self._handler(name, batch_size=size)

    def set_concurrency(self, workers: int) -> None:
        self._snapshot = replace(self._snapshot, concurrency=workers)

    async def run_once(self) -> CycleReport:
        return CycleReport(cycle=self._snapshot.cycles + 1, started_at=T0, finished_at=T0)

    async def drain(self) -> None:
        self._snapshot = replace(self._snapshot, state="draining")

    async def retry_item(self, handler: str, item_id: Any) -> bool:
        return True


WHYS = {
    "PhysicalDeletion": "db maintenance until the nightly vacuum finishes, ask ops",
    "CatalogueImport": "feed broken\x1b[2J\x1b]0;pwned\x07\nsee OPS-4411 " + "x" * 600,
    "NotificationExport": "smtp relay rate limit",
}
"""Every handler paused with a reason: long, hostile (escapes, a newline, 600 more
characters), short with an expiry."""


def every_handler_paused() -> FixedService:
    service = FixedService()
    for name, reason in WHYS.items():
        until = timedelta(hours=2) if name == "NotificationExport" else None
        service.pause_handler(name, reason=reason, until=until)
    return service


def fixed_log_sink() -> LogSink:
    """A sink holding a few records stamped at fixed times."""
    sink = LogSink()
    records = [
        ("novaconsole.engine", logging.INFO, "cycle 128 started: 3 handlers", {}),
        (
            "novaconsole.handlers.CatalogueImport",
            logging.WARNING,
            "row has no ISRC, using the catalogue number",
            {"handler": "CatalogueImport", "item_id": "batch-18/row-2"},
        ),
        (
            "novaconsole.engine",
            logging.ERROR,
            "CatalogueImport item batch-17/row-4 failed after 3 attempts",
            {"handler": "CatalogueImport", "item_id": "batch-17/row-4"},
        ),
        ("novaconsole.engine", logging.DEBUG, "cycle 128 finished in 1.84 s", {}),
    ]
    for offset, (name, level, message, extra) in enumerate(records):
        record = logging.LogRecord(name, level, __file__, 1, message, None, None)
        record.created = (T0 - timedelta(seconds=30 - offset)).timestamp()
        record.__dict__.update(extra)
        sink.handle(record)
    return sink


def fixed_app(service: FixedService | None = None) -> NovaConsole:
    """A console over fixed data: no refresh timer, a fixed clock, UTC times."""
    return NovaConsole(
        service or FixedService(),
        refresh_interval=None,
        clock=lambda: T0,
        tz=UTC,
        log_sink=fixed_log_sink(),
    )


def fill_stats(app: NovaConsole, minutes: int = 10) -> None:
    """Give ``app`` ten minutes of samples before T0: rates that rise and fall, far apart
    from one handler to the next, latency that jumps once, so every plot has a shape."""
    base = fixed_snapshot()
    steps = minutes * 12
    totals = dict.fromkeys(base.handlers, 0)
    for step in range(steps):
        # items/s far apart, to be read on one scale: CatalogueImport up to 180/s,
        # NotificationExport up to 29/s from half-way, PhysicalDeletion up to 7/s, LegacySync 0
        factors = (1, 25, 4 if step >= steps // 2 else 0, 0)
        for offset, name in enumerate(totals):
            totals[name] += (step * (offset + 1)) % 37 * factors[offset]
        slow = 0.4 if steps // 2 <= step < steps // 2 + 10 else 0.0
        handlers = {
            name: replace(
                view,
                succeeded=totals[name],
                failed=0,
                skipped=0,
                # each its own: PhysicalDeletion steady, CatalogueImport with the slow patch,
                # NotificationExport idle in the first half, LegacySync (disabled) never.
                latency=Percentiles(
                    0.004 * (offset + 1) + (slow / 4 if offset == 1 else 0.0),
                    0.02 * (offset + 1) + (slow if offset == 1 else 0.0) + (step % 4) / 200,
                ),
                latency_samples=0 if offset == 3 or (offset == 2 and step < steps // 2) else 50,
            )
            for offset, (name, view) in enumerate(base.handlers.items())
        }
        latency = Latency(
            fetch=base.latency.fetch,
            queue=base.latency.queue,
            process=Percentiles(0.011 + slow / 4 + (step % 5) / 1000, 0.095 + slow),
        )
        app.stats.offer(
            replace(base, handlers=handlers, latency=latency),
            T0 - timedelta(seconds=5 * (steps - 1 - step)),  # the last at T0: mount adds none
        )
