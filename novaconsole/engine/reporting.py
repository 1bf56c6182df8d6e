"""Final outcomes and the counters they feed, and the snapshot built from them."""

from __future__ import annotations

import logging
from collections import deque
from time import monotonic

from novaconsole.engine import observers as observing
from novaconsole.engine.core import EngineCore, log_extra, now
from novaconsole.engine.events import ItemFinished
from novaconsole.engine.metrics import percentiles
from novaconsole.engine.outcomes import ItemOutcome, OutcomeStatus, shown_id
from novaconsole.engine.runtime import HandlerRuntime
from novaconsole.engine.scheduling import Job
from novaconsole.engine.snapshot import HandlerView, Percentiles, Snapshot

log = logging.getLogger("novaconsole.engine")

HANDLER_LATENCY_KEEP = 512
"""Processing times kept per handler (the most recent)."""
HANDLER_LATENCY_WINDOW = 60.0
"""Seconds a handler's processing time counts in its latency: a handler that stopped
finishing items shows no latency rather than an old one."""


class HandlerLatency:
    """One handler's recent processing times: at most ``keep`` of them, of the last
    ``window`` seconds. Adding one is a deque append; percentiles are computed on demand."""

    __slots__ = ("samples", "window")

    def __init__(
        self, keep: int = HANDLER_LATENCY_KEEP, window: float = HANDLER_LATENCY_WINDOW
    ) -> None:
        self.samples: deque[tuple[float, float]] = deque(maxlen=keep)
        """(monotonic time it finished, processing seconds), oldest first."""
        self.window = window

    def add(self, seconds: float, at: float) -> None:
        """One item processed in ``seconds``, finished at monotonic time ``at``."""
        self.samples.append((at, seconds))

    def recent(self, at: float) -> list[float]:
        """The processing times of items finished in the ``window`` before ``at``."""
        since = at - self.window
        samples = self.samples
        if not samples or samples[-1][0] < since:
            return []
        if samples[0][0] >= since:
            return [seconds for _, seconds in samples]
        return [seconds for finished, seconds in samples if finished >= since]

    def summary(self, at: float) -> tuple[Percentiles, int]:
        """p50/p95/p99 of :meth:`recent` and how many samples they cover."""
        recent = self.recent(at)
        return percentiles(recent), len(recent)


