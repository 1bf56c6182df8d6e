"""Prometheus metrics with the official client: what happened is counted by an engine
observer as it happens; what is true now is read from ``service.snapshot()`` at scrape time.

The scrape runs on prometheus-client's server thread; a custom collector reads everything
on the service's event loop (``anyio.from_thread``), never beside it, so nothing is locked.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import anyio
from anyio.from_thread import run_sync
from anyio.lowlevel import EventLoopToken, current_token
from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from novaconsole.engine.observers import Observer
from novaconsole.engine.outcomes import ItemOutcome, OutcomeStatus

if TYPE_CHECKING:
    from novaconsole.engine.registry import HandlerRegistration
    from novaconsole.engine.service import ProcessingService
    from novaconsole.engine.snapshot import Snapshot

log = logging.getLogger("novaconsole.metrics")

PREFIX = "novaconsole"
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Histogram buckets in seconds: a few milliseconds to the five-minute timeouts people set."""
_FAILED_FINALLY = frozenset({OutcomeStatus.FAILED, OutcomeStatus.TIMED_OUT})


class _Seconds:
    """One histogram's buckets (not cumulative; the last is +Inf) and sum, as plain numbers."""

    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(SECONDS_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect_left(SECONDS_BUCKETS, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        bounds = [*map(floatToGoString, SECONDS_BUCKETS), "+Inf"]
        return list(zip(bounds, accumulate(self.buckets), strict=True))


class MetricsObserver(Observer):
    """Counters and histograms fed by the engine's hooks.

    They are plain numbers, touched only on the service's event loop (the hooks run there,
    and so does :meth:`families`, at scrape time): no lock per item, which prometheus-client's
    own ``Counter`` and ``Histogram`` would take (measured: 2-3 µs per observation here).
    ``max_attempts`` (by handler) tells a final failure that makes the item dead (skipped
    until an operator retries it) from one cut short by a shutdown.
    """

    def __init__(self, max_attempts: Mapping[str, int]) -> None:
        self.max_attempts = dict(max_attempts)
        self.items: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.dead: defaultdict[str, int] = defaultdict(int)
        self.attempts: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.fetched: defaultdict[str, int] = defaultdict(int)
        self.fetch_errors: defaultdict[str, int] = defaultdict(int)
        self.attempt_seconds: defaultdict[str, _Seconds] = defaultdict(_Seconds)
        self.queue_wait_seconds: defaultdict[str, _Seconds] = defaultdict(_Seconds)
        self.fetch_seconds: defaultdict[str, _Seconds] = defaultdict(_Seconds)

    def fetch_finished(
        self,
        handler: str,
        token: object | None,
        count: int,
        duration: float,
        error: BaseException | None,
    ) -> None:
        self.fetch_seconds[handler].observe(duration)
        if error is not None:
            self.fetch_errors[handler] += 1
        else:
            self.fetched[handler] += count

    def attempt_started(
        self, handler: str, item_id: object, attempt: int, queue_wait: float
    ) -> object | None:
        self.queue_wait_seconds[handler].observe(queue_wait)
        return None

    def attempt_finished(
        self,
        handler: str,
        item_id: object,
        attempt: int,
        token: object | None,
        duration: float,
        status: OutcomeStatus,
        error: BaseException | None,
    ) -> None:
        self.attempt_seconds[handler].observe(duration)
        self.attempts[handler, status.value] += 1

    def item_finished(self, outcome: ItemOutcome) -> None:
        handler, status = outcome.handler, outcome.status
        self.items[handler, status.value] += 1
        if status in _FAILED_FINALLY and outcome.attempts >= self.max_attempts.get(handler, 1):
            self.dead[handler] += 1

    def families(self) -> list[Metric]:
        """The counters and histograms as they are now (call it on the service's loop)."""

        def counter(
            name: str, doc: str, labels: list[str], values: Mapping[Any, int]
        ) -> CounterMetricFamily:
            family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=labels)
            for key, value in values.items():
                family.add_metric(list(key) if isinstance(key, tuple) else [key], value)
            return family

        def histogram(name: str, doc: str, values: Mapping[str, _Seconds]) -> Metric:
            family = HistogramMetricFamily(f"{PREFIX}_{name}", doc, labels=["handler"])
            for handler, seconds in values.items():
                family.add_metric([handler], seconds.cumulative(), sum_value=seconds.total)
            return family

        by_status = ["handler", "status"]
        return [
            counter("items", "Items finished, by handler and final status", by_status, self.items),
            counter(
                "items_dead",
                "Items that failed their last attempt: skipped until an operator retries them",
                ["handler"],
                self.dead,
            ),
            counter(
                "attempts",
                "Processing attempts, by handler and the attempt's result",
                by_status,
                self.attempts,
            ),
            counter("items_fetched", "Items returned by fetch_next()", ["handler"], self.fetched),
            counter(
                "fetch_errors",
                "fetch_next() calls that raised or timed out",
                ["handler"],
                self.fetch_errors,
            ),
            histogram(
                "attempt_duration_seconds", "Time one process() call took", self.attempt_seconds
            ),
            histogram(
                "queue_wait_seconds",
                "Time an item waited between being fetched (or due for its retry) and its attempt",
                self.queue_wait_seconds,
            ),
            histogram(
                "fetch_duration_seconds", "Time one fetch_next() call took", self.fetch_seconds
            ),
        ]


class ServiceCollector(Collector):
    """The service's metrics, read on its event loop at each scrape: the observer's counters
    and histograms, gauges from ``snapshot()``, the store's counters."""

    def __init__(
        self, service: ProcessingService, observer: MetricsObserver, token: EventLoopToken
    ) -> None:
        self.service = service
        self.observer = observer
        self.token = token

    def _read(self) -> list[Metric]:
        service = self.service
        store = service.store
        counts = {
            name: int(value)
            for name in (
                "buffered_outcomes",
                "unwritten_outcomes",
                "dropped_outcomes",
                "rejected_outcomes",
            )
            if isinstance(value := getattr(store, name, None), int)
        }
        return [
            *self.observer.families(),
            *snapshot_metrics(service.snapshot(), counts),
            *store_metrics(store, service.leases_lost, service.registrations),
        ]

    def collect(self) -> Iterable[Metric]:
        try:
            return run_sync(self._read, token=self.token)
        except RuntimeError:  # the loop has stopped: nothing is true any more
            return []


def snapshot_metrics(snapshot: Snapshot, store: Mapping[str, int]) -> Iterable[Metric]:
    """The gauges (and the counters kept by the service) of one snapshot."""

    def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)

    def per_handler(name: str, doc: str, attribute: str) -> GaugeMetricFamily:
        family = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=["handler"])
        for handler, view in snapshot.handlers.items():
            family.add_metric([handler], float(getattr(view, attribute)))
        return family

    yield gauge("queue_depth", "Items fetched and waiting for a worker", snapshot.queue_depth)
    yield gauge("queue_capacity", "Room in the queue ([processing] queue_capacity)",
                snapshot.queue_capacity)  # fmt: skip
    yield gauge("concurrency", "Items processed at once, as set now", snapshot.concurrency)
    yield gauge("paused", "1 while the whole service is paused", float(snapshot.paused))
    yield per_handler("items_in_flight", "Items being processed now", "in_flight")
    yield per_handler("items_queued", "Items in the queue", "queued")
    yield per_handler("retries_waiting", "Items waiting for their next attempt", "retrying")
    yield per_handler("handler_paused", "1 while the handler is paused", "paused")
    yield per_handler("handler_enabled", "1 when the handler is enabled", "enabled")
    yield per_handler("handler_failing", "1 when its last fetch or final outcome failed", "failing")
    yield per_handler(
        "handler_tripped",
        "1 while its circuit breaker is open (or running its one trial): nothing is fetched",
        "tripped",
    )
    yield per_handler("handler_batch_size", "Items asked of fetch_next()", "batch_size")
    yield CounterMetricFamily(f"{PREFIX}_cycles", "Poll cycles run", value=snapshot.cycles)
    if snapshot.workers:
        alive = sum(1 for worker in snapshot.workers if worker.alive)
        yield gauge("workers_alive", "Workers sharing the database, alive", alive)
    buffered = store.get("unwritten_outcomes", store.get("buffered_outcomes"))
    if buffered is not None:
        yield gauge(
            "outcomes_buffered",
            "Outcomes recorded, not yet committed (the batch being written included)",
            buffered,
        )
    if "dropped_outcomes" in store:
        yield CounterMetricFamily(
            f"{PREFIX}_outcomes_dropped",
            "Outcomes dropped because the write buffer was full",
            value=store["dropped_outcomes"],
        )
    if "rejected_outcomes" in store:
        yield CounterMetricFamily(
            f"{PREFIX}_stale_outcomes_rejected",
            "Outcomes not written because their worker had lost the item's claim",
            value=store["rejected_outcomes"],
        )


