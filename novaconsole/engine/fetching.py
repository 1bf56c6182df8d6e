"""Fetching a batch from a handler, admitting its items (claims, attempts known) and the
handler scope's life until every item it returned is final."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from time import monotonic

import anyio

from novaconsole.engine import observers as observing
from novaconsole.engine.batches import Batched, checked_batch
from novaconsole.engine.core import EngineCore, cancelled_by_us, describe, log_extra, now
from novaconsole.engine.events import FetchCompleted, FetchFailed
from novaconsole.engine.handler import HandlerContext, awaitable_method
from novaconsole.engine.outcomes import OutcomeStatus
from novaconsole.engine.persistence import ItemState
from novaconsole.engine.repeated import RepeatedFailure
from novaconsole.engine.runtime import HandlerRuntime
from novaconsole.engine.scheduling import HandlerScope, Job, Tracker

log = logging.getLogger("novaconsole.engine")

CLOCK_READ_EVERY = 1.0
"""Seconds between two reads of the coordinator's clock by the fetcher (see
:meth:`Fetcher._coordination_clock`): the clocks drift apart by far less than this."""


LOST_BATCH_RETRY = 0.005
"""Seconds before a handler whose full batch other workers had all claimed is fetched again,
doubled for each such batch in a row, up to its poll interval. Waiting the whole interval
left a worker of a fleet idle while work waited (B7's drain at 2 workers: 6,991-8,522 rows/s
with a 50 ms interval, 10,265-10,588 with 5 ms); fetching again at once would spin on a
query that returns the same held rows until their holder is through."""


def lost_batch_wait(rt: HandlerRuntime) -> float | None:
    """How long to wait before fetching again after :attr:`HandlerRuntime.batches_lost` full
    batches in a row (None: none lost, the usual schedule)."""
    if not rt.batches_lost:
        return None
    wait: float = LOST_BATCH_RETRY * 2.0 ** min(rt.batches_lost - 1, 30)
    return min(wait, rt.poll_interval.total_seconds())


class Fetcher:
    """One fetch per handler and cycle, queued behind the fair queue's backpressure."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core
        self._fetch_failures: dict[str, RepeatedFailure] = {}
        self._clock_failures = RepeatedFailure(log, "reading the database clock failed")
        self._claim_failures = RepeatedFailure(log, "claiming fetched items failed")
        self._clock: tuple[datetime, float] | None = None
        """A reading of the coordinator's clock and this process's monotonic clock just after
        it came back (see :meth:`_coordination_clock`)."""

    async def fetch_into_queue(self, rt: HandlerRuntime, tracker: Tracker, forced: bool) -> None:
        """Fetch one batch from a handler and queue its new items, waiting for room."""
        scope: HandlerScope | None = None
        fetch_started: float | None = None
        try:
            if self.core.stopping:
                return  # started just as the drain began: fetch nothing
            rt.fetching += 1
            fetch_started = monotonic()
            fetched_at = await self._coordination_clock()
            scope, items = await self._fetch(rt, tracker)
            if scope is not None:
                scope.background = not forced
                try:
                    await self._admit(scope, items, tracker, forced, fetch_started, fetched_at)
                    # Only now a success: a fetch whose admission fails (the store's database
                    # is down) would otherwise end the streak and log a traceback every poll.
                    self._failures(rt).succeeded()
                    self.core.breakers.fetched(rt)
                except Exception as error:  # the store could not be asked: a failed fetch
                    self._fetch_failed(rt, tracker, f"admitting items: {describe(error)}", error)
                    await self.close_scope(scope)
                    scope = None
        finally:
            if fetch_started is not None:
                rt.fetching -= 1
                if not rt.fetching:
                    rt.finished_during_fetch.clear()
            tracker.fetching -= 1
            tracker.settle()
            if not forced:
                if scope is None:
                    self.core.poller.handler_settled(rt)
                else:
                    self._release_if_through(scope)

    async def _fetch(
        self, rt: HandlerRuntime, tracker: Tracker
    ) -> tuple[HandlerScope | None, list[Batched]]:
        core = self.core
        registration = rt.registration
        rt.last_run = now()
        ctx = HandlerContext(
            name=rt.name,
            purpose=registration.purpose,
            options=registration.options,
            session_factory=core.session_factory,
            writer=core.writer,
            source_filter=core.source_filter,
            in_flight=lambda: [job.item_id for job in rt.active.values()],
        )
        started = monotonic()
        timeout = core.options.fetch_timeout.total_seconds()
        cancel = anyio.CancelScope()
        core.fetch_scopes.add(cancel)
        error: str | None = None
        failure: BaseException | None = None
        raised: BaseException | None = None
        items: list[Batched] = []
        handler = None
        observers = core.observers
        hooks: Sequence[object | None] | None = None
        try:
            with cancel:
                handler = registration.create(ctx)
                fetch_next = awaitable_method(handler, "fetch_next")
                if fetch_next is None:
                    raise TypeError(f"{type(handler).__name__} has no fetch_next()")
                if observers:
                    hooks = observing.fetch_started(observers, rt.name)
                asked = 1 if rt.gate else rt.batch_size  # a breaker's trial: one item
                with anyio.fail_after(timeout):
                    result = await fetch_next(asked)
                items = checked_batch(rt, result, asked)
        except TimeoutError as exc:
            error, raised = f"fetch timed out after {timeout:g}s", exc
        except Exception as exc:
            error, failure, raised = describe(exc), exc, exc
        except anyio.get_cancelled_exc_class() as exc:
            if not cancelled_by_us():  # the handler's own cancellation: a failed fetch
                error, failure, raised = describe(exc), exc, exc
            else:  # cancelled from outside (a cancelled run_once, teardown)
                if hooks is not None:
                    duration = monotonic() - started
                    observing.fetch_finished(observers, hooks, rt.name, 0, duration, exc)
                with anyio.CancelScope(shield=True):
                    await ctx.aclose()
                raise
        except BaseException as exc:  # KeyboardInterrupt, SystemExit...: a failed fetch
            error, failure, raised = describe(exc), exc, exc
        finally:
            core.fetch_scopes.discard(cancel)
            if core.stopping:
                core.idle.set()
        if cancel.cancelled_caught:
            error = "fetch cancelled: the service is stopping"
            raised = anyio.get_cancelled_exc_class()(error)
        duration = monotonic() - started
        if hooks is not None:
            count = 0 if error is not None else len(items)
            observing.fetch_finished(observers, hooks, rt.name, count, duration, raised)
        if error is not None or handler is None:
            self._fetch_failed(rt, tracker, error or "fetch failed", failure)
            with anyio.CancelScope(shield=True):
                await ctx.aclose()
            return None, []
        rt.fetch_failed = False
        if core.retries.pending:
            core.retries.offered(rt, [key for key, _, _ in items], started)
        tracker.report.fetched[rt.name] = len(items)
        core.hub.publish(FetchCompleted(rt.name, len(items), duration))
        if items:
            log.debug("fetched %d items from %s", len(items), rt.name, extra=log_extra(rt.name))
        process = awaitable_method(handler, "process")
        if process is None:
            self._fetch_failed(rt, tracker, f"{type(handler).__name__} has no process()", None)
            with anyio.CancelScope(shield=True):
                await ctx.aclose()
            return None, []
        scope = HandlerScope(
            runtime=rt,
            ctx=ctx,
            handler=handler,
            process=process,
            on_failure=awaitable_method(handler, "on_failure"),
            fetch_duration=duration,
        )
        rt.scopes.add(scope)
        return scope, items

    def _failures(self, rt: HandlerRuntime) -> RepeatedFailure:
        failures = self._fetch_failures.get(rt.name)
        if failures is None:
            failures = RepeatedFailure(log, f"fetch from {rt.name} failed", log_extra(rt.name))
            self._fetch_failures[rt.name] = failures
        return failures

    def _fetch_failed(
        self, rt: HandlerRuntime, tracker: Tracker, error: str, failure: BaseException | None
    ) -> None:
        self._failures(rt).failed(error, failure)
        rt.fetch_failed = True
        rt.last_error = error
        self.core.breakers.fetch_failed(rt, error)
        tracker.report.fetch_errors[rt.name] = error
        self.core.hub.publish(FetchFailed(rt.name, error))

    async def _coordination_clock(self) -> datetime | None:
        """The coordinator's clock before a fetch (``None`` without one, or if unreadable).

        Read at most every :data:`CLOCK_READ_EVERY` seconds, not once per fetch (a round trip
        on PostgreSQL): in between, the reading plus the time elapsed here since it came back,
        which is never later than the database's clock now (the reading was taken before it
        came back). Earlier is the safe side: the claims' rule then refuses more, never less.
        """
        coordinator = self.core.coordinator
        if coordinator is None:
            return None
        at = monotonic()
        if self._clock is not None and at - self._clock[1] < CLOCK_READ_EVERY:
            read, returned = self._clock
            return read + timedelta(seconds=at - returned)
        try:
            clock = await coordinator.now()
        except Exception as error:
            self._clock_failures.failed(describe(error), error)
            return None
        self._clock = (clock, monotonic())
        self._clock_failures.succeeded()
        return clock

    async def _claim(
        self, rt: HandlerRuntime, keys: list[str], fetched_at: datetime | None
    ) -> Mapping[str, int] | None:
        """This worker's claims on ``keys``; None when the claim fails (items stay pending)."""
        core = self.core
        assert core.coordinator is not None
        lease = core.options.lease_duration.total_seconds()
        try:
            claimed = await core.coordinator.claim(
                core.worker_id, rt.name, keys, lease, fetched_at=fetched_at
            )
        except Exception as error:  # the database is down: logged once per streak, not per poll
            self._claim_failures.failed(f"{rt.name}, {len(keys)} items: {describe(error)}", error)
            return None
        self._claim_failures.succeeded()
        return claimed

    async def _admit(
        self,
        scope: HandlerScope,
        items: list[Batched],
        tracker: Tracker,
        forced: bool,
        fetch_started: float,
        fetched_at: datetime | None = None,
    ) -> None:
        core = self.core
        rt = scope.runtime
        async with rt.admitting:  # see HandlerRuntime.admitting
            admitted, jobs, parked = await self._take(
                scope, items, tracker, forced, fetch_started, fetched_at
            )
        scope.unsettled += len(admitted)
        scope.first_pass += len(admitted)
        if not forced and admitted and len(items) >= rt.batch_size:
            # A full batch: more is waiting. Fetch again once half of it is through, so the
            # queue never runs dry while the next fetch is under way (not after a poll wait).
            scope.refill_at = len(admitted) // 2
            scope.refill_early = self._may_refill_early(scope)
        if admitted and not forced:
            # A background cycle waits for its scopes, not for each item: cheaper per item.
            scope.cycle = tracker
            tracker.pending += 1
            tracker.items += len(admitted)
        if not admitted:
            await self.close_scope(scope)
            return
        for job, crashes in parked:
            core.crashes.park(job, crashes)
        for job in jobs:
            if core.stopping:
                core.lifecycle.abandon(job)
                continue
            await core.queue.wait_for_room()
            if core.stopping:
                core.lifecycle.abandon(job)
                continue
            job.enqueued_at = monotonic()
            core.queue.put(job, forced=forced)
            if not core.work.is_set():
                core.work.set()
        if not forced and (core.paused or rt.paused):
            core.lifecycle.give_back_paused()  # paused while this fetch ran

    async def _take(
        self,
        scope: HandlerScope,
        items: list[Batched],
        tracker: Tracker,
        forced: bool,
        fetch_started: float,
        fetched_at: datetime | None,
    ) -> tuple[list[Job], list[Job], list[tuple[Job, int]]]:
        """The items of ``items`` not active yet, claimed, marked started and made active:
        (admitted, runnable, parked as crashing the worker).

        Left out too: items that finished here after the fetch started (at monotonic
        ``fetch_started``). It may have read them before their writes committed (the claims'
        ``fetched_at`` rule, kept by this worker for itself; with claims the store refuses
        them too); a run-once reports the outcome they finished with. Looked at here, with
        :attr:`active`, under the admitting lock: an item that finishes while the fetch waits
        for that lock is no longer active, and only the time it finished tells it from a new
        one."""
        core = self.core
        rt = scope.runtime
        finished = rt.finished_during_fetch
        fresh: list[Batched] = []
        for batched in items:
            done = finished.get(batched[0]) if finished else None
            if done is not None and done[0] >= fetch_started:
                if forced:
                    tracker.report.outcomes.append(done[1])
                continue
            running = rt.active.get(batched[0])
            if running is not None:
                # In progress from an earlier fetch: not taken again, but a run-once waits for it.
                if forced and tracker not in (running.trackers or ()):
                    running.track(tracker)
                    tracker.pending += 1
                    if not running.forced:
                        core.queue.force(running)
                continue
            fresh.append(batched)
        states = await core.store.item_states(rt.name, [b[0] for b in fresh]) if fresh else {}
        if states:
            fresh = self._skip_dead(scope, fresh, states, tracker, forced)
        else:
            rt.dead_items = 0
            rt.wedged_on_dead = False
        keys = [batched[0] for batched in fresh]
        tokens: Mapping[str, int] | None = None
        if core.coordinator is not None and fresh:
            # Another worker may hold some of these: only what this worker claims is its own.
            claimed = await self._claim(rt, keys, fetched_at)
            tokens = {} if claimed is None else claimed
            if not forced:  # a full batch all held by others: more is waiting (see below)
                lost = claimed is not None and not claimed and len(items) >= rt.batch_size
                rt.batches_lost = rt.batches_lost + 1 if lost else 0
        elif not forced:
            rt.batches_lost = 0
        admitted: list[Job] = []
        for key, item_id, item in fresh:
            if tokens is not None and key not in tokens:
                continue
            state = states.get(key)
            job = Job(item, key, scope, item_id, attempts=state.attempts if state else 0)
            if tokens is not None:
                job.token = tokens[key]
            if forced:
                job.forced = True
                job.track(tracker)
                tracker.pending += 1
            admitted.append(job)
        # Their start is on record before any of them runs (a crash counts against them).
        runnable, parked = await core.crashes.admit(rt, admitted)
        for job in admitted:
            rt.active[job.key] = job
        return admitted, runnable, parked

    def _skip_dead(
        self,
        scope: HandlerScope,
        fresh: list[Batched],
        states: Mapping[str, ItemState],
        tracker: Tracker,
        forced: bool,
    ) -> list[Batched]:
        """Skip the items out of attempts (before any claim: they are not worked on) and
        return the others. Each dead item is recorded ``skipped`` once, then only counted."""
        rt = scope.runtime
        alive: list[Batched] = []
        dead = 0
        for batched in fresh:
            key, item_id, item = batched
            state = states.get(key)
            if state is None or not state.dead:
                alive.append(batched)
                continue
            dead += 1
            recording = rt.dead_recorded_now(key)
            if not (recording or forced):
                continue
            job = Job(item, key, scope, item_id, attempts=state.attempts)
            if forced:
                job.forced = True
                job.track(tracker)
                tracker.pending += 1
            error = f"out of attempts ({state.attempts})"
            self.core.reporter.finish(job, OutcomeStatus.SKIPPED, error, quiet=not recording)
        if dead and not rt.dead_items:
            log.info(
                "%s: fetch_next returned %d items out of attempts; they are skipped (recorded "
                "once) until retried: novaconsole retry %s ITEM_ID",
                rt.name,
                dead,
                rt.name,
                extra=log_extra(rt.name),
            )
        wedged = not alive and dead >= rt.batch_size
        if wedged and not rt.wedged_on_dead:
            log.warning(
                "%s: all %d items fetch_next returned are out of attempts: it makes no "
                "progress while its source returns them first; leave them out of the fetch "
                "(on_failure can mark them at the source) or retry them: novaconsole retry "
                "%s ITEM_ID",
                rt.name,
                dead,
                rt.name,
                extra=log_extra(rt.name),
            )
        rt.wedged_on_dead = wedged
        rt.dead_items = dead
        rt.dead_returned += dead
        return alive

    def _may_refill_early(self, scope: HandlerScope) -> bool:
        """Whether the handler may be fetched again before half of this full batch is through,
        once a slot finds nothing to take (see :meth:`slot_idle`): when the fetch left out
        what is taken (the next cannot return these items), the store's database is a server
        (its round trips, the fetch's and the claims', then overlap the batch's commits;
        SQLite works in this process, where fetching sooner only competes with its writer),
        and no other worker fetches (two running the same query at once take the same rows,
        and one of them gets nothing for its round trips)."""
        core = self.core
        return scope.ctx.leaves_out_taken and core.store_round_trips and core.alone

    def slot_idle(self) -> None:
        """A slot found nothing to take: the handlers whose batch may be followed early are
        due now. Only then: a worker whose slots are busy does not fetch ahead and hold
        claims it cannot start."""
        for rt in self.core.runtimes.values():
            for scope in rt.scopes:
                if scope.refill_early and not scope.released and scope.first_pass:
                    scope.refill_at = scope.first_pass
                    self._release_if_through(scope)

    def mark_first_pass(self, job: Job) -> None:
        if job.first_pass_done:
            return
        job.first_pass_done = True
        scope = job.scope
        scope.first_pass -= 1
        if scope.background:
            self._release_if_through(scope)

    def _release_if_through(self, scope: HandlerScope) -> None:
        """Tell the poll loop once that the handler may be fetched again (see ``refill_at``)."""
        if scope.released or scope.first_pass > scope.refill_at:
            return
        scope.released = True
        self.core.poller.handler_settled(
            scope.runtime, more_waiting=scope.refill_at > 0, due_in=lost_batch_wait(scope.runtime)
        )

    def settle_scope(self, job: Job) -> None:
        self.mark_first_pass(job)
        scope = job.scope
        scope.unsettled -= 1
        if scope.unsettled == 0 and self.core.task_group is not None:
            self.core.task_group.start_soon(self.close_scope, scope)

    async def close_scope(self, scope: HandlerScope) -> None:
        if scope.closed:
            return
        scope.closed = True
        scope.runtime.scopes.discard(scope)
        if scope.cycle is not None:
            scope.cycle.pending -= 1
            scope.cycle.settle()
        try:
            with anyio.CancelScope(shield=True):
                await scope.ctx.aclose()
        except Exception:
            log.exception("closing the scope of %s failed", scope.runtime.name)
