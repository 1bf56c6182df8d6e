"""``AttachedFleet``: what the console steers when it hosts no service (``novaconsole attach``).

It reads the fleet from the database a few times a second (workers, controls, result totals,
new results) and turns the console's keys into fleet-wide writes: pause, resume, batch sizes
and concurrency go to the controls table (every worker follows within a second), run once is
a command that exactly one worker takes. No Textual here.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio.abc import TaskGroup
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from novaconsole.engine.events import EventHub, EventSubscription, ItemFinished
from novaconsole.engine.fleet_protocol import WorkerView
from novaconsole.engine.outcomes import CycleReport, ItemOutcome, OutcomeStatus
from novaconsole.engine.persistence import Controls
from novaconsole.engine.registry import HandlerRegistration
from novaconsole.engine.snapshot import HandlerView, Snapshot
from novaconsole.store import SqlStore
from novaconsole.store.fleet import insert_command, read_workers, write_controls
from novaconsole.store.models import results
from novaconsole.store.queries import forget_item
from novaconsole.store.recorder import row_outcome

log = logging.getLogger("novaconsole.console")

REFRESH = 0.5
"""Seconds between two reads of the fleet."""
BACKFILL = 200
"""Results shown at once when attaching."""
TOTALS_EVERY = 4
"""Fleet-wide totals are counted at every fourth read (every 2 s)."""


class AttachedFleet:
    """The fleet sharing the database at ``url``, as a console service.

    ``registrations`` (from the configuration) name the handlers, their purposes and
    configured batch sizes; ``configured_concurrency`` is ``[processing] max_concurrency``.
    """

    def __init__(
        self,
        url: str,
        registrations: Sequence[HandlerRegistration],
        configured_concurrency: int,
    ) -> None:
        self.url = url
        self.registrations = tuple(registrations)
        self.configured_concurrency = configured_concurrency
        self.store = SqlStore(url, shared=False, connect_timeout=0)  # a reader: no retries
        self.database_display = self.store.display_url
        self._hub = EventHub()
        self._group: TaskGroup | None = None
        self._controls = Controls()
        self._workers: tuple[WorkerView, ...] = ()
        self._totals: dict[str, dict[str, int]] = {}
        self._last_result_id = 0
        self._recent: deque[ItemOutcome] = deque(maxlen=BACKFILL)
        self._state = "starting"
        self._changes = 0
        """Counts local control changes: a read that overlapped one is not applied."""
        self._writing = 0
        self._reads = 0

    # ------------------------------------------------------------------ lifecycle

    @asynccontextmanager
    async def running(self) -> AsyncIterator[AttachedFleet]:
        """Read the fleet until the block ends."""
        await self.store.open()
        try:
            await self.refresh(backfill=True)
            async with anyio.create_task_group() as group:
                self._group = group
                group.start_soon(self._refresh_loop)
                try:
                    yield self
                finally:
                    group.cancel_scope.cancel()
        finally:
            self._group = None
            self._state = "stopped"
            with anyio.CancelScope(shield=True):
                await self.store.engine.dispose()
            self._hub.close()

    async def drain(self) -> None:
        """Nothing to drain: the workers keep running."""
        return None

    async def _refresh_loop(self) -> None:
        while True:
            await anyio.sleep(REFRESH)
            try:
                await self.refresh()
            except Exception:
                log.exception("reading the fleet from the database failed; trying again")

    async def refresh(self, *, backfill: bool = False) -> None:
        """Read workers, controls, totals and the results recorded since the last call."""
        changes = self._changes
        controls = await self.store.load_controls()
        if changes == self._changes and not self._writing:
            self._controls = controls  # else a key changed them meanwhile: keep that
        async with self.store.engine.connect() as connection:
            self._workers = tuple(await read_workers(connection))
            self._reads += 1
            if backfill or self._reads % TOTALS_EVERY == 0:  # a count over every result
                self._totals = await _totals(connection)
            await self._new_results(connection, backfill)
        self._state = "paused" if self._controls.paused else "running"

    async def _new_results(self, connection: AsyncConnection, backfill: bool) -> None:
        if backfill:
            newest = await connection.scalar(select(func.max(results.c.id)))
            self._last_result_id = max((newest or 0) - BACKFILL, 0)
        rows = await connection.execute(
            select(results)
            .where(results.c.id > self._last_result_id)
            .order_by(results.c.id)
            .limit(5000)
        )
        for row in rows.mappings():
            self._last_result_id = row["id"]
            outcome = row_outcome(row)
            self._recent.append(outcome)
            if self._hub.active:
                self._hub.publish(ItemFinished(outcome))

    # ------------------------------------------------------------------ observing

    def recent_outcomes(self) -> list[ItemOutcome]:
        """The latest results of the whole fleet, oldest first (read when attaching)."""
        return list(self._recent)

    def events(self, max_buffer: int = 10_000) -> EventSubscription:
        """Each result any worker records, as an ``ItemFinished``."""
        return self._hub.subscribe(max_buffer)

    def snapshot(self) -> Snapshot:
        """The fleet as last read: controls, handlers fleet-wide, every worker."""
        controls = self._controls
        alive = [worker for worker in self._workers if worker.alive]
        handlers = {r.name: self._handler_view(r) for r in self.registrations}
        return Snapshot(
            state=self._state,
            paused=bool(controls.paused),
            concurrency=controls.concurrency or self.configured_concurrency,
            configured_concurrency=self.configured_concurrency,
            queue_depth=0,
            queue_capacity=0,
            in_flight=sum(worker.in_flight for worker in alive),
            cycles=0,
            handlers=handlers,
            succeeded=sum(t.get("succeeded", 0) for t in self._totals.values()),
            failed=sum(_failed(t) for t in self._totals.values()),
            skipped=sum(t.get("skipped", 0) for t in self._totals.values()),
            database=self.database_display,
            worker_id="attached",
            workers=self._workers,
        )

    def _handler_view(self, registration: HandlerRegistration) -> HandlerView:
        name = registration.name
        totals = self._totals.get(name, {})
        return HandlerView(
            name=name,
            purpose=registration.purpose,
            paused=self._controls.handler_paused.get(name, False),
            enabled=registration.enabled,
            batch_size=self._controls.batch_sizes.get(name, registration.max_items_per_cycle),
            configured_batch_size=registration.max_items_per_cycle,
            succeeded=totals.get("succeeded", 0),
            failed=_failed(totals),
            last_error=None,
            skipped=totals.get("skipped", 0),
        )

    # ------------------------------------------------------------------ steering the fleet

    def _names(self) -> set[str]:
        return {r.name for r in self.registrations}

    def _check(self, name: str) -> None:
        if name not in self._names():
            known = ", ".join(sorted(self._names())) or "none"
            raise KeyError(f"no handler named {name!r} (registered: {known})")

    def _write(self, **changes: Any) -> None:
        """Write controls for the whole fleet, in the background."""

        async def write() -> None:
            try:
                async with self.store.engine.begin() as connection:
                    await write_controls(connection, **changes)
            except Exception:
                log.exception("sending controls to the fleet failed")
            finally:
                self._writing -= 1

        if self._group is None:
            raise RuntimeError("the fleet view is not running: use `async with running()`")
        self._changes += 1
        self._writing += 1
        self._group.start_soon(write)

    def pause(self) -> None:
        self._controls.paused = True
        self._state = "paused"
        self._write(paused=True)

    def resume(self) -> None:
        self._controls.paused = False
        self._state = "running"
        self._write(paused=False)

    def pause_handler(self, name: str) -> None:
        self._check(name)
        self._controls.handler_paused[name] = True
        self._write(handler_paused={name: True})

    def resume_handler(self, name: str) -> None:
        self._check(name)
        self._controls.handler_paused[name] = False
        self._write(handler_paused={name: False})

    def set_batch_size(self, name: str, size: int) -> None:
        self._check(name)
        if size < 1:
            raise ValueError(f"batch size must be at least 1, got {size}")
        self._controls.batch_sizes[name] = size
        self._write(batch_sizes={name: size})

    def set_concurrency(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"concurrency must be at least 1, got {workers}")
        self._controls.concurrency = workers
        self._write(concurrency=workers)

    async def run_once(self) -> CycleReport:
        """Ask the fleet for one cycle: one live worker takes it. The report holds no outcomes
        (they arrive as results); its ``cycle`` is the command's id."""
        if not any(worker.alive for worker in self._workers):
            raise RuntimeError("no live worker shares this database: nobody would run the cycle")
        started = datetime.now(UTC)
        async with self.store.engine.begin() as connection:
            command = await insert_command(connection, "run_once")
        return CycleReport(cycle=command, started_at=started, finished_at=datetime.now(UTC))

    def describe_run_once(self, report: CycleReport) -> str:
        """What the console says after :meth:`run_once`."""
        return f"Run once sent to the fleet (command {report.cycle}): one worker will run it"

    async def retry_item(self, handler: str, item_id: Any) -> bool:
        """Forget an item's attempts: the next worker to fetch it processes it again."""
        self._check(handler)
        return await forget_item(self.url, handler, str(item_id))


def _failed(totals: dict[str, int]) -> int:
    return totals.get(OutcomeStatus.FAILED.value, 0) + totals.get(OutcomeStatus.TIMED_OUT.value, 0)


async def _totals(connection: AsyncConnection) -> dict[str, dict[str, int]]:
    rows = await connection.execute(
        select(results.c.handler, results.c.status, func.count()).group_by(
            results.c.handler, results.c.status
        )
    )
    totals: dict[str, dict[str, int]] = {}
    for handler, status, count in rows:
        totals.setdefault(handler, {})[status] = int(count)
    return totals
