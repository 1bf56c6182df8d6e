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
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskGroup

from novaconsole.engine.events import EventHub, EventSubscription, ItemFinished, RetryProgress
from novaconsole.engine.fleet_protocol import WorkerView
from novaconsole.engine.metrics import percentiles
from novaconsole.engine.operator import (
    AuditEntry,
    PauseInfo,
    RetryStatus,
    check_batch_size,
    check_concurrency,
    describe_pause,
    operator_id,
    resume_time,
)
from novaconsole.engine.outcomes import CycleReport, ItemOutcome
from novaconsole.engine.peek import PeekResult, peek
from novaconsole.engine.persistence import Controls
from novaconsole.engine.registry import HandlerRegistration
from novaconsole.engine.snapshot import HandlerView, Latency, Snapshot
from novaconsole.redaction import redact
from novaconsole.store.fleet_view import FleetView, HandlerTotals
from novaconsole.store.operator import OperatorClient
from novaconsole.triage import FailedItem, FailureGroup, group_failures, members_of

log = logging.getLogger("novaconsole.console")

REFRESH = 0.5
"""Seconds between two reads of the fleet."""
BACKFILL = 200
"""Results shown at once when attaching."""
TOTALS_EVERY = 4
"""Fleet-wide totals are counted at every fourth read (every 2 s)."""
COMMAND_WAIT = 5.0
"""Seconds to wait for a worker to take a run-once command before saying none did."""
RETRY_WAIT = 30.0
"""Seconds a retry asked from the console is followed (as ``novaconsole retry`` waits)."""
FOLLOW_EVERY = 0.25
"""Seconds between two looks at a command or retry request being followed."""
CONSOLE = operator_id("console")
"""Who a change is recorded as when the caller does not say (``console@<host>``)."""

Notify = Callable[[str, str], None]
"""``notify(message, severity)``: severity ``information``, ``warning`` or ``error``."""


