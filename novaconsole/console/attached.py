"""``AttachedFleet``: what the console steers when it hosts no service (``novaconsole attach``).

It reads the fleet a few times a second through the store's
:class:`~novaconsole.store.fleet_view.FleetView` (workers, controls, per-handler totals, new
results) and turns the console's keys into fleet-wide changes: pause, resume, batch sizes and
concurrency (every worker follows within a second), run once (exactly one worker takes it).
No Textual and no SQL here.
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

from novaconsole.engine.events import EventHub, EventSubscription, ItemFinished
from novaconsole.engine.fleet_protocol import WorkerView
from novaconsole.engine.metrics import percentiles
from novaconsole.engine.outcomes import CycleReport, ItemOutcome
from novaconsole.engine.persistence import Controls
from novaconsole.engine.registry import HandlerRegistration
from novaconsole.engine.snapshot import HandlerView, Latency, Snapshot
from novaconsole.store.fleet_view import FleetView, HandlerTotals

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
    configured batch sizes; ``configured_concurrency`` is ``[processing] max_concurrency``;
    ``auto_upgrade`` is ``[database] auto_upgrade`` (an older schema is upgraded or refused).
    """

    def __init__(
        self,
        url: str,
        registrations: Sequence[HandlerRegistration],
        configured_concurrency: int,
        *,
        auto_upgrade: bool | None = None,
    ) -> None:
        self.url = url
        self.registrations = tuple(registrations)
        self.configured_concurrency = configured_concurrency
        self.view = FleetView(url, auto_upgrade=auto_upgrade)
        self.database_display = self.view.display_url
        self._hub = EventHub()
        self._group: TaskGroup | None = None
        self._controls = Controls()
        self._workers: tuple[WorkerView, ...] = ()
        self._totals: dict[str, HandlerTotals] = {}
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
        await self.view.open()
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
                await self.view.close()
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
        self._reads += 1
        reading = await self.view.read(
            totals=backfill or self._reads % TOTALS_EVERY == 0,  # a count over every result
            backfill=BACKFILL,
        )
        if changes == self._changes and not self._writing:
            self._controls = reading.controls  # else a key changed them meanwhile: keep that
        self._workers = reading.workers
        if reading.handlers is not None:
            self._totals = dict(reading.handlers)
        for outcome in reading.outcomes:
            self._recent.append(outcome)
            if self._hub.active:
                self._hub.publish(ItemFinished(outcome))
        self._state = "paused" if self._controls.paused else "running"

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
        totals = self._totals.values()
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
            succeeded=sum(t.succeeded for t in totals),
            failed=sum(t.failed for t in totals),
            skipped=sum(t.skipped for t in totals),
            retrying=sum(t.retrying for t in totals),
            latency=Latency(process=percentiles([o.duration for o in self._recent])),
            database=self.database_display,
            worker_id="attached",
            workers=self._workers,
        )

    def _handler_view(self, registration: HandlerRegistration) -> HandlerView:
        name = registration.name
        totals = self._totals.get(name, HandlerTotals())
        return HandlerView(
            name=name,
            purpose=registration.purpose,
            paused=self._controls.handler_paused.get(name, False),
            enabled=registration.enabled,
            batch_size=self._controls.batch_sizes.get(name, registration.max_items_per_cycle),
            configured_batch_size=registration.max_items_per_cycle,
            succeeded=totals.succeeded,
            failed=totals.failed,
            last_error=totals.last_error,
            skipped=totals.skipped,
            in_flight=totals.in_flight,
            retrying=totals.retrying,
            last_run=totals.last_finished_at,
            failing=totals.failing,
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
                await self.view.save_controls(**changes)
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
        command = await self.view.send_command("run_once")
        return CycleReport(cycle=command, started_at=started, finished_at=datetime.now(UTC))

    def describe_run_once(self, report: CycleReport) -> str:
        """What the console says after :meth:`run_once`."""
        return f"Run once sent to the fleet (command {report.cycle}): one worker will run it"

    async def retry_item(self, handler: str, item_id: Any) -> bool:
        """Forget an item's attempts: the next worker to fetch it processes it again."""
        self._check(handler)
        return await self.view.forget_item(handler, str(item_id))
