"""OpenTelemetry spans of a real service, caught by the SDK's in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import anyio
import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra (and opentelemetry-sdk) is missing")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

from novaconsole import RetryPolicy
from novaconsole.observability.tracing import TracingObserver
from tests.engine.support import Item, Source, processing

pytestmark = pytest.mark.anyio


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


async def behaviour(item: Item, attempt: int) -> None:
    # A span the handler starts itself is a child of the attempt's span.
    with trace.get_tracer("handler-code").start_as_current_span("inside process"):
        if item.id == 2:
            raise ValueError("postgresql://app:hunter2@db/x said \x1b]0;owned\x07 no")


async def run_cycle(provider: TracerProvider, source: Source) -> None:
    service = (
        processing(retry=RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0))
        .add_handler(source.handler(), name="Toy")
        .build(observers=[TracingObserver(provider.get_tracer("novaconsole"))])
    )
    # The handler's own spans go to the global provider: set it for this test only.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trace, "get_tracer", provider.get_tracer)
        async with service.running(poll=False):
            await service.run_once()


def spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


async def test_a_span_per_fetch_and_per_attempt(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    await run_cycle(provider, Source(ids=[1, 2], behaviour=behaviour))

    (fetch,) = spans(exporter, "fetch Toy")
    assert fetch.attributes is not None
    assert fetch.attributes["novaconsole.handler"] == "Toy"
    assert fetch.attributes["novaconsole.items"] == 2
    assert fetch.status.status_code is StatusCode.UNSET

    attempts = spans(exporter, "process Toy")
    seen = sorted(
        (span.attributes["novaconsole.item_id"], span.attributes["novaconsole.attempt"],
         span.attributes["novaconsole.outcome"])
        for span in attempts
        if span.attributes is not None
    )  # fmt: skip
    assert seen == [("1", 1, "succeeded"), ("2", 1, "failed"), ("2", 2, "failed")]

    ok = next(s for s in attempts if s.attributes and s.attributes["novaconsole.item_id"] == "1")
    assert ok.status.status_code is StatusCode.UNSET
    assert not ok.events

    failed = [s for s in attempts if s.attributes and s.attributes["novaconsole.item_id"] == "2"]
    for span in failed:
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description is not None
        assert "hunter2" not in span.status.description
        (event,) = span.events
        assert event.name == "exception"
        assert event.attributes is not None
        assert event.attributes["exception.type"] == "ValueError"
        message = str(event.attributes["exception.message"])
        assert "app:***@db" in message and "hunter2" not in message
        assert "\x1b" not in message and "\\x1b" in message
        assert "hunter2" not in str(event.attributes["exception.stacktrace"])

    # The handler's span ran inside the attempt's span.
    for inner in spans(exporter, "inside process"):
        assert inner.parent is not None
        assert inner.parent.span_id in {s.context.span_id for s in attempts if s.context}


async def test_a_failed_fetch_records_the_exception(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    await run_cycle(provider, Source(ids=[1], fetch_error=ConnectionError("source is down")))
    (fetch,) = spans(exporter, "fetch Toy")
    assert fetch.status.status_code is StatusCode.ERROR
    assert [event.name for event in fetch.events] == ["exception"]
    assert not spans(exporter, "process Toy")


async def test_a_timed_out_attempt_is_an_error(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def hang(item: Item, attempt: int) -> None:
        await anyio.sleep_forever()

    source = Source(ids=[1], behaviour=hang)
    service = (
        processing(retry=RetryPolicy(max_attempts=1), item_timeout=0.05)
        .add_handler(source.handler(), name="Toy")
        .build(observers=[TracingObserver(provider.get_tracer("novaconsole"))])
    )
    async with service.running(poll=False):
        await service.run_once()
    (attempt,) = spans(exporter, "process Toy")
    assert attempt.attributes is not None
    assert attempt.attributes["novaconsole.outcome"] == "timed_out"
    assert attempt.status.status_code is StatusCode.ERROR


NOT_INSTALLED = textwrap.dedent(
    """
    import sys
    from importlib.abc import MetaPathFinder

    class NoOpenTelemetry(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, NoOpenTelemetry())

    import anyio
    from novaconsole import BackgroundProcessing
    from novaconsole.observability import add_tracing, instrumented

    class Handler:
        async def fetch_next(self, max_items):
            return []
        async def process(self, item):
            pass

    service = BackgroundProcessing().add_handler(Handler, name="H").build()

    async def main():
        async with instrumented(service), service.running(poll=False):
            await service.run_once()

    anyio.run(main)
    assert add_tracing(service) is False
    assert service._core.observers == (), service._core.observers
    unwanted = ("opentelemetry", "novaconsole.observability.tracing")
    loaded = [m for m in sys.modules if m.startswith(unwanted)]
    assert not loaded, loaded
    print("no tracing")
    """
)


@pytest.mark.slow  # a fresh interpreter, to hide the package
def test_nothing_at_all_without_opentelemetry() -> None:
    done = subprocess.run(
        [sys.executable, "-c", NOT_INSTALLED], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "no tracing"


GLOBAL_PROVIDER = textwrap.dedent(
    """
    import anyio
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from novaconsole import BackgroundProcessing
    from novaconsole.observability import instrumented

    class Handler:
        async def fetch_next(self, max_items):
            return [type("Item", (), {"id": 1})()]
        async def process(self, item):
            pass

    service = BackgroundProcessing().add_handler(Handler, name="H").build()
    exporter = InMemorySpanExporter()

    async def main():
        async with instrumented(service), service.running(poll=False):
            await service.run_once()  # no provider yet: no spans at all
            print("before:", len(exporter.get_finished_spans()))
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            trace.set_tracer_provider(provider)
            await service.run_once()
            print("after:", sorted(s.name for s in exporter.get_finished_spans()))

    anyio.run(main)
    """
)


@pytest.mark.slow  # a fresh interpreter, for a clean global provider
def test_the_global_provider_is_used_once_the_application_sets_it() -> None:
    done = subprocess.run(
        [sys.executable, "-c", GLOBAL_PROVIDER], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["before: 0", "after: ['fetch H', 'process H']"]
