"""Items that crash the worker process (``os._exit``, a segfault, the OOM killer).

No exception reaches the engine when the process dies, so an item's start is recorded before
it runs: one durable write per admitted batch ("these items started"). After a restart, an
item still marked from an earlier run is a *crash suspect*: the process died while it was
admitted, not necessarily because of it. Suspects run one at a time, each first marked
durably as running *alone* (a write per suspect: rare). An item found marked alone after a
restart crashed the worker: the crash counts as an attempt, and after ``max_attempts`` such
crashes the item is parked as failed ("crashed the worker N times", dead, no ``on_failure``:
the process that would run it died), while the rest of its batch goes on. A mark is removed in
the transaction that records the item's outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import anyio

from novaconsole.engine.core import describe, log_extra
from novaconsole.engine.outcomes import OutcomeStatus, shown_id
from novaconsole.engine.persistence import ItemState
from novaconsole.engine.repeated import RepeatedFailure

if TYPE_CHECKING:
    from novaconsole.engine.core import EngineCore
    from novaconsole.engine.runtime import HandlerRuntime
    from novaconsole.engine.scheduling import Job

log = logging.getLogger("novaconsole.engine")


@dataclass(frozen=True, slots=True)
class StartMark:
    """An item marked started by an earlier run and never finished."""

    alone: bool
    """It was running alone (a suspect's retry) when that run died: it crashed the worker."""
    crashes: int
    """Crashes counted before that run."""


class StartLedger(Protocol):
    """Where starts are marked: the store, when it persists anything."""

    async def start_items(self, handler: str, keys: Sequence[str]) -> Mapping[str, StartMark]:
        """Mark ``keys`` started by this run, durably, before they run; returns the marks
        earlier runs left on them, whose crashes (one more if left running alone) the new
        marks carry on."""

    async def mark_alone(self, handler: str, key: str, crashes: int, alone: bool) -> None:
        """Mark one item (not) running alone with ``crashes`` counted, durably."""

    def forget_started(self, handler: str, keys: Sequence[str]) -> None:
        """Drop this run's marks on items it gives back unfinished (a drain), buffered."""


class CrashGuard:
    """Marks starts, finds suspects at admission and runs them one at a time."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core
        store = core.store
        self.ledger: StartLedger | None = (
            store if hasattr(store, "start_items") else None  # type: ignore[assignment]
        )
        self.suspects: dict[tuple[str, str], int] = {}
        """(handler, key) of admitted suspects: the crashes counted so far."""
        self._alone = anyio.Lock()
        self._failures = RepeatedFailure(log, "marking a crash suspect as running alone failed")
        self._mark_failures = RepeatedFailure(log, "recording that items started failed")

    async def admit(
        self, rt: HandlerRuntime, jobs: list[Job]
    ) -> tuple[list[Job], list[tuple[Job, int]]]:
        """Mark ``jobs`` started; (the jobs to run, those to :meth:`park` with their crashes)."""
        ledger = self.ledger
        if ledger is None or not jobs:
            return jobs, []
        try:
            marks = await ledger.start_items(rt.name, [job.key for job in jobs])
        except Exception as error:  # the database is busy or down: run them unmarked
            self._mark_failures.failed(
                f"{describe(error)}; {len(jobs)} items of {rt.name} run without it", error
            )
            return jobs, []
        self._mark_failures.succeeded()
        run: list[Job] = []
        parked: list[tuple[Job, int]] = []
        for job in jobs:
            mark = marks.get(job.key)
            if mark is None:
                run.append(job)
                continue
            crashes = mark.crashes + mark.alone
            if crashes >= rt.max_attempts:
                job.attempts += crashes
                parked.append((job, crashes))
                continue
            self.suspects[(rt.name, job.key)] = crashes
            run.append(job)
        return run, parked

    def park(self, job: Job, crashes: int) -> None:
        """An item that crashed the worker too often: failed and dead, no ``on_failure``."""
        core = self.core
        rt = job.scope.runtime
        error = f"crashed the worker {crashes} times"
        core.store.set_item_state(rt.name, job.key, ItemState(job.attempts, dead=True))
        log.error(
            "%s item %s %s: parked as failed",
            rt.name,
            shown_id(job.item_id),
            error,
            extra=log_extra(rt.name, job.item_id),
        )
        core.reporter.finish(job, OutcomeStatus.FAILED, error)

    def is_suspect(self, job: Job) -> bool:
        return bool(self.suspects) and (job.scope.runtime.name, job.key) in self.suspects

    async def mark_alone(self, job: Job) -> tuple[anyio.Lock, int]:
        """Before a suspect's attempt: take the one-at-a-time lock and mark it running alone.
        Returns the lock (release it after the attempt) and its crashes so far."""
        rt = job.scope.runtime
        crashes = self.suspects.pop((rt.name, job.key))
        await self._alone.acquire()
        assert self.ledger is not None
        try:
            await self.ledger.mark_alone(rt.name, job.key, crashes, True)
        except Exception as error:  # unmarked, a crash is not counted: it still runs
            self._failures.failed(describe(error), error)
        else:
            self._failures.succeeded()
        return self._alone, crashes

    async def not_alone(self, job: Job, crashes: int) -> None:
        """A suspect's attempt ended without a crash and the item goes on (a retry)."""
        assert self.ledger is not None
        try:
            await self.ledger.mark_alone(job.scope.runtime.name, job.key, crashes, False)
        except Exception as error:
            self._failures.failed(describe(error), error)
