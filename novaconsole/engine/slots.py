"""Slots: the tasks that process queued items, one attempt at a time (as many as the
concurrency), and the watchdog that times items out. Not to be confused with the fleet's
workers (processes sharing a database)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from functools import partial
from time import monotonic

import anyio
import anyio.abc
from anyio.lowlevel import checkpoint

from novaconsole.engine import observers as observing
from novaconsole.engine.core import EngineCore, cancelled_by_us, describe, now
from novaconsole.engine.handler import NoDatabaseError, current_item_id
from novaconsole.engine.outcomes import Attempt, ItemOutcome, OutcomeStatus
from novaconsole.engine.scheduling import Job, Slot
from novaconsole.engine.writes import WritesHolder, current_writes

_YIELD_EVERY = 0.001
"""Seconds a slot may run items that never suspend before it lets other tasks run: with
every slot busy the loop stalls at most about concurrency x this (the console's keys)."""


class SlotRunner:
    """As many slots as the concurrency says, and the watchdog."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        core = self.core
        async with anyio.create_task_group() as group:
            core.slot_group = group
            self.spawn()
            task_status.started()
        core.slot_group = None

    def spawn(self) -> None:
        core = self.core
        if core.slot_group is None:
            return
        while core.slot_count < core.concurrency:
            core.slot_count += 1
            core.slot_group.start_soon(self._run_slot)

    async def _run_slot(self) -> None:
        """Take items and process them until stopped, without a checkpoint per item.

        Each slot runs inside a long-lived cancel scope that the watchdog cancels when the
        item in hand overruns its timeout: cheaper than a cancel scope and a timer per item.
        """
        core = self.core
        queue, store = core.queue, core.store
        failures, reporter, crashes = core.failures, core.reporter, core.crashes
        slot = Slot()
        core.slots.add(slot)
        holder = WritesHolder()
        current_writes.set(holder)  # this task's own context: ctx.write() queues here
        yielded = monotonic()
        try:
            while not core.stopping and core.slot_count <= core.concurrency:
                with anyio.CancelScope() as slot.cancel_scope:
                    while not core.stopping:
                        if core.slot_count > core.concurrency:
                            return
                        if not store.accepting:
                            # Checked here, just before taking an item, not only after the
                            # last one: this slot may have yielded since, and others filled
                            # the buffer meanwhile.
                            await store.wait_accepting()
                            yielded = monotonic()
                            continue
                        job = queue.take()
                        if job is None:
                            core.fetcher.slot_idle()
                            if core.work.is_set():
                                core.work = anyio.Event()
                            await core.work.wait()
                            yielded = monotonic()
                            continue
                        if job.lost:
                            core.lifecycle.abandon(job)
                            continue
                        holder.writes = None
                        if crashes.suspects and crashes.is_suspect(job):
                            error = await self._attempt_alone(job, slot)
                        else:
                            error = await self._attempt(job, slot)
                        writes = holder.take()
                        if slot.timed_out is job:
                            # It overran and swallowed (or wrapped) the cancellation: leave the
                            # cancelled scope; the timeout below is its one outcome.
                            break
                        writer = core.writer
                        if writes is not None and writer is None and error is None:
                            error = NoDatabaseError(
                                f"handler {job.scope.runtime.name!r} used ctx.write(), but the "
                                "service was built without a database"
                            )
                        if error is not None:
                            await failures.failed(job, error, timed_out=False)
                        else:
                            # The breaker hears of a success at once, even if the item's
                            # writes wait for the database: while the database is away it
                            # would otherwise hear only of failures.
                            core.breakers.item_succeeded(job)
                            if writes is not None and writer is not None:
                                # The slot moves on; the outcome is written with the writes.
                                outcome = reporter.outcome(job, OutcomeStatus.SUCCEEDED, None)
                                core.committing += 1
                                writer.submit_writes(
                                    writes, outcome, partial(self._committed, job, outcome)
                                )
                            else:
                                reporter.finish(job, OutcomeStatus.SUCCEEDED, None)
                        if monotonic() - yielded > _YIELD_EVERY:
                            await checkpoint()
                            yielded = monotonic()
                timed_out, slot.timed_out = slot.timed_out, None
                if timed_out is not None:
                    timeout = timed_out.scope.runtime.item_timeout.total_seconds()
                    error = TimeoutError(f"timed out after {timeout:g}s")
                    await failures.failed(timed_out, error, timed_out=True)
        finally:
            core.slots.discard(slot)
            core.slot_count -= 1

    async def _attempt_alone(self, job: Job, slot: Slot) -> BaseException | None:
        """A crash suspect's attempt: one at a time, marked as running alone first."""
        guard = self.core.crashes
        lock, crashes = await guard.mark_alone(job)
        try:
            error = await self._attempt(job, slot)
            # It did not crash the worker: say so before another suspect runs alone (its
            # outcome may not be committed yet when that one crashes).
            await guard.not_alone(job, crashes)
        finally:
            lock.release()
        return error

    async def _attempt(self, job: Job, slot: Slot) -> BaseException | None:
        """One try at an item: the error it raised, or None. Timeouts arrive as cancellation."""
        core = self.core
        rt = job.scope.runtime
        rt.in_flight += 1
        core.in_flight += 1
        started = monotonic()
        started_at = now()
        if job.wait < 0:
            job.wait = started - job.enqueued_at
            job.first_started_at = started_at
        slot.job, slot.deadline = job, started + rt.item_timeout.total_seconds()
        token = current_item_id.set(job.item_id)
        observers = core.observers
        if observers:
            hooks = observing.attempt_started(
                observers, rt.name, job.item_id, job.attempts + 1, started - job.enqueued_at
            )
            attempt = job.attempts + 1
        error: BaseException | None = None
        status = OutcomeStatus.SUCCEEDED
        raised: BaseException | None = None
        try:
            await job.scope.process(job.item)
        except Exception as exc:
            error = raised = exc
            status = OutcomeStatus.FAILED
        except anyio.get_cancelled_exc_class() as exc:
            if slot.timed_out is job:
                timeout = rt.item_timeout.total_seconds()
                status = OutcomeStatus.TIMED_OUT
                raised = TimeoutError(f"timed out after {timeout:g}s")
                _record_attempt(job, started, started_at, f"timed out after {timeout:g}s", True)
                raise
            if cancelled_by_us():
                status, raised = OutcomeStatus.CANCELLED, exc
                _record_attempt(job, started, started_at, "cancelled: the service stopped")
                core.reporter.finish(job, OutcomeStatus.CANCELLED, "cancelled: the service stopped")
                raise
            # Raised by the handler (e.g. awaiting a task cancelled elsewhere), not by one of
            # the service's scopes: the item's failure, not a stop.
            error = raised = exc
            status = OutcomeStatus.FAILED
        except BaseException as exc:  # KeyboardInterrupt, SystemExit...: the item's failure
            error = raised = exc
            status = OutcomeStatus.FAILED
        finally:
            slot.job = None
            if observers:
                observing.attempt_finished(
                    observers,
                    hooks,
                    rt.name,
                    job.item_id,
                    attempt,
                    monotonic() - started,
                    status,
                    raised,
                )
            current_item_id.reset(token)
            rt.in_flight -= 1
            core.in_flight -= 1
            if core.stopping and not core.in_flight:
                core.idle.set()
        _record_attempt(job, started, started_at, None if error is None else describe(error))
        return error

    def _committed(self, job: Job, outcome: ItemOutcome, error: BaseException | None) -> None:
        """The writer is done with an item's ``ctx.write()`` statements: committed with its
        outcome (``error`` None), or they failed and only they were rolled back."""
        core = self.core
        if error is None:
            core.reporter.finish(job, OutcomeStatus.SUCCEEDED, None, written=outcome)
            self.commit_settled()
            return
        job.history = (*job.history[:-1], replace(job.history[-1], error=describe(error)))
        if core.task_group is None:  # the service is closing: nothing left to retry on
            core.reporter.finish(job, OutcomeStatus.FAILED, describe(error))
            self.commit_settled()
        else:
            core.task_group.start_soon(self._write_failed, job, error)

    async def _write_failed(self, job: Job, error: BaseException) -> None:
        try:
            await self.core.failures.failed(job, error, timed_out=False)
        finally:
            self.commit_settled()

    def commit_settled(self) -> None:
        """An item's ``ctx.write()`` group is committed or refused: one less to drain."""
        core = self.core
        core.committing -= 1
        if core.stopping:
            core.idle.set()

    async def watchdog(self) -> None:
        """Cancel items that overrun their handler's ``item_timeout``."""
        core = self.core
        shortest = min(
            (rt.item_timeout.total_seconds() for rt in core.runtimes.values()), default=1.0
        )
        interval = min(max(shortest / 10, 0.005), 0.5)
        while True:
            await anyio.sleep(interval)
            at = monotonic()
            for slot in core.slots:
                job = slot.job
                if job is not None and at >= slot.deadline and slot.timed_out is None:
                    slot.timed_out = job
                    slot.cancel_scope.cancel()


def _record_attempt(
    job: Job, started: float, started_at: datetime, error: str | None, timed_out: bool = False
) -> None:
    duration = monotonic() - started
    job.processing += duration
    job.attempts += 1
    job.history = (*job.history, Attempt(job.attempts, started_at, duration, error, timed_out))