def store_metrics(
    store: object, leases_lost: Mapping[str, int], registrations: Iterable[HandlerRegistration]
) -> Iterable[Metric]:
    """The outcome-write lag (when the store can tell it) and the leases lost by handler
    (every handler listed, from 0, so that ``increase()`` sees the first loss)."""
    unwritten_since = getattr(store, "unwritten_since", None)
    if callable(unwritten_since):
        since: datetime | None = unwritten_since()
        lag = 0.0 if since is None else max((datetime.now(UTC) - since).total_seconds(), 0.0)
        yield GaugeMetricFamily(
            f"{PREFIX}_outcome_write_lag_seconds",
            "How long the oldest outcome not yet committed to the database has waited "
            "since its item finished (0 when every outcome is committed)",
            value=lag,
        )
    lost = CounterMetricFamily(
        f"{PREFIX}_leases_lost",
        "Items whose claim another worker took while this worker held them: "
        "their results are not recorded",
        labels=["handler"],
    )
    for registration in registrations:
        lost.add_metric([registration.name], leases_lost.get(registration.name, 0))
    yield lost


def metrics_registry(service: ProcessingService, token: EventLoopToken) -> CollectorRegistry:
    """A registry with the service's metrics and its process's, and the observer feeding
    them registered on ``service``; ``token`` is the service's event loop."""
    registry = CollectorRegistry()
    default_attempts = service.retry.max_attempts
    max_attempts = {
        r.name: r.max_attempts if r.max_attempts is not None else default_attempts
        for r in service.registrations
    }
    observer = MetricsObserver(max_attempts)
    service.add_observer(observer)
    registry.register(ServiceCollector(service, observer, token))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


@asynccontextmanager
async def serving_metrics(
    service: ProcessingService, *, host: str, port: int
) -> AsyncIterator[int]:
    """Serve ``/metrics`` for ``service`` on ``host:port`` while the block runs; yields the
    port (the one taken when ``port`` is 0)."""
    registry = metrics_registry(service, current_token())
    server, thread = start_http_server(port, addr=host, registry=registry)
    bound = int(server.server_port)
    log.info("metrics on http://%s:%d/metrics", _bracketed(host), bound)
    try:
        yield bound
    finally:
        with anyio.CancelScope(shield=True):
            # shutdown() waits for the serving thread, which may be in a scrape that waits
            # for this loop: so it waits in a thread of its own.
            await anyio.to_thread.run_sync(server.shutdown)
        server.server_close()
        thread.join()


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
