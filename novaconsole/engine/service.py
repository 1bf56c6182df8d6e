"""The processing service: poll loop, fair queue, workers, retries and the control API."""

from __future__ import annotations

import heapq
import logging
import os
import socket
import traceback
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from itertools import count
from time import monotonic
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskGroup
from anyio.lowlevel import checkpoint

from novaconsole.engine.coordination import Claim, Command, Coordinator, WorkerBeat, WorkerView
from novaconsole.engine.events import (
    ControlChanged,
    CycleFinished,
    CycleStarted,
    EventHub,
    EventSubscription,
    FetchCompleted,
    FetchFailed,
    ItemFinished,
    ItemRetrying,
    ServiceStateChanged,
)
from novaconsole.engine.grouped_writes import GroupedWriter, WritesHolder, current_writes
from novaconsole.engine.handler import (
    HandlerContext,
    NoDatabaseError,
    SessionFactory,
    current_item_id,
)
from novaconsole.engine.metrics import LatencySamples, Throughput
from novaconsole.engine.outcomes import Attempt, CycleReport, ItemOutcome, OutcomeStatus
from novaconsole.engine.registry import HandlerRegistration, ProcessingOptions
from novaconsole.engine.retry import RetryPolicy
from novaconsole.engine.runtime import HandlerRuntime
from novaconsole.engine.scheduling import FairQueue, Job, Scope, Tracker, WorkerSlot
from novaconsole.engine.snapshot import HandlerView, Snapshot
from novaconsole.engine.state import Controls, ItemState, MemoryStateStore, StateStore

log = logging.getLogger("novaconsole.engine")
_T = TypeVar("_T")

_RECENT = 200
"""Final outcomes kept for :meth:`ProcessingService.recent_outcomes`."""

