"""Prometheus metrics with the official client: what happened is counted by an engine
observer as it happens; what is true now is read from ``service.snapshot()`` at scrape time.

The scrape runs on prometheus-client's server thread; the snapshot and the store's counters
are read on the service's event loop (``anyio.from_thread``), never beside it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from anyio.from_thread import run_sync
from anyio.lowlevel import EventLoopToken, current_token
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from novaconsole.engine.observers import Observer
from novaconsole.engine.outcomes import ItemOutcome, OutcomeStatus

if TYPE_CHECKING:
    from novaconsole.engine.service import ProcessingService
    from novaconsole.engine.snapshot import Snapshot

log = logging.getLogger("novaconsole.metrics")

PREFIX = "novaconsole"
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Histogram buckets in seconds: a few milliseconds to the five-minute timeouts people set."""
_FAILED_FINALLY = frozenset({OutcomeStatus.FAILED, OutcomeStatus.TIMED_OUT})


class MetricsObserver(Observer):
    """Counters and histograms fed by the engine's hooks.

    ``max_attempts`` (by handler) tells a final failure that makes the item dead (skipped
    until an operator retries it) from one cut short by a shutdown.
    """

    def __init__(self, registry: CollectorRegistry, max_attempts: Mapping[str, int]) -> None:
        self.max_attempts = dict(max_attempts)
        self.items = Counter(
            f"{PREFIX}_items",
            "Items finished, by handler and final status",
            ["handler", "status"],
            registry=registry,
        )
        self.dead = Counter(
            f"{PREFIX}_items_dead",
            "Items that failed their last attempt: skipped until an operator retries them",
            ["handler"],
            registry=registry,
        )
        self.attempts = Counter(
            f"{PREFIX}_attempts",
            "Processing attempts, by handler and the attempt's result",
            ["handler", "status"],
            registry=registry,
        )
        self.attempt_seconds = Histogram(
            f"{PREFIX}_attempt_duration_seconds",
            "Time one process() call took",
            ["handler"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.queue_wait_seconds = Histogram(
            f"{PREFIX}_queue_wait_seconds",
            "Time an item waited between being fetched (or due for its retry) and its attempt",
            ["handler"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.fetch_seconds = Histogram(
            f"{PREFIX}_fetch_duration_seconds",
            "Time one fetch_next() call took",
            ["handler"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.fetched = Counter(
            f"{PREFIX}_items_fetched",
            "Items returned by fetch_next()",
            ["handler"],
            registry=registry,
        )
        self.fetch_errors = Counter(
            f"{PREFIX}_fetch_errors",
            "fetch_next() calls that raised or timed out",
            ["handler"],
            registry=registry,
        )
        # Children by label values: labels() takes a lock and builds a tuple on every call.
        self._children: dict[tuple[object, ...], Any] = {}

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def fetch_finished(
        self,
        handler: str,
        token: object | None,
        count: int,
        duration: float,
        error: BaseException | None,
    ) -> None:
        self._child(self.fetch_seconds, handler).observe(duration)
        if error is not None:
            self._child(self.fetch_errors, handler).inc()
        elif count:
            self._child(self.fetched, handler).inc(count)

    def attempt_started(
        self, handler: str, item_id: object, attempt: int, queue_wait: float
    ) -> object | None:
        self._child(self.queue_wait_seconds, handler).observe(queue_wait)
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
        self._child(self.attempt_seconds, handler).observe(duration)
        self._child(self.attempts, handler, status.value).inc()

    def item_finished(self, outcome: ItemOutcome) -> None:
        handler, status = outcome.handler, outcome.status
        self._child(self.items, handler, status.value).inc()
        if status in _FAILED_FINALLY and outcome.attempts >= self.max_attempts.get(handler, 1):
            self._child(self.dead, handler).inc()


class SnapshotCollector(Collector):
    """Gauges of what is true now, read from the service at each scrape."""

    def __init__(self, service: ProcessingService, token: EventLoopToken) -> None:
        self.service = service
        self.token = token

    def _read(self) -> tuple[Snapshot, dict[str, int]]:
        store = self.service.store
        counts = {
            name: int(value)
            for name in ("buffered_outcomes", "dropped_outcomes", "rejected_outcomes")
            if isinstance(value := getattr(store, name, None), int)
        }
        return self.service.snapshot(), counts

    def collect(self) -> Iterable[Metric]:
        try:
            snapshot, store = run_sync(self._read, token=self.token)
        except RuntimeError:  # the loop has stopped: nothing is true any more
            return
        yield from snapshot_metrics(snapshot, store)


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
    yield per_handler("handler_batch_size", "Items asked of fetch_next()", "batch_size")
    yield CounterMetricFamily(f"{PREFIX}_cycles", "Poll cycles run", value=snapshot.cycles)
    if snapshot.workers:
        alive = sum(1 for worker in snapshot.workers if worker.alive)
        yield gauge("workers_alive", "Workers sharing the database, alive", alive)
    if "buffered_outcomes" in store:
        yield gauge(
            "outcomes_buffered", "Outcomes recorded, not yet written", store["buffered_outcomes"]
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


def metrics_registry(service: ProcessingService, token: EventLoopToken) -> CollectorRegistry:
    """A registry with the service's metrics, its process's, and an observer feeding them
    (registered on ``service``)."""
    registry = CollectorRegistry()
    default_attempts = service.retry.max_attempts
    max_attempts = {
        r.name: r.max_attempts if r.max_attempts is not None else default_attempts
        for r in service.registrations
    }
    service.add_observer(MetricsObserver(registry, max_attempts))
    registry.register(SnapshotCollector(service, token))
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
