"""``FleetView``: the fleet sharing a database, read and steered from outside it.

What ``novaconsole attach`` shows, without running a service: the workers and their
heartbeats, the fleet-wide controls (with who paused, why and until when; a pause past its
expiry shows as resumed), the circuit breakers open on live workers, per-handler totals (with
the last error, items waiting for a retry, dead items and items held right now), and the
results recorded since the last read. It writes nothing: the console's controls go through
:class:`~novaconsole.store.operator.OperatorClient` (on this view's engine), as the CLI's do,
so each change is audited.

Everything is returned as plain dataclasses; text a handler controlled is redacted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from novaconsole.engine.fleet_protocol import WorkerView
from novaconsole.engine.handler import SessionFactory
from novaconsole.engine.outcomes import ItemOutcome, OutcomeStatus
from novaconsole.engine.persistence import Controls
from novaconsole.store.breakers import read_open
from novaconsole.store.clock import sql_now
from novaconsole.store.control_plane import database_now, read_controls
from novaconsole.store.database import (
    OPEN_ERRORS,
    connection_error,
    create_engine,
    mask_url,
    reader,
    uncancelled,
)
from novaconsole.store.fleet import read_workers
from novaconsole.store.models import HELD, claims, item_states, results
from novaconsole.store.peek import rolled_back_sessions
from novaconsole.store.rows import redact_optional, row_outcome
from novaconsole.store.schema import ensure_schema
from novaconsole.store.triage import failed_rows
from novaconsole.triage import FailedRow

T = TypeVar("T")

_FAILED = (OutcomeStatus.FAILED.value, OutcomeStatus.TIMED_OUT.value)
_NEW_RESULTS_PER_READ = 5000


@dataclass(frozen=True, slots=True)
class HandlerTotals:
    """One handler across the fleet, as the database knows it."""

    counts: Mapping[str, int] = field(default_factory=dict)
    """Kept results by status (``succeeded``, ``failed``, ...)."""
    last_error: str | None = None
    """The error of its latest failed (or timed out) result."""
    last_finished_at: datetime | None = None
    failing: bool = False
    """Its latest result failed or timed out."""
    retrying: int = 0
    """Items that failed and wait for another attempt."""
    dead: int = 0
    """Items out of attempts, skipped until retried."""
    in_flight: int = 0
    """Items a worker holds a live claim on (fetched and not finished)."""

    @property
    def succeeded(self) -> int:
        return self.counts.get(OutcomeStatus.SUCCEEDED.value, 0)

    @property
    def failed(self) -> int:
        return sum(self.counts.get(status, 0) for status in _FAILED)

    @property
    def skipped(self) -> int:
        return self.counts.get(OutcomeStatus.SKIPPED.value, 0)


@dataclass(frozen=True, slots=True)
class FleetReading:
    """One read of the fleet."""

    workers: tuple[WorkerView, ...]
    controls: Controls
    outcomes: tuple[ItemOutcome, ...]
    """Results recorded since the previous read (the latest few at the first), oldest first."""
    handlers: Mapping[str, HandlerTotals] | None = None
    """Per handler; ``None`` when not counted at this read."""
    breakers: Mapping[str, str] = field(default_factory=dict)
    """Handlers whose circuit breaker is open on a live worker: the (first worker's) reason."""


class FleetView:
    """The fleet sharing the database at ``url``. Constructing it connects to nothing;
    ``auto_upgrade`` as for a worker (:func:`~novaconsole.store.schema.ensure_schema`)."""

    def __init__(self, url: str, *, auto_upgrade: bool | None = None) -> None:
        self.engine = create_engine(url)
        self.auto_upgrade = auto_upgrade
        self.display_url = mask_url(self.engine.url)
        self._reader = reader(self.engine)
        self._last_result_id: int | None = None

    async def open(self) -> None:
        """Create the schema, or bring it up with ``auto_upgrade``, as a worker would."""
        await ensure_schema(self.engine, auto_upgrade=self.auto_upgrade)

    async def close(self) -> None:
        await self.engine.dispose()

    async def read(self, *, totals: bool = False, backfill: int = 200) -> FleetReading:
        """Workers, controls, open breakers and new results; with ``totals`` the per-handler
        counts too (a count over every kept result: not at every read). The first read
        returns the latest ``backfill`` results."""

        async def read() -> FleetReading:
            async with self._reader.connect() as connection:
                now = await database_now(connection)
                tripped: dict[str, str] = {}
                for row in await read_open(connection):
                    tripped.setdefault(row["handler"], redact_optional(row["reason"]) or "")
                return FleetReading(
                    workers=tuple(await read_workers(connection)),
                    controls=(await read_controls(connection)).effective(now),
                    outcomes=tuple(await self._new_results(connection, backfill)),
                    handlers=await _handler_totals(connection) if totals else None,
                    breakers=tripped,
                )

        return await self._guarded(read)

    async def failed_rows(self, handler: str | None = None) -> list[FailedRow]:
        """Each item whose latest kept outcome is a failure (:mod:`novaconsole.triage`)."""

        async def read() -> list[FailedRow]:
            async with self._reader.connect() as connection:
                return await failed_rows(connection, handler)

        return await self._guarded(read)

    def rolled_back_sessions(self) -> AbstractAsyncContextManager[SessionFactory]:
        """Sessions joined to one transaction rolled back at the end (a peek)."""
        return rolled_back_sessions(self.engine)

    async def _guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await uncancelled(call)
        except OPEN_ERRORS as error:
            raise connection_error(error, self.engine) from None

    async def _new_results(self, connection: AsyncConnection, backfill: int) -> list[ItemOutcome]:
        if self._last_result_id is None:
            newest = await connection.scalar(select(func.max(results.c.id)))
            self._last_result_id = max((newest or 0) - backfill, 0)
        rows = await connection.execute(
            select(results)
            .where(results.c.id > self._last_result_id)
            .order_by(results.c.id)
            .limit(_NEW_RESULTS_PER_READ)
        )
        outcomes = []
        for row in rows.mappings():
            self._last_result_id = row["id"]
            outcomes.append(row_outcome(row))
        return outcomes


async def _handler_totals(connection: AsyncConnection) -> dict[str, HandlerTotals]:
    counts: dict[str, dict[str, int]] = {}
    finished: dict[str, datetime] = {}
    rows = await connection.execute(
        select(
            results.c.handler, results.c.status, func.count(), func.max(results.c.finished_at)
        ).group_by(results.c.handler, results.c.status)
    )
    for handler, status, count, last in rows:
        counts.setdefault(handler, {})[status] = int(count)
        if last is not None and (handler not in finished or last > finished[handler]):
            finished[handler] = last

    latest = select(func.max(results.c.id)).group_by(results.c.handler)
    last_status = {
        handler: status
        for handler, status in await connection.execute(
            select(results.c.handler, results.c.status).where(results.c.id.in_(latest))
        )
    }
    latest_failure = (
        select(func.max(results.c.id))
        .where(results.c.status.in_(_FAILED))
        .group_by(results.c.handler)
    )
    last_error = {
        handler: redact_optional(error)
        for handler, error in await connection.execute(
            select(results.c.handler, results.c.error).where(results.c.id.in_(latest_failure))
        )
    }
    retrying: dict[str, int] = {}
    dead: dict[str, int] = {}
    for handler, is_dead, count in await connection.execute(
        select(item_states.c.handler, item_states.c.dead, func.count()).group_by(
            item_states.c.handler, item_states.c.dead
        )
    ):
        (dead if is_dead else retrying)[handler] = int(count)
    in_flight = {
        handler: int(count)
        for handler, count in await connection.execute(
            select(claims.c.handler, func.count())
            .where(claims.c.state == HELD, claims.c.lease_until >= sql_now(connection))
            .group_by(claims.c.handler)
        )
    }
    names = set(counts) | set(retrying) | set(dead) | set(in_flight)
    return {
        name: HandlerTotals(
            counts=counts.get(name, {}),
            last_error=last_error.get(name),
            last_finished_at=finished.get(name),
            failing=last_status.get(name) in _FAILED,
            retrying=retrying.get(name, 0),
            dead=dead.get(name, 0),
            in_flight=in_flight.get(name, 0),
        )
        for name in sorted(names)
    }