class Reporter:
    """Records each item's final outcome once (store, events, counters) and reports state."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core
        self.handler_latency: dict[str, HandlerLatency] = {}
        """Each handler's recent processing times (created with its first outcome)."""

    def outcome(
        self, job: Job, status: OutcomeStatus, error: str | None, tb: str | None = None
    ) -> ItemOutcome:
        """The final outcome of ``job`` as of now."""
        finished_at = now()
        return ItemOutcome(
            handler=job.scope.runtime.name,
            item_id=job.item_id,
            status=status,
            attempts=job.attempts,
            duration=job.processing,
            error=error,
            started_at=job.first_started_at or finished_at,
            finished_at=finished_at,
            traceback=tb,
            history=job.history,
            wait=max(job.wait, 0.0),
            token=job.token,
        )

    def finish(
        self,
        job: Job,
        status: OutcomeStatus,
        error: str | None,
        tb: str | None = None,
        *,
        quiet: bool = False,
        written: ItemOutcome | None = None,
    ) -> None:
        """Record an item's final outcome and release everything it held.

        ``quiet``: a skip already recorded; only the ``run_once()`` reports waiting for the
        item hear of it (no row, event or counter). ``written``: the outcome the store's writer
        already wrote (with the item's ``ctx.write()`` statements)."""
        core = self.core
        rt = job.scope.runtime
        outcome = written or self.outcome(job, status, error, tb)
        if quiet:
            self._tell_trackers(job, outcome)
            return
        if status is OutcomeStatus.SUCCEEDED:
            rt.succeeded += 1
            core.totals["succeeded"] += 1
            rt.last_outcome_failed = False
            if job.attempts > 1:
                core.store.set_item_state(rt.name, job.key, None)
        elif status is OutcomeStatus.SKIPPED:
            rt.skipped += 1
            core.totals["skipped"] += 1
        elif status.is_failure:
            rt.failed += 1
            core.totals["failed"] += 1
            rt.last_error = error
            rt.last_outcome_failed = True
        if status is not OutcomeStatus.SKIPPED:
            at = monotonic()
            core.throughput.add(1, at)
            latency = core.latency
            latency.fetch.append(job.scope.fetch_duration)
            latency.queue.append(max(job.wait, 0.0))
            latency.process.append(job.processing)
            window = self.handler_latency.get(rt.name)
            if window is None:
                window = self.handler_latency[rt.name] = HandlerLatency()
            window.samples.append((at, job.processing))  # HandlerLatency.add, inlined: hot
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "%s item %s %s",
                    rt.name,
                    shown_id(job.item_id),
                    status.value,
                    extra=log_extra(rt.name, job.item_id),
                )
        if written is None:
            core.store.record((outcome,))
        core.recent.append(outcome)
        if core.hub.active:
            core.hub.publish(ItemFinished(outcome))
        if core.observers:
            observing.item_finished(core.observers, outcome)
        self._tell_trackers(job, outcome)
        if rt.active.get(job.key) is job:
            del rt.active[job.key]
            if rt.fetching:
                rt.finished_during_fetch[job.key] = (monotonic(), outcome)
        if status is not OutcomeStatus.SKIPPED:
            core.fetcher.settle_scope(job)

    @staticmethod
    def _tell_trackers(job: Job, outcome: ItemOutcome) -> None:
        for tracker in job.trackers or ():
            tracker.report.outcomes.append(outcome)
            tracker.pending -= 1
            tracker.settle()

    def snapshot(self) -> Snapshot:
        core = self.core
        at = monotonic()
        handlers = {name: self._handler_view(rt, at) for name, rt in core.runtimes.items()}
        due = [v.next_poll_in for v in handlers.values() if v.next_poll_in is not None]
        return Snapshot(
            state=core.state,
            paused=core.paused,
            concurrency=core.concurrency,
            configured_concurrency=core.options.max_concurrency,
            queue_depth=core.queue.depth,
            queue_capacity=core.queue.capacity,
            in_flight=core.in_flight,
            cycles=core.cycles,
            handlers=handlers,
            succeeded=core.totals["succeeded"],
            failed=core.totals["failed"],
            skipped=core.totals["skipped"],
            retrying=len(core.retry_heap),
            rate=core.throughput.rate(now=at),
            throughput=core.throughput.series(at),
            next_poll_in=min(due) if due and not core.paused else None,
            last_cycle_duration=core.last_cycle_duration,
            latency=core.latency.summary(),
            database=core.database_display,
            worker_id=core.worker_id,
            workers=core.fleet,
            pause=core.controls.pause if core.paused else None,
        )

    def _handler_view(self, rt: HandlerRuntime, at: float) -> HandlerView:
        schedulable = self.core.is_running and rt.enabled and not rt.paused and not rt.busy
        registration = rt.registration
        window = self.handler_latency.get(rt.name)
        latency, samples = window.summary(at) if window is not None else (Percentiles(), 0)
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
            next_poll_in=max(0.0, rt.next_due - at) if schedulable else None,
            failing=rt.fetch_failed or rt.last_outcome_failed,
            tripped=bool(rt.gate),
            breaker_reason=self.core.breakers.breakers[rt.name].reason if rt.gate else None,
            breaker_retry_in=self.core.breakers.retry_in(rt),
            pause=self.core.controls.handler_pauses.get(rt.name) if rt.paused else None,
            dead_items=rt.dead_items,
            dead_returned=rt.dead_returned,
            latency=latency,
            latency_samples=samples,
        )
