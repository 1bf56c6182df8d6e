"""Observer hooks: called around every fetch and attempt, once per outcome, never fatal."""

from __future__ import annotations

import contextvars
import logging
from typing import Any

import anyio
import pytest

from novaconsole import OutcomeStatus
from novaconsole.engine.observers import Observer
from novaconsole.engine.outcomes import ItemOutcome
from tests.engine.support import Item, Source, processing

pytestmark = pytest.mark.anyio

span: contextvars.ContextVar[str | None] = contextvars.ContextVar("span", default=None)


class Recorder(Observer):
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def fetch_started(self, handler: str) -> object | None:
        self.calls.append(("fetch_started", handler))
        return f"fetch-token-{handler}"

    def fetch_finished(
        self,
        handler: str,
        token: object | None,
        count: int,
        duration: float,
        error: BaseException | None,
    ) -> None:
        self.calls.append(("fetch_finished", handler, token, count, type(error).__name__))

    def attempt_started(
        self, handler: str, item_id: object, attempt: int, queue_wait: float
    ) -> object | None:
        assert queue_wait >= 0
        return span.set(f"{handler}:{item_id}#{attempt}")

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
        assert isinstance(token, contextvars.Token)
        self.calls.append(("attempt", item_id, attempt, status.value, type(error).__name__))
        span.reset(token)

    def item_finished(self, outcome: ItemOutcome) -> None:
        self.calls.append(("item", outcome.item_id, outcome.status.value))


async def test_hooks_follow_every_fetch_attempt_and_outcome() -> None:
    source = Source(ids=[1, 2, 3])
    seen_in_process: list[str | None] = []

    async def behaviour(item: Item, attempt: int) -> None:
        seen_in_process.append(span.get())
        if item.id == 2 and attempt == 1:
            raise ValueError("first try fails")
        if item.id == 3:
            await anyio.sleep_forever()  # times out

    source.behaviour = behaviour
    recorder = Recorder()
    service = (
        processing(max_concurrency=1, item_timeout=0.05)
        .add_handler(source.handler(), name="Obs", max_items_per_cycle=3, max_attempts=2)
        .build()
    )
    service.add_observer(recorder)
    async with service.running(poll=False):
        await service.run_once()
    assert span.get() is None  # every token was reset in the task that set it
    calls = recorder.calls
    assert calls[:2] == [
        ("fetch_started", "Obs"),
        ("fetch_finished", "Obs", "fetch-token-Obs", 3, "NoneType"),
    ]
    attempts = sorted(call for call in calls if call[0] == "attempt")
    assert attempts == [
        ("attempt", 1, 1, "succeeded", "NoneType"),
        ("attempt", 2, 1, "failed", "ValueError"),
        ("attempt", 2, 2, "succeeded", "NoneType"),
        ("attempt", 3, 1, "timed_out", "TimeoutError"),
        ("attempt", 3, 2, "timed_out", "TimeoutError"),
    ]
    items = sorted(call for call in calls if call[0] == "item")
    assert items == [("item", 1, "succeeded"), ("item", 2, "succeeded"), ("item", 3, "timed_out")]
    assert sorted(s for s in seen_in_process if s) == [
        "Obs:1#1",
        "Obs:2#1",
        "Obs:2#2",
        "Obs:3#1",
        "Obs:3#2",
    ]


async def test_a_failed_fetch_reaches_fetch_finished_with_its_error() -> None:
    source = Source(ids=[1], fetch_error=RuntimeError("source down"))
    recorder = Recorder()
    service = processing().add_handler(source.handler(), name="Down").build(observers=[recorder])
    async with service.running(poll=False):
        await service.run_once()
    assert recorder.calls == [
        ("fetch_started", "Down"),
        ("fetch_finished", "Down", "fetch-token-Down", 0, "RuntimeError"),
    ]


class Broken(Observer):
    def fetch_started(self, handler: str) -> object | None:
        raise RuntimeError("broken observer")

    def fetch_finished(self, *args: Any) -> None:
        raise RuntimeError("broken observer")

    def attempt_started(self, *args: Any) -> object | None:
        raise RuntimeError("broken observer")

    def attempt_finished(self, *args: Any) -> None:
        raise RuntimeError("broken observer")

    def item_finished(self, outcome: ItemOutcome) -> None:
        raise RuntimeError("broken observer")


async def test_an_observer_that_raises_never_stops_the_engine(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = Source(ids=list(range(5)))
    recorder = Recorder()
    service = (
        processing().add_handler(source.handler(), name="Robust", max_items_per_cycle=5).build()
    )
    service.add_observer(Broken())
    service.add_observer(recorder)  # observers after a broken one are still called
    with caplog.at_level(logging.ERROR, logger="novaconsole.engine"):
        async with service.running(poll=False):
            report = await service.run_once()
            await service.run_once()
    assert report.succeeded == 5
    assert len([c for c in recorder.calls if c[0] == "item"]) == 5
    complaints = [r for r in caplog.records if "observer Broken" in r.getMessage()]
    hooks = sorted(r.getMessage().split(".")[1].split(" ")[0] for r in complaints)
    assert hooks == [
        "attempt_finished",
        "attempt_started",
        "fetch_finished",
        "fetch_started",
        "item_finished",
    ]
