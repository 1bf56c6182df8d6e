"""What happens after a failed attempt: a retry after the policy's delay (or a
``RetryAfter``'s), or the final failure (out of attempts, or ``GiveUp``) with ``on_failure``;
and the heap of items waiting for their retry."""

from __future__ import annotations

import heapq
import logging
import traceback
from functools import partial
from time import monotonic

import anyio

from novaconsole.engine.core import EngineCore, cancelled_by_us, describe, log_extra
from novaconsole.engine.events import ItemRetrying
from novaconsole.engine.handler import current_item_id
from novaconsole.engine.outcomes import ItemOutcome, OutcomeStatus, shown_id
from novaconsole.engine.persistence import ItemState
from novaconsole.engine.scheduling import Job
from novaconsole.engine.steering import GiveUp, RetryAfter
from novaconsole.engine.writes import ItemWrites, WritesHolder, current_writes
from novaconsole.redaction import redact

log = logging.getLogger("novaconsole.engine")


class Failures:
    """The failure policy and the retry heap."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core

    async def failed(self, job: Job, error: BaseException, timed_out: bool) -> None:
        core = self.core
        rt = job.scope.runtime
        text = describe(error)
        tb = None if timed_out else redact("".join(traceback.format_exception(error)))
        give_up = isinstance(error, GiveUp)
        core.breakers.item_failed(job, text, final=give_up or job.attempts >= rt.max_attempts)
        if job.attempts < rt.max_attempts and not core.stopping and not give_up:
            if isinstance(error, RetryAfter):
                delay = error.delay.total_seconds()
            else:
                delay = core.retry.delay(job.attempts)
            core.store.set_item_state(rt.name, job.key, ItemState(job.attempts))
            log.warning(
                "%s item %s failed (attempt %d of %d), retrying in %.1fs: %s",
                rt.name,
                shown_id(job.item_id),
                job.attempts,
                rt.max_attempts,
                delay,
                text,
                extra=log_extra(rt.name, job.item_id),
            )
            core.hub.publish(ItemRetrying(rt.name, job.item_id, job.attempts, delay, text))
            core.fetcher.mark_first_pass(job)
            rt.retrying += 1
            heapq.heappush(core.retry_heap, (monotonic() + delay, next(core.sequence), job))
            core.retry_wake.set()
            return
        status = OutcomeStatus.TIMED_OUT if timed_out else OutcomeStatus.FAILED
        if job.attempts < rt.max_attempts and not give_up:
            # Stopping: the attempt counts, the item stays pending for the next run.
            core.store.set_item_state(rt.name, job.key, ItemState(job.attempts))
            log.warning(
                "%s item %s failed (attempt %d of %d), not retried now: the service is stopping",
                rt.name,
                shown_id(job.item_id),
                job.attempts,
                rt.max_attempts,
                extra=log_extra(rt.name, job.item_id),
            )
            core.reporter.finish(job, status, text, tb)
            return
        core.store.set_item_state(rt.name, job.key, ItemState(job.attempts, dead=True))
        rt.dead_recorded_now(job.key)  # its failure is the record: no "skipped" row follows
        log.error(
            "%s item %s %s after %d attempts: %s",
            rt.name,
            shown_id(job.item_id),
            "gave up" if give_up else "failed",
            job.attempts,
            text,
            extra=log_extra(rt.name, job.item_id),
        )
        writes = await self._call_on_failure(job, error)
        writer = core.writer
        if writes is None or writer is None:
            if writes is not None:
                log.error(
                    "%s on_failure for item %s used ctx.write(), but the service was built "
                    "without a database: its writes are dropped",
                    rt.name,
                    shown_id(job.item_id),
                    extra=log_extra(rt.name, job.item_id),
                )
            core.reporter.finish(job, status, text, tb)
            return
        # As for process(): the failure is recorded in the transaction of on_failure's writes.
        outcome = core.reporter.outcome(job, status, text, tb)
        core.committing += 1
        writer.submit_writes(writes, outcome, partial(self._written, job, outcome))

    def _written(self, job: Job, outcome: ItemOutcome, error: BaseException | None) -> None:
        """The writer is done with on_failure's ``ctx.write()`` statements and the failure."""
        core = self.core
        try:
            if error is None:
                core.reporter.finish(job, outcome.status, outcome.error, written=outcome)
                return
            rt = job.scope.runtime
            log.error(
                "%s on_failure's writes for item %s failed, the failure is recorded without "
                "them: %s",
                rt.name,
                shown_id(job.item_id),
                describe(error),
                extra=log_extra(rt.name, job.item_id),
            )
            core.reporter.finish(job, outcome.status, outcome.error, outcome.traceback)
        finally:
            core.slot_runner.commit_settled()

    async def _call_on_failure(self, job: Job, error: BaseException) -> ItemWrites | None:
        """Run the handler's ``on_failure``; the ``ctx.write()`` statements it queued (none if
        it raised)."""
        on_failure = job.scope.on_failure
        if on_failure is None:
            return None
        rt = job.scope.runtime
        token = current_item_id.set(job.item_id)
        holder = WritesHolder()
        writes_token = current_writes.set(holder)
        try:
            with anyio.fail_after(rt.item_timeout.total_seconds()):
                await on_failure(job.item, error)
        except BaseException as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class()) and cancelled_by_us():
                raise
            log.exception(
                "%s on_failure for item %s raised",
                rt.name,
                shown_id(job.item_id),
                extra=log_extra(rt.name, job.item_id),
            )
            return None
        finally:
            current_writes.reset(writes_token)
            current_item_id.reset(token)
        return holder.take()

    async def retry_loop(self) -> None:
        core = self.core
        heap = core.retry_heap
        while True:
            core.retry_wake = anyio.Event()
            if not heap:
                await core.retry_wake.wait()
                continue
            delay = heap[0][0] - monotonic()
            if delay > 0:
                with anyio.move_on_after(delay):
                    await core.retry_wake.wait()
                continue
            _, _, job = heapq.heappop(heap)
            job.scope.runtime.retrying -= 1
            if job.lost:
                core.lifecycle.abandon(job)
                continue
            if job.scope.runtime.gate and not job.forced:
                job.scope.runtime.retrying += 1
                core.breakers.hold(job)  # tripped: waits for the breaker
                continue
            job.enqueued_at = monotonic()
            core.queue.put(job, forced=job.forced, front=True)
            core.work.set()
