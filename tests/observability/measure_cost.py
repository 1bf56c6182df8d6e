"""What metrics and traces cost per item: B1's no-op workload (one handler, batches of 1,000,
8 workers, SQLite store) with and without them, in interleaved rounds.

Not a test (no timed assertions); run it by hand:
``python -m tests.observability.measure_cost [ITEMS] [ROUNDS] [WORD...]`` (words: only the
variants whose name has one, e.g. ``metrics``; then the hooks are not timed alone). The
machine is shared, so the per-round ratio (each variant right after the plain run) is what
to read, not the rates.
"""

from __future__ import annotations

import gc
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from statistics import median
from time import perf_counter, process_time

import anyio
import httpx

from benchmarks.workloads import Counter, no_op_service
from novaconsole.engine.service import ProcessingService
from novaconsole.observability.metrics import serving_metrics

Variant = Callable[[ProcessingService], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def plain(service: ProcessingService) -> AsyncIterator[None]:
    yield


@asynccontextmanager
async def metrics(service: ProcessingService) -> AsyncIterator[None]:
    """/metrics served and scraped every second (as Prometheus would, but more often)."""
    async with (
        serving_metrics(service, host="127.0.0.1", port=0) as port,
        anyio.create_task_group() as group,
        httpx.AsyncClient() as client,
    ):

        async def scrape() -> None:
            while True:
                await anyio.sleep(1)
                await client.get(f"http://127.0.0.1:{port}/metrics")

        group.start_soon(scrape)
        yield
        group.cancel_scope.cancel()


@asynccontextmanager
async def tracing_api_only(service: ProcessingService) -> AsyncIterator[None]:
    """opentelemetry-api installed, no SDK configured (the observer makes no spans then)."""
    from novaconsole.observability.tracing import TracingObserver

    service.add_observer(TracingObserver())
    yield


@asynccontextmanager
async def tracing_sdk(service: ProcessingService) -> AsyncIterator[None]:
    """An SDK tracer provider whose spans go to a batch processor with a no-op exporter."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from novaconsole.observability.tracing import TracingObserver

    class Discard(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    service.add_observer(TracingObserver(provider.get_tracer("novaconsole")))
    yield
    provider.shutdown()


@asynccontextmanager
async def empty_observer(service: ProcessingService) -> AsyncIterator[None]:
    """The engine's hooks with nothing behind them: their own share of the cost."""
    from novaconsole.engine.observers import Observer

    service.add_observer(Observer())
    yield


VARIANTS: dict[str, Variant] = {
    "an Observer doing nothing": empty_observer,
    "metrics (scraped every 1 s)": metrics,
    "traces, API only (no SDK)": tracing_api_only,
    "traces, SDK + batch processor": tracing_sdk,
}


async def rate(variant: Variant, total: int, database: Path) -> float:
    counter = Counter(total)
    url = f"sqlite+aiosqlite:///{database}"
    service = no_op_service(counter.handler(), batch=1000, concurrency=8, database_url=url)
    async with variant(service):
        started = perf_counter()
        async with service.running():
            await counter.done.wait()
        elapsed = perf_counter() - started
    assert service.snapshot().succeeded == total
    return total / elapsed


async def main(total: int, rounds: int) -> None:
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as work:
        for round_ in range(rounds):
            for name, variant in VARIANTS.items():
                gc.collect()
                base = await rate(plain, total, Path(work, f"p{round_}{len(results[name])}.db"))
                gc.collect()
                with_it = await rate(variant, total, Path(work, f"v{round_}{name[:3]}.db"))
                results[name].append((base, with_it))
                print(f"round {round_ + 1} {name}: plain {base:,.0f}/s, with {with_it:,.0f}/s")
    print(f"\n{total:,} no-op items per run, {rounds} interleaved rounds, SQLite store")
    print(f"{'variant':32} {'plain items/s':>14} {'with items/s':>13} {'ratio':>6} {'µs/item':>8}")
    for name, pairs in results.items():
        ratio = median(with_it / base for base, with_it in pairs)
        cost = median((1 / with_it - 1 / base) * 1e6 for base, with_it in pairs)
        best_base = max(base for base, _ in pairs)
        best_with = max(with_it for _, with_it in pairs)
        print(f"{name:32} {best_base:>14,.0f} {best_with:>13,.0f} {ratio:>6.2f} {cost:>8.1f}")


def hooks_alone(items: int = 200_000) -> None:
    """CPU time of the hooks alone, per item (one fetch per 1,000 items), with no engine
    around them: less at the mercy of a busy machine than the rates above."""
    from datetime import UTC, datetime

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from novaconsole.engine.observers import Observer
    from novaconsole.engine.outcomes import ItemOutcome, OutcomeStatus
    from novaconsole.observability.metrics import MetricsObserver
    from novaconsole.observability.tracing import TracingObserver

    class Discard(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    now = datetime.now(UTC)
    outcome = ItemOutcome("H", 1, OutcomeStatus.SUCCEEDED, 1, 0.001, None, now, now)
    done = OutcomeStatus.SUCCEEDED
    observers: dict[str, Observer] = {
        "Observer (no-op)": Observer(),
        "MetricsObserver": MetricsObserver({"H": 3}),
        "TracingObserver, API only": TracingObserver(),
        "TracingObserver, SDK": TracingObserver(provider.get_tracer("novaconsole")),
    }
    print(f"\nhooks alone, CPU µs per item ({items:,} items, one fetch per 1,000)")
    for name, observer in observers.items():
        started = process_time()
        for batch in range(items // 1000):
            token = observer.fetch_started("H")
            observer.fetch_finished("H", token, 1000, 0.001, None)
            for item in range(batch * 1000, batch * 1000 + 1000):
                token = observer.attempt_started("H", item, 1, 0.0)
                observer.attempt_finished("H", item, 1, token, 0.001, done, None)
                observer.item_finished(outcome)
        print(f"{name:32} {(process_time() - started) / items * 1e6:8.2f}")
    provider.shutdown()


if __name__ == "__main__":
    items = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    wanted = [name for name in VARIANTS if any(word in name for word in sys.argv[3:])]
    if sys.argv[3:]:
        VARIANTS = {name: VARIANTS[name] for name in wanted}  # only the variants named
    else:
        hooks_alone()
    anyio.run(main, items, count)