_YIELD_EVERY = 0.001
"""Seconds a worker may run items that never suspend before it lets other tasks run: with
every worker busy the loop stalls at most about concurrency x this (the console's keys)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class ProcessingService:
    """Runs the registered handlers. Build it with ``BackgroundProcessing(...).build()``.

    Every front end (console, headless runner, tests) goes through the methods below.
    """

    def __init__(
        self,
        *,
        options: ProcessingOptions,
        retry: RetryPolicy,
        registrations: Sequence[HandlerRegistration],
        store: StateStore | None = None,
        session_factory: SessionFactory | None = None,
        database_url: str | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.options = options
        self.retry = retry
        self.registrations = tuple(registrations)
        self.store: StateStore = store if store is not None else MemoryStateStore()
        self.session_factory = session_factory
        self._writer: GroupedWriter | None = None
        engine = getattr(self.store, "engine", None)
        if engine is not None:
            store = self.store
            self._writer = GroupedWriter(engine, lambda: getattr(store, "sync_engine", None))
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.database_display = getattr(self.store, "display_url", None) or (
            _mask(database_url) if database_url else "memory (nothing persisted)"
        )
        self._queue = FairQueue(options.queue_capacity)
        self._runtimes: dict[str, HandlerRuntime] = {}
        for registration in self.registrations:
            runtime = HandlerRuntime(
                registration=registration,
                poll_interval=_first(registration.poll_interval, options.poll_interval),
                item_timeout=_first(registration.item_timeout, options.item_timeout),
                max_attempts=_first(registration.max_attempts, retry.max_attempts),
                batch_size=registration.max_items_per_cycle,
            )
            self._runtimes[registration.name] = runtime
            self._queue.add_runtime(runtime)
        self._hub = EventHub()
        self._concurrency = options.max_concurrency
        self._paused = False
        self._state = "stopped"
        self._cycles = 0
        self._last_cycle_duration: float | None = None
        self._in_flight = 0
        self._workers = 0
        self._retry_heap: list[tuple[float, int, Job]] = []
        self._sequence = count()
        self._coordinator: Coordinator | None = getattr(self.store, "coordinator", None)
        self._fleet: tuple[WorkerView, ...] = ()
        self._unfinished: list[Claim] = []
        self._started_at = _now()
        self._recent: deque[ItemOutcome] = deque(maxlen=_RECENT)
        self._throughput = Throughput()
        self._latency = LatencySamples()
        self._totals = {"succeeded": 0, "failed": 0, "skipped": 0}
        self._task_group: TaskGroup | None = None
        self._worker_group: TaskGroup | None = None
        self._fetch_scopes: set[anyio.CancelScope] = set()
        self._slots: set[WorkerSlot] = set()
        self._stopping = False
        self._drained: anyio.Event | None = None
        self._work = anyio.Event()
        self._poll_wake = anyio.Event()
        self._retry_wake = anyio.Event()
        self._idle = anyio.Event()

    # ------------------------------------------------------------------ lifecycle

    @property
    def is_running(self) -> bool:
        return self._state in ("running", "paused", "draining")

    @asynccontextmanager
    async def running(self, *, poll: bool = True) -> AsyncIterator[ProcessingService]:
        """Run the service for the duration of the block; leave it drained and stopped.

        With ``poll=False`` nothing is fetched on the interval: only ``run_once()`` fetches
        (the headless ``--once`` mode).
        """
        if self._state != "stopped":
            raise RuntimeError("the service is already running")
        self._reset_events()
        self._state = "starting"
        self._started_at = _now()
        await self.store.open()
        self._apply_controls(await self.store.load_controls())
        recorded = getattr(self.store, "recent_outcomes", None)
        if recorded is not None and not self._recent:
            self._recent.extend(await recorded(_RECENT))
        try:
            async with anyio.create_task_group() as group:
                self._task_group = group
                await group.start(self._run_workers)
                group.start_soon(self._watchdog)
                group.start_soon(self._retry_loop)
                group.start_soon(self.store.run)
                group.start_soon(self._coordination_loop)
                if self._writer is not None:
                    group.start_soon(self._writer.run)
                if poll:
                    group.start_soon(self._poll_loop)
                self._set_state("paused" if self._paused else "running")
                log.info(
                    "novaconsole started: %d handlers, concurrency %d, database %s",
                    len(self._runtimes),
                    self._concurrency,
                    self.database_display,
                )
                try:
                    yield self
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.drain()
                    group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._close_scopes()
                await self._release_unfinished()
                await self.store.close()
                self._task_group = None
                self._set_state("stopped")
                log.info("novaconsole stopped")
                self._hub.close()

    def _reset_events(self) -> None:
        self._work = anyio.Event()
        self._poll_wake = anyio.Event()
        self._retry_wake = anyio.Event()
        self._idle = anyio.Event()
        self._drained = None
        self._stopping = False

    async def drain(self) -> None:
        """Stop fetching, let in-flight items finish within ``shutdown_grace``, cancel the rest.

        Items still queued or waiting for a retry stay pending at their source. Idempotent.
        """
        if self._drained is not None:
            await self._drained.wait()
            return
        self._drained = drained = anyio.Event()
        self._stopping = True
        self._set_state("draining")
        log.info("draining: %d items in flight", self._in_flight)
        self._wake(self._poll_wake, self._retry_wake, self._work)
        for job in self._queue.remove_all():
            self._abandon(job)
        for _, _, job in self._retry_heap:
            job.scope.runtime.retrying -= 1
            self._abandon(job)
        self._retry_heap.clear()
        # Fetches and items under way finish (cancelling database work mid-statement can
        # strand connections); whatever is still running after the grace is cancelled.
        with anyio.move_on_after(self.options.shutdown_grace.total_seconds()):
            await self._until_idle()
        if self._in_flight or self._fetch_scopes:
            log.warning(
                "shutdown grace of %ss over: cancelling %d items in flight and %d fetches",
                self.options.shutdown_grace.total_seconds(),
                self._in_flight,
                len(self._fetch_scopes),
            )
            for scope in list(self._fetch_scopes):
                scope.cancel()
            if self._worker_group is not None:
                self._worker_group.cancel_scope.cancel()
            await self._until_idle()
        drained.set()

    async def _until_idle(self) -> None:
        while self._in_flight or self._fetch_scopes or self._committing:
            self._idle = anyio.Event()
            await self._idle.wait()

    @property
    def _committing(self) -> int:
        """Items whose ``ctx.write()`` statements wait for (or are in) a group commit."""
        return self._writer.committing if self._writer is not None else 0

    def _abandon(self, job: Job) -> None:
        """A job dropped at shutdown: its source keeps it pending; a run-once still hears of it."""
        runtime = job.scope.runtime
        runtime.active.pop(job.key, None)
        if job.token is not None and not job.lost:
            self._unfinished.append(Claim(runtime.name, job.key, job.token))
        if job.trackers:
            self._finish(job, OutcomeStatus.CANCELLED, "service stopped before the item ran")
        else:
            self._settle_scope(job)

    async def _close_scopes(self) -> None:
        for runtime in self._runtimes.values():
            for scope in list(runtime.scopes):
                await self._close_scope(scope)

    # ------------------------------------------------------------------ controls

    def _runtime(self, name: str) -> HandlerRuntime:
        try:
            return self._runtimes[name]
        except KeyError:
            known = ", ".join(self._runtimes) or "none"
            raise KeyError(f"no handler named {name!r} (registered: {known})") from None

    def pause(self) -> None:
        """Stop fetching and starting items (in-flight items finish). ``run_once`` still works."""
        self._set_paused(True)

    def resume(self) -> None:
        self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        self._paused = paused
        self._queue.paused = paused
        if self.is_running and not self._stopping:
            self._set_state("paused" if paused else "running")
        self._controls_changed("pause", paused)
        self._wake(self._poll_wake, self._work)

    def pause_handler(self, name: str) -> None:
        """Stop fetching and starting items of one handler."""
        self._set_handler_paused(name, True)

    def resume_handler(self, name: str) -> None:
        self._set_handler_paused(name, False)

    def _set_handler_paused(self, name: str, paused: bool) -> None:
        self._runtime(name).paused = paused
        self._controls_changed("pause", paused, name)
        self._wake(self._poll_wake, self._work)

    def set_batch_size(self, name: str, size: int) -> None:
        """Items asked of the handler per fetch, from its next fetch on."""
        if size < 1:
            raise ValueError(f"batch size must be at least 1, got {size}")
        self._runtime(name).batch_size = size
        self._controls_changed("batch_size", size, name)

    def set_concurrency(self, workers: int) -> None:
        """How many items are processed at once; takes effect immediately."""
        if workers < 1:
            raise ValueError(f"concurrency must be at least 1, got {workers}")
        self._concurrency = workers
        self._spawn_workers()
        self._wake(self._work)
        self._controls_changed("concurrency", workers)

    async def retry_item(self, handler: str, item_id: Any) -> bool:
        """Forget an item's attempts so that its next fetch processes it again."""
        self._runtime(handler)
        forgotten = await self.store.forget_item(handler, str(item_id))
        if forgotten:
            log.info("item %s will be retried", item_id, extra=_extra(handler, item_id))
            self._hub.publish(ControlChanged("retry", str(item_id), handler))
        return forgotten

    def _controls_changed(self, what: str, value: Any, handler: str | None = None) -> None:
        self.store.save_controls(_control_change(what, value, handler))
        self._hub.publish(ControlChanged(what, value, handler))
        log.info(
            "%s%s set to %s",
            what.replace("_", " "),
            f" of {handler}" if handler else "",
            value,
            extra={"handler": handler} if handler else None,
        )

    def _apply_controls(self, controls: Controls) -> None:
        if controls.paused is not None:
            self._paused = self._queue.paused = controls.paused
        if controls.concurrency is not None and controls.concurrency >= 1:
            self._concurrency = controls.concurrency
        for name, paused in controls.handler_paused.items():
            if name in self._runtimes:
                self._runtimes[name].paused = paused
        for name, size in controls.batch_sizes.items():
            if name in self._runtimes and size >= 1:
                self._runtimes[name].batch_size = size

    # ------------------------------------------------------------------ observing

    def events(self, max_buffer: int = 10_000) -> EventSubscription:
        """A new subscription to the service's events (``async for event in ...``).

        A reader that falls ``max_buffer`` events behind loses the oldest and gets an
        ``EventsDropped`` telling how many; it never slows the engine.
        """
        return self._hub.subscribe(max_buffer)

    def recent_outcomes(self) -> list[ItemOutcome]:
        """The latest final outcomes, oldest first: those of earlier runs recorded in the
        store, then this run's (a console opened late starts from them)."""
        return list(self._recent)

    def snapshot(self) -> Snapshot:
        """The service now: cheap and free of side effects."""
        now = monotonic()
        handlers = {name: self._handler_view(rt, now) for name, rt in self._runtimes.items()}
        due = [v.next_poll_in for v in handlers.values() if v.next_poll_in is not None]
        return Snapshot(
            state=self._state,
            paused=self._paused,
            concurrency=self._concurrency,
            configured_concurrency=self.options.max_concurrency,
            queue_depth=self._queue.depth,
            queue_capacity=self._queue.capacity,
            in_flight=self._in_flight,
            cycles=self._cycles,
            handlers=handlers,
            succeeded=self._totals["succeeded"],
            failed=self._totals["failed"],
            skipped=self._totals["skipped"],
            retrying=len(self._retry_heap),
            rate=self._throughput.rate(now=now),
            throughput=self._throughput.series(now),
            next_poll_in=min(due) if due and not self._paused else None,
            last_cycle_duration=self._last_cycle_duration,
            latency=self._latency.summary(),
            database=self.database_display,
            worker_id=self.worker_id,
            workers=self._fleet,
        )

    def _handler_view(self, rt: HandlerRuntime, now: float) -> HandlerView:
        schedulable = self.is_running and rt.enabled and not rt.paused and not rt.busy
        registration = rt.registration
        return HandlerView(
            name=rt.name,
            purpose=registration.purpose,
            paused=rt.paused,
            enabled=rt.enabled,
            batch_size=rt.batch_size,
            configured_batch_size=registration.max_items_per_cycle,
            succeeded=rt.succeeded,
            failed=rt.failed,
            last_error=rt.last_error,
            skipped=rt.skipped,
            in_flight=rt.in_flight,
            queued=len(rt.queue) + len(rt.forced),
            retrying=rt.retrying,
            last_run=rt.last_run,
            next_poll_in=max(0.0, rt.next_due - now) if schedulable else None,
            failing=rt.fetch_failed or rt.last_outcome_failed,
        )

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self._hub.publish(ServiceStateChanged(state))

    @staticmethod
    def _wake(*events: anyio.Event) -> None:
        for event in events:
            event.set()

    # ------------------------------------------------------------------ the poll loop

    async def _poll_loop(self) -> None:
        delay = self.options.startup_delay.total_seconds()
        if delay:
            log.info("waiting %ss before the first cycle", delay)
            with anyio.move_on_after(delay):
                await self._sleep_until_stopping()
        while not self._stopping:
            now = monotonic()
            due: list[HandlerRuntime] = []
            if not self._paused:
                due = [
                    rt
                    for rt in self._runtimes.values()
                    if rt.enabled and not rt.paused and not rt.busy and rt.next_due <= now
                ]
            if due:
                self._start_cycle(due)
            waits = [
                rt.next_due - now
                for rt in self._runtimes.values()
                if rt.enabled and not rt.paused and not rt.busy and rt.next_due > now
            ]
            self._poll_wake = anyio.Event()
            if self._paused or not waits:
                await self._poll_wake.wait()
            else:
                with anyio.move_on_after(min(waits)):
                    await self._poll_wake.wait()

    async def _sleep_until_stopping(self) -> None:
        while not self._stopping:
            self._poll_wake = anyio.Event()
            await self._poll_wake.wait()

    def _start_cycle(self, due: list[HandlerRuntime]) -> None:
        assert self._task_group is not None
        self._cycles += 1
        cycle = self._cycles
        names = tuple(rt.name for rt in due)
        log.debug("cycle %d: fetching from %s", cycle, ", ".join(names))
        self._hub.publish(CycleStarted(cycle, names))
        tracker = Tracker(CycleReport(cycle=cycle, started_at=_now()))
        tracker.fetching = len(due)
        for rt in due:
            rt.busy = True
            self._task_group.start_soon(self._fetch_into_queue, rt, tracker, False)
        self._task_group.start_soon(self._finish_cycle, tracker)

    async def _finish_cycle(self, tracker: Tracker) -> None:
        await tracker.done.wait()
        self._close_report(tracker)

    def _close_report(self, tracker: Tracker) -> None:
        report = tracker.report
        report.finished_at = _now()
        self._last_cycle_duration = report.duration
        items = len(report.outcomes) or tracker.items
        self._hub.publish(CycleFinished(report.cycle, report.duration, items))
        log.debug("cycle %d done in %.3fs: %d items", report.cycle, report.duration, items)

    async def run_once(self) -> CycleReport:
        """Run one cycle now, even while paused; return when every fetched item is final.

        Handlers paused one by one and disabled handlers are left out.
        """
        if not self.is_running or self._stopping:
            raise RuntimeError("run_once() needs a running service: use `async with running()`")
        self._cycles += 1
        runtimes = [rt for rt in self._runtimes.values() if rt.enabled and not rt.paused]
        tracker = Tracker(CycleReport(cycle=self._cycles, started_at=_now()))
        tracker.fetching = len(runtimes)
        self._hub.publish(CycleStarted(self._cycles, tuple(rt.name for rt in runtimes)))
        async with anyio.create_task_group() as group:
            for rt in runtimes:
                group.start_soon(self._fetch_into_queue, rt, tracker, True)
        tracker.settle()
        await tracker.done.wait()
        self._close_report(tracker)
        return tracker.report

    # ------------------------------------------------------------------ fetching

    async def _fetch_into_queue(self, rt: HandlerRuntime, tracker: Tracker, forced: bool) -> None:
        """Fetch one batch from a handler and queue its new items, waiting for room."""
        scope: Scope | None = None
        try:
            if self._stopping:
                return  # started just as the drain began: fetch nothing
            fetched_at = await self._coordination_clock()
            scope, items = await self._fetch(rt, tracker)
            if scope is not None:
                scope.background = not forced
                try:
                    await self._admit(scope, items, tracker, forced, fetched_at)
                except Exception as error:  # the store could not be asked: a failed fetch
                    self._fetch_failed(rt, tracker, f"admitting items: {_describe(error)}", error)
                    await self._close_scope(scope)
                    scope = None
        finally:
            tracker.fetching -= 1
            tracker.settle()
            if not forced and (scope is None or scope.first_pass == 0):
                self._handler_settled(rt)

    async def _fetch(self, rt: HandlerRuntime, tracker: Tracker) -> tuple[Scope | None, list[Any]]:
        registration = rt.registration
        rt.last_run = _now()
        ctx = HandlerContext(
            name=rt.name,
            purpose=registration.purpose,
            options=registration.options,
            session_factory=self.session_factory,
            writer=self._writer,
        )
        started = monotonic()
        timeout = self.options.fetch_timeout.total_seconds()
        cancel = anyio.CancelScope()
        self._fetch_scopes.add(cancel)
        error: str | None = None
        failure: BaseException | None = None
        items: list[Any] = []
        handler = None
        try:
            with cancel:
                handler = registration.create(ctx)
                with anyio.fail_after(timeout):
                    items = list(await handler.fetch_next(rt.batch_size))
                for item in items:
                    if not hasattr(item, "id"):
                        raise TypeError(f"fetch_next returned {item!r}, which has no id")
        except TimeoutError:
            error = f"fetch timed out after {timeout:g}s"
        except Exception as exc:
            error, failure = _describe(exc), exc
        except BaseException:  # cancelled from outside (a cancelled run_once, teardown)
            with anyio.CancelScope(shield=True):
                await ctx.aclose()
            raise
        finally:
            self._fetch_scopes.discard(cancel)
            if self._stopping:
                self._idle.set()
        if cancel.cancelled_caught:
            error = "fetch cancelled: the service is stopping"
        duration = monotonic() - started
        if error is not None or handler is None:
            self._fetch_failed(rt, tracker, error or "fetch failed", failure)
            with anyio.CancelScope(shield=True):
                await ctx.aclose()
            return None, []
        rt.fetch_failed = False
        tracker.report.fetched[rt.name] = len(items)
        self._hub.publish(FetchCompleted(rt.name, len(items), duration))
        if items:
            log.debug("fetched %d items from %s", len(items), rt.name, extra=_extra(rt.name))
        scope = Scope(runtime=rt, ctx=ctx, handler=handler, fetch_duration=duration)
        rt.scopes.add(scope)
        return scope, items

    def _fetch_failed(
        self, rt: HandlerRuntime, tracker: Tracker, error: str, failure: BaseException | None
    ) -> None:
        log.error(
            "fetch from %s failed: %s", rt.name, error, exc_info=failure, extra=_extra(rt.name)
        )
        rt.fetch_failed = True
        rt.last_error = error
        tracker.report.fetch_errors[rt.name] = error
        self._hub.publish(FetchFailed(rt.name, error))

    async def _coordination_clock(self) -> datetime | None:
        """The coordinator's clock before a fetch (``None`` without one, or if unreadable)."""
        if self._coordinator is None:
            return None
        try:
            return await self._coordinator.now()
        except Exception:
            log.exception("reading the database clock failed")
            return None

    async def _claim(
        self, rt: HandlerRuntime, keys: list[str], fetched_at: datetime | None
    ) -> Mapping[str, int]:
        """This worker's claims on ``keys``; nothing when the claim fails (items stay pending)."""
        assert self._coordinator is not None
        lease = self.options.lease_duration.total_seconds()
        try:
            return await self._coordinator.claim(
                self.worker_id, rt.name, keys, lease, fetched_at=fetched_at
            )
        except Exception:
            log.exception(
                "claiming %d items of %s failed", len(keys), rt.name, extra=_extra(rt.name)
            )
            return {}

    async def _admit(
        self,
        scope: Scope,
        items: list[Any],
        tracker: Tracker,
        forced: bool,
        fetched_at: datetime | None = None,
    ) -> None:
        rt = scope.runtime
        fresh: list[tuple[str, Any]] = []
        for item in items:
            key = str(item.id)
            running = rt.active.get(key)
            if running is not None:
                # In progress from an earlier fetch: not taken again, but a run-once waits for it.
                if forced and tracker not in running.trackers:
                    running.trackers.append(tracker)
                    tracker.pending += 1
                    if not running.forced:
                        self._queue.force(running)
                continue
            fresh.append((key, item))
        keys = [key for key, _ in fresh]
        states = await self.store.item_states(rt.name, keys) if fresh else {}
        tokens: Mapping[str, int] | None = None
        if self._coordinator is not None and fresh:
            # Another worker may hold some of these: only what this worker claims is its own.
            tokens = await self._claim(rt, keys, fetched_at)
        jobs: list[Job] = []
        for key, item in fresh:
            if key in rt.active:  # a duplicate id within this batch
                continue
            if tokens is not None and key not in tokens:
                continue
            state = states.get(key)
            job = Job(item=item, key=key, scope=scope, attempts=state.attempts if state else 0)
            if tokens is not None:
                job.token = tokens[key]
            if forced:
                job.forced = True
                job.trackers.append(tracker)
                tracker.pending += 1
            if state is not None and state.dead:
                self._finish(job, OutcomeStatus.SKIPPED, f"out of attempts ({state.attempts})")
                continue
            rt.active[key] = job
            jobs.append(job)
        scope.unsettled += len(jobs)
        scope.first_pass += len(jobs)
        if jobs and not forced:
            # A background cycle waits for its scopes, not for each item: cheaper per item.
            scope.cycle = tracker
            tracker.pending += 1
            tracker.items += len(jobs)
        if not jobs:
            await self._close_scope(scope)
            return
        for job in jobs:
            if self._stopping:
                self._abandon(job)
                continue
            await self._queue.wait_for_room()
            if self._stopping:
                self._abandon(job)
                continue
            job.enqueued_at = monotonic()
            self._queue.put(job, forced=forced)
            if not self._work.is_set():
                self._work.set()

    def _handler_settled(self, rt: HandlerRuntime) -> None:
        """A poll-loop batch is through its first pass: the handler is due after its interval."""
        rt.busy = False
        rt.next_due = monotonic() + rt.poll_interval.total_seconds()
        self._poll_wake.set()

    # ------------------------------------------------------------------ workers

    async def _run_workers(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with anyio.create_task_group() as group:
            self._worker_group = group
            self._spawn_workers()
            task_status.started()
        self._worker_group = None

    def _spawn_workers(self) -> None:
        if self._worker_group is None:
            return
        while self._workers < self._concurrency:
            self._workers += 1
            self._worker_group.start_soon(self._worker)

    async def _worker(self) -> None:
        """Take items and process them until stopped, without a checkpoint per item.

        Each worker runs inside a long-lived cancel scope that the watchdog cancels when the
        item in hand overruns its timeout: cheaper than a cancel scope and a timer per item.
        """
        queue, store = self._queue, self.store
        slot = WorkerSlot()
        self._slots.add(slot)
        holder = WritesHolder()
        current_writes.set(holder)  # this task's own context: ctx.write() queues here
        yielded = monotonic()
        try:
            while not self._stopping and self._workers <= self._concurrency:
                with anyio.CancelScope() as slot.scope:
                    while not self._stopping:
                        if self._workers > self._concurrency:
                            return
                        job = queue.take()
                        if job is None:
                            if self._work.is_set():
                                self._work = anyio.Event()
                            await self._work.wait()
                            yielded = monotonic()
                            continue
                        if job.lost:
                            self._abandon(job)
                            continue
                        holder.writes = None
                        error = await self._attempt(job, slot)
                        writes = holder.take()
                        if slot.timed_out is job:
                            # It overran and swallowed (or wrapped) the cancellation: leave the
                            # cancelled scope; the timeout below is its one outcome.
                            break
                        if writes is not None and self._writer is None and error is None:
                            error = NoDatabaseError(
                                f"handler {job.scope.runtime.name!r} used ctx.write(), but the "
                                "service was built without a database"
                            )
                        if error is not None:
                            await self._failed(job, error, timed_out=False)
                        elif writes is not None and self._writer is not None:
                            # The worker moves on; the outcome waits for the commit.
                            self._writer.submit(writes, partial(self._committed, job))
                        else:
                            self._finish(job, OutcomeStatus.SUCCEEDED, None)
                        if not store.accepting:
                            await store.wait_accepting()
                            yielded = monotonic()
                        elif monotonic() - yielded > _YIELD_EVERY:
                            await checkpoint()
                            yielded = monotonic()
                timed_out, slot.timed_out = slot.timed_out, None
                if timed_out is not None:
                    timeout = timed_out.scope.runtime.item_timeout.total_seconds()
                    error = TimeoutError(f"timed out after {timeout:g}s")
                    await self._failed(timed_out, error, timed_out=True)
        finally:
            self._slots.discard(slot)
            self._workers -= 1

    async def _attempt(self, job: Job, slot: WorkerSlot) -> Exception | None:
        """One try at an item: the error it raised, or None. Timeouts arrive as cancellation."""
        rt = job.scope.runtime
        rt.in_flight += 1
        self._in_flight += 1
        started = monotonic()
        started_at = _now()
        if job.wait < 0:
            job.wait = started - job.enqueued_at
            job.first_started_at = started_at
        slot.job, slot.deadline = job, started + rt.item_timeout.total_seconds()
        token = current_item_id.set(job.item.id)
        error: Exception | None = None
        try:
            await job.scope.handler.process(job.item)
        except Exception as exc:
            error = exc
        except anyio.get_cancelled_exc_class():
            if slot.timed_out is not job:
                self._record_attempt(job, started, started_at, "cancelled: the service stopped")
                self._finish(job, OutcomeStatus.CANCELLED, "cancelled: the service stopped")
                raise
            timeout = rt.item_timeout.total_seconds()
            self._record_attempt(job, started, started_at, f"timed out after {timeout:g}s", True)
            raise
        finally:
            slot.job = None
            current_item_id.reset(token)
            rt.in_flight -= 1
            self._in_flight -= 1
            if self._stopping and not self._in_flight:
                self._idle.set()
        self._record_attempt(job, started, started_at, None if error is None else _describe(error))
        return error

    async def _committed(self, job: Job, error: BaseException | None) -> None:
        """The group holding an item's ``ctx.write()`` statements is done."""
        if error is None:
            self._finish(job, OutcomeStatus.SUCCEEDED, None)
        else:
            job.history[-1] = replace(job.history[-1], error=_describe(error))
            await self._failed(job, error, timed_out=False)
        if self._stopping:
            self._idle.set()

    @staticmethod
    def _record_attempt(
        job: Job, started: float, started_at: datetime, error: str | None, timed_out: bool = False
    ) -> None:
        duration = monotonic() - started
        job.processing += duration
        job.attempts += 1
        job.history.append(Attempt(job.attempts, started_at, duration, error, timed_out))

    async def _watchdog(self) -> None:
        """Cancel items that overrun their handler's ``item_timeout``."""
        shortest = min(
            (rt.item_timeout.total_seconds() for rt in self._runtimes.values()), default=1.0
        )
        interval = min(max(shortest / 10, 0.005), 0.5)
        while True:
            await anyio.sleep(interval)
            now = monotonic()
            for slot in self._slots:
                job = slot.job
                if job is not None and now >= slot.deadline and slot.timed_out is None:
                    slot.timed_out = job
                    slot.scope.cancel()

    async def _failed(self, job: Job, error: BaseException, timed_out: bool) -> None:
        rt = job.scope.runtime
        text = _describe(error)
        tb = None if timed_out else "".join(traceback.format_exception(error))
        if job.attempts < rt.max_attempts and not self._stopping:
            delay = self.retry.delay(job.attempts)
            self.store.set_item_state(rt.name, job.key, ItemState(job.attempts))
            log.warning(
                "%s item %s failed (attempt %d of %d), retrying in %.1fs: %s",
                rt.name,
                job.item.id,
                job.attempts,
                rt.max_attempts,
                delay,
                text,
                extra=_extra(rt.name, job.item.id),
            )
            self._hub.publish(ItemRetrying(rt.name, job.item.id, job.attempts, delay, text))
            self._mark_first_pass(job)
            rt.retrying += 1
            heapq.heappush(self._retry_heap, (monotonic() + delay, next(self._sequence), job))
            self._retry_wake.set()
            return
        status = OutcomeStatus.TIMED_OUT if timed_out else OutcomeStatus.FAILED
        if job.attempts < rt.max_attempts:
            # Stopping: the attempt counts, the item stays pending for the next run.
            self.store.set_item_state(rt.name, job.key, ItemState(job.attempts))
            log.warning(
                "%s item %s failed (attempt %d of %d), not retried now: the service is stopping",
                rt.name,
                job.item.id,
                job.attempts,
                rt.max_attempts,
                extra=_extra(rt.name, job.item.id),
            )
            self._finish(job, status, text, tb)
            return
        self.store.set_item_state(rt.name, job.key, ItemState(job.attempts, dead=True))
        log.error(
            "%s item %s failed after %d attempts: %s",
            rt.name,
            job.item.id,
            job.attempts,
            text,
            extra=_extra(rt.name, job.item.id),
        )
        await self._call_on_failure(job, error)
        self._finish(job, status, text, tb)

    async def _call_on_failure(self, job: Job, error: BaseException) -> None:
        on_failure: Callable[[Any, BaseException], Any] | None = getattr(
            job.scope.handler, "on_failure", None
        )
        if on_failure is None:
            return
        rt = job.scope.runtime
        token = current_item_id.set(job.item.id)
        try:
            with anyio.fail_after(rt.item_timeout.total_seconds()):
                await on_failure(job.item, error)
        except Exception:
            log.exception(
                "%s on_failure for item %s raised",
                rt.name,
                job.item.id,
                extra=_extra(rt.name, job.item.id),
            )
        finally:
            current_item_id.reset(token)

    async def _retry_loop(self) -> None:
        heap = self._retry_heap
        while True:
            self._retry_wake = anyio.Event()
            if not heap:
                await self._retry_wake.wait()
                continue
            delay = heap[0][0] - monotonic()
            if delay > 0:
                with anyio.move_on_after(delay):
                    await self._retry_wake.wait()
                continue
            _, _, job = heapq.heappop(heap)
            job.scope.runtime.retrying -= 1
            if job.lost:
                self._abandon(job)
                continue
            job.enqueued_at = monotonic()
            self._queue.put(job, forced=job.forced, front=True)
            self._work.set()

    # ------------------------------------------------------------------ the fleet

    async def _coordination_loop(self) -> None:
        """Follow controls changed elsewhere; with a coordinator also renew leases, heartbeat
        and take fleet commands. Runs until the service is torn down, drain included."""
        lease = self.options.lease_duration.total_seconds()
        interval = min(
            1.0, max(lease / 3, 0.05), max(self.options.poll_interval.total_seconds(), 0.05)
        )
        while True:
            await anyio.sleep(interval)
            try:
                await self._coordinate(lease)
            except Exception:
                log.exception("coordination with the database failed; trying again")

    async def _coordinate(self, lease: float) -> None:
        if not self._stopping:
            self._follow_controls(await self.store.load_controls())
        coordinator = self._coordinator
        if coordinator is None:
            return
        held = [
            Claim(rt.name, job.key, job.token)
            for rt in self._runtimes.values()
            for job in rt.active.values()
            if job.token is not None and not job.lost
        ]
        if held:
            for claim in await coordinator.renew(self.worker_id, held, lease):
                self._lease_lost(claim)
        beat = WorkerBeat(
            worker_id=self.worker_id,
            state=self._state,
            in_flight=self._in_flight,
            processed=sum(self._totals.values()),
            started_at=self._started_at,
        )
        self._fleet = tuple(await coordinator.beat(beat, lease))
        if self._stopping:
            return
        for command in await coordinator.take_commands(self.worker_id):
            self._carry_out(command)

    def _lease_lost(self, claim: Claim) -> None:
        runtime = self._runtimes.get(claim.handler)
        job = runtime.active.get(claim.item_id) if runtime else None
        if job is None or job.token != claim.token:
            return
        job.lost = True
        log.warning(
            "%s item %s: lease lost to another worker; its result will not be recorded",
            claim.handler,
            job.item.id,
            extra=_extra(claim.handler, job.item.id),
        )

    def _carry_out(self, command: Command) -> None:
        assert self._task_group is not None
        if command.kind == "run_once":
            log.info("running one cycle for the fleet (command %d)", command.id)
            self._task_group.start_soon(self._run_once_quietly)
        else:
            log.warning("ignoring unknown fleet command %r", command.kind)

    async def _run_once_quietly(self) -> None:
        if self.is_running and not self._stopping:
            await self.run_once()

    def _follow_controls(self, stored: Controls) -> None:
        """Apply controls another process wrote to the database (not saved back)."""
        if stored.paused is not None and stored.paused != self._paused:
            self._paused = self._queue.paused = stored.paused
            self._set_state("paused" if stored.paused else "running")
            self._hub.publish(ControlChanged("pause", stored.paused))
            self._wake(self._poll_wake, self._work)
        if stored.concurrency and stored.concurrency != self._concurrency:
            self._concurrency = stored.concurrency
            self._spawn_workers()
            self._hub.publish(ControlChanged("concurrency", stored.concurrency))
        for name, rt in self._runtimes.items():
            paused = stored.handler_paused.get(name)
            if paused is not None and paused != rt.paused:
                rt.paused = paused
                self._hub.publish(ControlChanged("pause", paused, name))
                self._wake(self._poll_wake, self._work)
            size = stored.batch_sizes.get(name)
            if size and size != rt.batch_size:
                rt.batch_size = size
                self._hub.publish(ControlChanged("batch_size", size, name))

    async def _release_unfinished(self) -> None:
        claims, self._unfinished = self._unfinished, []
        if self._coordinator is not None and claims:
            try:
                await self._coordinator.release(self.worker_id, claims)
            except Exception:
                log.exception("releasing %d unfinished claims failed", len(claims))

    # ------------------------------------------------------------------ outcomes

    def _finish(
        self,
        job: Job,
        status: OutcomeStatus,
        error: str | None,
        tb: str | None = None,
    ) -> None:
        """Record an item's final outcome and release everything it held."""
        rt = job.scope.runtime
        finished_at = _now()
        outcome = ItemOutcome(
            handler=rt.name,
            item_id=job.item.id,
            status=status,
            attempts=job.attempts,
            duration=job.processing,
            error=error,
            started_at=job.first_started_at or finished_at,
            finished_at=finished_at,
            traceback=tb,
            history=tuple(job.history),
            wait=max(job.wait, 0.0),
            token=job.token,
        )
        if status is OutcomeStatus.SUCCEEDED:
            rt.succeeded += 1
            self._totals["succeeded"] += 1
            rt.last_outcome_failed = False
            if job.attempts > 1:
                self.store.set_item_state(rt.name, job.key, None)
        elif status is OutcomeStatus.SKIPPED:
            rt.skipped += 1
            self._totals["skipped"] += 1
        elif status is not OutcomeStatus.CANCELLED:
            rt.failed += 1
            self._totals["failed"] += 1
            rt.last_error = error
            rt.last_outcome_failed = True
        if status is not OutcomeStatus.SKIPPED:
            self._throughput.add()
            latency = self._latency
            latency.fetch.append(job.scope.fetch_duration)
            latency.queue.append(max(job.wait, 0.0))
            latency.process.append(job.processing)
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "%s item %s %s",
                    rt.name,
                    job.item.id,
                    status.value,
                    extra=_extra(rt.name, job.item.id),
                )
        self.store.record((outcome,))
        self._recent.append(outcome)
        if self._hub.active:
            self._hub.publish(ItemFinished(outcome))
        for tracker in job.trackers:
            tracker.report.outcomes.append(outcome)
            tracker.pending -= 1
            tracker.settle()
        if rt.active.get(job.key) is job:
            del rt.active[job.key]
        if status is not OutcomeStatus.SKIPPED:
            self._settle_scope(job)

    def _mark_first_pass(self, job: Job) -> None:
        if job.first_pass_done:
            return
        job.first_pass_done = True
        scope = job.scope
        scope.first_pass -= 1
        if scope.first_pass == 0 and scope.background:
            self._handler_settled(scope.runtime)

    def _settle_scope(self, job: Job) -> None:
        self._mark_first_pass(job)
        scope = job.scope
        scope.unsettled -= 1
        if scope.unsettled == 0 and self._task_group is not None:
            self._task_group.start_soon(self._close_scope, scope)

    async def _close_scope(self, scope: Scope) -> None:
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


def _first(value: _T | None, default: _T) -> _T:
    """``value`` unless it is None (a per-handler 0 is a setting, not "unset")."""
    return default if value is None else value


def _control_change(what: str, value: Any, handler: str | None) -> Controls:
    """Only the control an operator just set: the store leaves every other one as it is."""
    if what == "pause":
        return Controls(handler_paused={handler: value}) if handler else Controls(paused=value)
    if what == "batch_size" and handler is not None:
        return Controls(batch_sizes={handler: value})
    return Controls(concurrency=value)


def _extra(handler: str, item_id: Any = None) -> dict[str, Any]:
    extra: dict[str, Any] = {"handler": handler}
    if item_id is not None:
        extra["item_id"] = item_id
    return extra


def _mask(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url