class AttachedFleet:
    """The fleet sharing the database at ``url``, as a console service.

    ``registrations`` (from the configuration) name the handlers, their purposes and
    configured batch sizes; ``configured_concurrency`` is ``[processing] max_concurrency``;
    ``auto_upgrade`` is ``[database] auto_upgrade`` (an older schema is upgraded or refused);
    ``notify`` is told what came of each change (else it is only logged); ``fetch_timeout``
    bounds a peek's fetch.
    """

    def __init__(
        self,
        url: str,
        registrations: Sequence[HandlerRegistration],
        configured_concurrency: int,
        *,
        auto_upgrade: bool | None = None,
        notify: Notify | None = None,
        fetch_timeout: float = 30.0,
    ) -> None:
        self.url = url
        self.registrations = tuple(registrations)
        self.configured_concurrency = configured_concurrency
        self.view = FleetView(url, auto_upgrade=auto_upgrade)
        self.operator = OperatorClient(url, engine=self.view.engine)
        """Every change goes through it: audited, as the CLI's are."""
        self.database_display = self.view.display_url
        self.notify = notify
        """Told what came of each change (the console sets its ``notify``); else logged."""
        self._breakers: dict[str, str] = {}
        self.fetch_timeout = fetch_timeout
        """Seconds a peek's fetch may take (``[processing] fetch_timeout``)."""
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
        self._written = 0
        """Counts writes finished: a read that began before one ended may not have seen it."""
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
        changes = (self._changes, self._written)
        self._reads += 1
        reading = await self.view.read(
            totals=backfill or self._reads % TOTALS_EVERY == 0,  # a count over every result
            backfill=BACKFILL,
        )
        if changes == (self._changes, self._written) and not self._writing:
            self._controls = reading.controls  # else a key changed them meanwhile: keep that
        self._workers = reading.workers
        self._breakers = dict(reading.breakers)
        if reading.handlers is not None:
            self._totals = dict(reading.handlers)
        for outcome in reading.outcomes:
            self._recent.append(outcome)
            if self._hub.active:
                self._hub.publish(ItemFinished(outcome))
        self._state = "paused" if self._controls.paused else "running"

    def paused_lines(self) -> list[str]:
        """What is paused, one line each, with who, when, why and until when."""
        now = datetime.now(UTC)
        controls = self._controls
        lines = [describe_pause("everything", controls.pause, now)] if controls.paused else []
        for name, paused in sorted(controls.handler_paused.items()):
            if paused:
                lines.append(describe_pause(name, controls.handler_pauses.get(name), now))
        return lines

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
            pause=controls.pause if controls.paused else None,
        )

    def _handler_view(self, registration: HandlerRegistration) -> HandlerView:
        name = registration.name
        totals = self._totals.get(name, HandlerTotals())
        return HandlerView(
            name=name,
            purpose=registration.purpose,
            paused=self._controls.handler_paused.get(name, False),
            pause=self._controls.handler_pauses.get(name),
            tripped=name in self._breakers,
            breaker_reason=self._breakers.get(name),
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
    # Every change goes through the OperatorClient, as the CLI's do: saved with who made it
    # (``by``, ``console@host`` from the console), a pause with its reason and expiry, and an
    # audit entry per control changed. The keys must not wait for the database: the change
    # shows at once, is written in the background, and what came of it is said (``notify``).

    def _names(self) -> set[str]:
        return {r.name for r in self.registrations}

    def _check(self, name: str) -> None:
        if name not in self._names():
            known = ", ".join(sorted(self._names())) or "none"
            raise KeyError(f"no handler named {name!r} (registered: {known})")

    def _say(self, message: str, severity: str = "information") -> None:
        (log.error if severity == "error" else log.info)("%s", message)
        if self.notify is not None:
            self.notify(message, severity)

    def _reach(self) -> str:
        live = sum(1 for worker in self._workers if worker.alive)
        if not live:
            return "no worker is running: saved, applied at the next start"
        if live == 1:
            return "the running worker follows within a second"
        return f"{live} running workers follow within a second"

    def _start(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._group is None:
            raise RuntimeError("the fleet view is not running: use `async with running()`")
        self._group.start_soon(work)

    def _change(
        self, change: Controls, by: str | None, *, pause_for: timedelta | None = None
    ) -> None:
        """Save ``change`` for the whole fleet in the background; say what changed, or why
        it did not (the next read then shows the controls as they really are)."""
        who = by or CONSOLE

        async def write() -> None:
            try:
                entries = await self.operator.change(change, who, pause_for=pause_for)
            except Exception as error:
                log.debug("saving controls failed", exc_info=True)
                self._say(f"not saved: {redact(str(error))}", "error")
                return
            finally:
                self._writing -= 1
                self._written += 1
            if entries:
                said = "; ".join(describe_change(entry) for entry in entries)
                self._say(f"{said} · {self._reach()}")

        self._start(write)  # raises before anything is counted when not running
        self._changes += 1
        self._writing += 1

    def pause(
        self,
        *,
        reason: str | None = None,
        until: datetime | timedelta | None = None,
        by: str | None = None,
    ) -> None:
        """Pause the whole fleet; ``reason`` and ``until`` (a moment, or a duration from now
        on the database clock) are kept with who paused (``by``)."""
        info, pause_for = self._pause_info(reason, until, by)
        self._change(Controls(paused=True, pause=info), by, pause_for=pause_for)
        self._controls.paused, self._controls.pause = True, self._shown(info, pause_for)
        self._state = "paused"

    def resume(self, *, by: str | None = None) -> None:
        self._change(Controls(paused=False), by)
        self._controls.paused, self._controls.pause = False, None
        self._state = "running"

    def pause_handler(
        self,
        name: str,
        *,
        reason: str | None = None,
        until: datetime | timedelta | None = None,
        by: str | None = None,
    ) -> None:
        """Pause one handler on every worker (``reason``/``until``/``by``: as :meth:`pause`)."""
        self._check(name)
        info, pause_for = self._pause_info(reason, until, by)
        change = Controls(handler_paused={name: True}, handler_pauses={name: info})
        self._change(change, by, pause_for=pause_for)
        self._controls.handler_paused[name] = True
        self._controls.handler_pauses[name] = self._shown(info, pause_for)

    def resume_handler(self, name: str, *, by: str | None = None) -> None:
        self._check(name)
        self._change(Controls(handler_paused={name: False}), by)
        self._controls.handler_paused[name] = False
        self._controls.handler_pauses.pop(name, None)

    def set_batch_size(self, name: str, size: int, *, by: str | None = None) -> None:
        self._check(name)
        check_batch_size(size)
        self._change(Controls(batch_sizes={name: size}), by)
        self._controls.batch_sizes[name] = size

    def set_concurrency(self, workers: int, *, by: str | None = None) -> None:
        check_concurrency(workers)
        self._change(Controls(concurrency=workers), by)
        self._controls.concurrency = workers

    @staticmethod
    def _pause_info(
        reason: str | None, until: datetime | timedelta | None, by: str | None
    ) -> tuple[PauseInfo, timedelta | None]:
        reason = " ".join(reason.split()) if reason else None
        if isinstance(until, timedelta):
            resume_time(until, datetime.now(UTC))  # refuses a duration that is not positive
            return PauseInfo(by=by or CONSOLE, reason=reason or None), until
        moment = resume_time(until, datetime.now(UTC))
        return PauseInfo(by=by or CONSOLE, reason=reason or None, resumes_at=moment), None

    @staticmethod
    def _shown(info: PauseInfo, pause_for: timedelta | None) -> PauseInfo:
        """The pause as the console shows it until the next read brings the stored one."""
        now = datetime.now(UTC)
        ends = now + pause_for if pause_for is not None else info.resumes_at
        return PauseInfo(by=info.by, at=now, reason=info.reason, resumes_at=ends)

    async def run_once(self, *, by: str | None = None) -> CycleReport:
        """Ask the fleet for one cycle: one live worker takes it (an audited command). The
        report holds no outcomes (they arrive as results); its ``cycle`` is the command's id.
        Which worker took it, or that none did, is said when known."""
        if not any(worker.alive for worker in self._workers):
            raise RuntimeError("no live worker shares this database: nobody would run the cycle")
        started = datetime.now(UTC)
        command = await self.operator.run_once(None, by or CONSOLE)
        self._start(partial(self._follow_command, command))
        return CycleReport(cycle=command, started_at=started, finished_at=datetime.now(UTC))

    async def _follow_command(self, command: int) -> None:
        taker = None
        with anyio.move_on_after(COMMAND_WAIT):
            while taker is None:
                await anyio.sleep(FOLLOW_EVERY)
                try:
                    taker = await self.operator.command_taker(command)
                except Exception:
                    log.debug("reading command %s failed", command, exc_info=True)
        if taker is not None:
            self._say(f"Run once (command {command}): taken by worker {redact(taker)}")
        else:
            self._say(
                f"Run once (command {command}): no worker took it within {COMMAND_WAIT:g} s; "
                "it stays queued",
                "warning",
            )

    def describe_run_once(self, report: CycleReport) -> str:
        """What the console says after :meth:`run_once`."""
        return f"Run once sent to the fleet (command {report.cycle}): one worker will run it"

    async def request_retry(
        self, handler: str, item_id: Any, *, by: str | None = None
    ) -> RetryStatus | None:
        """Forget the item's attempts and record a retry request that a worker carries out;
        then follow it (``RetryProgress`` events) until it ran again, or its source no longer
        returns it, or :data:`RETRY_WAIT` passes. ``None``: nothing to retry."""
        self._check(handler)
        status = await self.operator.request_retry(handler, str(item_id), by or CONSOLE)
        if status is None:
            return None
        if not any(worker.alive for worker in self._workers):
            return replace(status, detail="no worker is running: it runs at the next start")
        if status.id is not None:
            self._start(partial(self._follow_retry, status))
        return status

    async def _follow_retry(self, status: RetryStatus) -> None:
        assert status.id is not None
        current = status
        with anyio.move_on_after(RETRY_WAIT):
            while not current.final:
                await anyio.sleep(FOLLOW_EVERY)
                try:
                    latest = await self.operator.retry_status(status.id)
                except Exception:
                    log.debug("reading retry %s failed", status.id, exc_info=True)
                    continue
                if latest is not None and latest != current:
                    current = latest
                    self._hub.publish(RetryProgress(current))
        if not current.final:
            self._say(
                f"Retry {status.handler} item {status.item_id}: no outcome after "
                f"{RETRY_WAIT:g} s; it stays requested ({current.message()})",
                "warning",
            )

    async def retry_item(self, handler: str, item_id: Any, *, by: str | None = None) -> bool:
        """Request a retry (as :meth:`request_retry`, audited) without following it: a whole
        failure group is retried this way, and is not polled item by item; False when there
        is nothing to retry."""
        self._check(handler)
        return await self.operator.request_retry(handler, str(item_id), by or CONSOLE) is not None

    def reset_breaker(self, name: str, *, by: str | None = None) -> bool:
        """Ask the workers with ``name``'s breaker open to close it (audited); False if it is
        not tripped on any live worker, as last read."""
        self._check(name)
        if name not in self._breakers:
            return False
        who = by or CONSOLE

        async def reset() -> None:
            try:
                asked = await self.operator.reset_breaker(name, who)
            except Exception as error:
                self._say(f"{name}: breaker reset not saved: {redact(str(error))}", "error")
                return
            if asked:
                plural = "" if asked == 1 else "s"
                self._say(f"{name}: breaker reset requested on {asked} worker{plural}")
            else:
                self._say(f"{name}: its breaker is no longer tripped on any running worker")

        self._start(reset)
        return True

    # ------------------------------------------------------------------ triage and peek

    async def failure_groups(self, handler: str | None = None) -> list[FailureGroup]:
        """The fleet's failed items grouped (key ``e``), from the database."""
        return group_failures(await self.view.failed_rows(handler), handler)

    async def failure_group(self, group: str) -> tuple[FailureGroup | None, list[FailedItem]]:
        """The group with id ``group`` and its items (``None`` and nothing: no such group)."""
        rows = await self.view.failed_rows()
        found = next((g for g in group_failures(rows) if g.id == group), None)
        return found, members_of(rows, group) if found else []

    async def peek(self, handler: str, limit: int | None = None) -> PeekResult:
        """What ``handler``'s ``fetch_next`` returns now (key ``d``), run here with the
        configured handler code in a transaction on the fleet's database that is rolled
        back: nothing claimed or processed. A failing fetch is a ``PeekError``."""
        self._check(handler)
        registration = next(r for r in self.registrations if r.name == handler)
        if limit is None:
            limit = self._controls.batch_sizes.get(handler, registration.max_items_per_cycle)
        return await peek(
            registration,
            limit,
            sessions=self.view.rolled_back_sessions(),
            fetch_timeout=self.fetch_timeout,
        )

    async def audit(self, limit: int = 50) -> list[AuditEntry]:
        """Who changed which control, when, old → new, oldest first (``novaconsole audit``)."""
        return await self.operator.audit(limit)


def describe_change(entry: AuditEntry) -> str:
    """One audit entry as the console says it: "paused everything (db maintenance)",
    "batch size of Ping: 10 → 20"."""
    if entry.what in ("pause", "resume"):
        target = entry.handler or "everything"
        line = f"paused {target}" if entry.what == "pause" else f"resumed {target}"
        return f"{line} ({entry.detail})" if entry.detail else line
    name = entry.what.replace("_", " ")
    of = f" of {entry.handler}" if entry.handler else ""
    return f"{name}{of}: {entry.old or 'as configured'} → {entry.new}"
