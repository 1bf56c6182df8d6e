"""The bounded, fair queue between fetching and the slots (the tasks that process items).

Items wait in one queue per handler. A free slot takes from the handler that has the fewest
items in flight (round robin among equals), so one handler with a deep or slow backlog cannot
occupy every slot while another has items waiting; a handler alone may use them all. Taking
an item is a plain method call, not a channel round trip: slots only wait (a checkpoint)
when there is nothing to take.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio

from novaconsole.engine.outcomes import Attempt, CycleReport

if TYPE_CHECKING:
    from novaconsole.engine.handler import Handler, HandlerCall, HandlerContext
    from novaconsole.engine.runtime import HandlerRuntime


@dataclass(eq=False, slots=True)
class Tracker:
    """Follows one cycle to its end; for ``run_once()`` it also collects every outcome."""

    report: CycleReport
    pending: int = 0
    """Items (run once) or scopes (background cycles) not yet final."""
    fetching: int = 0
    items: int = 0
    done: anyio.Event = field(default_factory=anyio.Event)

    def settle(self) -> None:
        if self.pending <= 0 and self.fetching <= 0:
            self.done.set()


@dataclass(eq=False, slots=True)
class HandlerScope:
    """One handler instance and its context: one fetch and the processing of what it returned."""

    runtime: HandlerRuntime
    ctx: HandlerContext
    handler: Handler
    process: HandlerCall
    on_failure: HandlerCall | None = None
    fetch_duration: float = 0.0
    unsettled: int = 0
    """Items not yet final (the scope closes at zero)."""
    first_pass: int = 0
    """Items not yet final nor waiting for a retry (the handler is due again at zero)."""
    refill_at: int = 0
    """The handler is due again once ``first_pass`` is down to this: half of a full batch
    (more is waiting at the source), zero for a short one."""
    refill_early: bool = False
    """A full batch whose handler is due again as soon as a slot finds nothing to take, before
    half of it is through (see :meth:`Fetcher.slot_idle`)."""
    released: bool = False
    """The poll loop has been told this fetch is through (the handler may be fetched again)."""
    closed: bool = False
    cycle: Tracker | None = None
    """The background cycle this fetch belongs to; it ends when the scope closes."""
    background: bool = True
    """True when the poll loop started this fetch (it schedules the handler's next poll)."""


NOT_FAILED = -1
"""``Job.failed_since`` of an item that has not failed in this run."""
FAILED_BEFORE = -2
"""``Job.failed_since`` of an item that had failed before this run (its attempts were read
from the store) and failed again."""


@dataclass(eq=False, slots=True)
class Job:
    """One item on its way through the engine."""

    item: Any
    key: str
    """``str(item_id)``: how the store and the claims know the item."""
    scope: HandlerScope
    item_id: Any
    attempts: int = 0
    enqueued_at: float = 0.0
    first_started_at: datetime | None = None
    wait: float = -1.0
    processing: float = 0.0
    history: tuple[Attempt, ...] = ()
    """The tries this process made, oldest first (a tuple: the outcome takes it as it is)."""
    trackers: list[Tracker] | None = None
    """The ``run_once()`` cycles waiting for this item (see :meth:`track`)."""
    first_pass_done: bool = False
    forced: bool = False
    """Part of a ``run_once()``: handed out even while the service is paused."""
    token: int | None = None
    """Fencing token of this worker's claim, when workers share the database."""
    lost: bool = False
    """The claim's lease went to another worker: not processed (again) here."""
    failed_since: int = NOT_FAILED
    """Its handler's breaker's count of succeeded items when it first failed here, or
    :data:`NOT_FAILED` or :data:`FAILED_BEFORE`."""

    def track(self, tracker: Tracker) -> None:
        """Make ``tracker`` wait for this item's outcome."""
        # No list until one is needed: a job is made for every item, and each container it
        # allocates counts towards the garbage collector's next collection.
        if self.trackers is None:
            self.trackers = [tracker]
        else:
            self.trackers.append(tracker)


@dataclass(eq=False, slots=True)
class Slot:
    """One slot, a task that processes items one at a time: its cancel scope and the item in
    hand with its deadline."""

    cancel_scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    job: Job | None = None
    deadline: float = 0.0
    timed_out: Job | None = None
    """Set by the watchdog just before it cancels ``cancel_scope`` for an overrun item."""


def trial_job(runtime: HandlerRuntime) -> Job | None:
    """The first queued item of ``runtime`` not tried in this run: a circuit breaker's trial
    (an item waiting for its retry fails again if it is bad, whatever the handler's health).
    The items a fetch queued all count as new until they are tried, so a handler not due for
    a fetch before they are always has one."""
    return next((job for job in runtime.queue if not job.first_pass_done), None)


class FairQueue:
    """Per-handler queues with one shared capacity; see the module docstring."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.depth = 0
        self._runtimes: list[HandlerRuntime] = []
        self._next = 0
        self._room = anyio.Event()
        self.paused = False
        """Global pause: only forced (run-once) items are handed out."""

    def add_runtime(self, runtime: HandlerRuntime) -> None:
        self._runtimes.append(runtime)

    def put(self, job: Job, *, forced: bool = False, front: bool = False) -> None:
        runtime = job.scope.runtime
        lane = runtime.forced if forced else runtime.queue
        if front:
            lane.appendleft(job)
        else:
            lane.append(job)
        self.depth += 1

    async def wait_for_room(self) -> None:
        """Backpressure: wait while the queue is at capacity."""
        while self.depth >= self.capacity:
            if self._room.is_set():
                self._room = anyio.Event()
            await self._room.wait()

    def take(self) -> Job | None:
        """The next job for a free slot, or None when nothing may be taken now."""
        runtimes = self._runtimes
        count = len(runtimes)
        best: HandlerRuntime | None = None
        best_index = 0
        for offset in range(count):
            index = (self._next + offset) % count
            runtime = runtimes[index]
            if not runtime.forced and not (
                runtime.queue
                and not self.paused
                and not runtime.paused
                and (not runtime.gate or (runtime.gate == 2 and trial_job(runtime) is not None))
            ):
                continue
            if best is None or runtime.in_flight < best.in_flight:
                best, best_index = runtime, index
                if runtime.in_flight == 0:
                    break
        if best is None:
            return None
        self._next = (best_index + 1) % count
        if best.forced:
            job = best.forced.popleft()
        elif best.gate:  # the circuit breaker's one trial item: the rest wait again
            trial = trial_job(best)
            assert trial is not None  # checked above
            best.queue.remove(trial)
            best.gate, best.trial_job, job = 1, trial, trial
        else:
            job = best.queue.popleft()
        self.depth -= 1
        if self.depth < self.capacity:
            self._room.set()
        return job

    def force(self, job: Job) -> None:
        """Move a job waiting in its handler's normal lane to the forced lane."""
        runtime = job.scope.runtime
        job.forced = True
        try:
            runtime.queue.remove(job)
        except ValueError:
            return  # in flight or waiting for a retry: it is handed out when it comes back
        runtime.forced.append(job)

    def remove_paused(self) -> list[Job]:
        """Take out the jobs of paused handlers (all, under a global pause) that wait in the
        normal lane, not the run-once ones, and return them."""
        jobs: list[Job] = []
        for runtime in self._runtimes:
            if not (self.paused or runtime.paused) or not runtime.queue:
                continue
            kept = [job for job in runtime.queue if job.forced or job.trackers]
            jobs.extend(job for job in runtime.queue if not (job.forced or job.trackers))
            runtime.queue.clear()
            runtime.queue.extend(kept)
        if jobs:
            self.depth -= len(jobs)
            self._room.set()
        return jobs

    def remove_all(self) -> list[Job]:
        """Empty every lane (shutdown) and return what was waiting."""
        jobs: list[Job] = []
        for runtime in self._runtimes:
            jobs.extend(runtime.forced)
            jobs.extend(runtime.queue)
            runtime.forced.clear()
            runtime.queue.clear()
        self.depth = 0
        self._room.set()
        return jobs
