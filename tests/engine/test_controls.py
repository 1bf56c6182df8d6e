"""The control API: pause, run once, batch size, concurrency, shutdown, events, snapshot."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from novaconsole import HandlerPurpose, OutcomeStatus
from novaconsole.engine.events import (
    ControlChanged,
    EventHub,
    EventsDropped,
    FetchCompleted,
    ItemFinished,
    ServiceStateChanged,
)
from novaconsole.engine.persistence import MemoryStateStore
from tests.engine.support import Item, Source, next_event, processing

pytestmark = pytest.mark.anyio


async def test_pause_stops_fetching_run_once_still_works_and_resume_restarts() -> None:
    source = Source(ids=[1, 2], consume=False)
    service = processing(poll_interval=0.01).add_handler(source.handler(), name="A").build()
    service.pause()
    async with service.running():
        assert service.snapshot().state == "paused"
        await anyio.sleep(0.1)  # several poll intervals: a paused service fetches nothing
        assert source.fetch_sizes == []

        report = await service.run_once()
        assert [o.status for o in report.outcomes] == [OutcomeStatus.SUCCEEDED] * 2
        assert len(source.fetch_sizes) == 1

        events = service.events()
        service.resume()
        assert service.snapshot().state == "running"
        await next_event(events, lambda e: isinstance(e, FetchCompleted))
        await next_event(events, lambda e: isinstance(e, FetchCompleted))
    assert len(source.fetch_sizes) >= 3


async def test_pause_stops_queued_items_from_starting() -> None:
    source = Source(ids=list(range(5)))
    entered, gate = anyio.Event(), anyio.Event()

    async def first_blocks(item: Item, attempt: int) -> None:
        if item.id == 0:
            entered.set()
            await gate.wait()

    source.behaviour = first_blocks
    service = (
        processing(max_concurrency=1)
        .add_handler(source.handler(), name="A", max_items_per_cycle=5)
        .build()
    )
    async with service.running():
        with anyio.fail_after(5):
            await entered.wait()
        service.pause()
        gate.set()
        events = service.events()
        await next_event(events, lambda e: isinstance(e, ItemFinished))
        await anyio.sleep(0.05)
        snap = service.snapshot()
        assert (snap.succeeded, snap.queue_depth) == (1, 4), "queued items wait while paused"
        service.resume()
        for _ in range(4):
            await next_event(events, lambda e: isinstance(e, ItemFinished))
    assert source.order == ["0#1", "1#1", "2#1", "3#1", "4#1"]


async def test_a_paused_handler_is_left_out_while_others_run() -> None:
    paused, active = Source(ids=[1], consume=False), Source(ids=[2], consume=False)
    service = (
        processing(poll_interval=0.01)
        .add_handler(paused.handler(), name="Paused")
        .add_handler(active.handler(), name="Active")
        .build()
    )
    service.pause_handler("Paused")
    async with service.running():
        events = service.events()
        for _ in range(3):
            await next_event(events, lambda e: isinstance(e, FetchCompleted))
        report = await service.run_once()
        assert {o.handler for o in report.outcomes} == {"Active"}
        assert service.snapshot().handlers["Paused"].state == "paused"
        service.resume_handler("Paused")
        await next_event(events, lambda e: isinstance(e, FetchCompleted) and e.handler == "Paused")
    assert paused.fetch_sizes
    with pytest.raises(KeyError, match="no handler named 'Nope'"):
        service.pause_handler("Nope")


async def test_batch_size_applies_to_the_next_fetch() -> None:
    source = Source(ids=list(range(100)), consume=False)
    service = processing().add_handler(source.handler(), name="A", max_items_per_cycle=10).build()
    async with service.running(poll=False):
        assert len((await service.run_once()).outcomes) == 10
        service.set_batch_size("A", 3)
        assert len((await service.run_once()).outcomes) == 3
        view = service.snapshot().handlers["A"]
        assert (view.batch_size, view.configured_batch_size, view.batch_size_changed) == (
            3,
            10,
            True,
        )
    assert source.fetch_sizes == [10, 3]
    with pytest.raises(ValueError, match="at least 1"):
        service.set_batch_size("A", 0)


async def test_concurrency_changes_live() -> None:
    source = Source(ids=list(range(8)))
    release = anyio.Event()
    started: list[int] = []
    one_started, four_started = anyio.Event(), anyio.Event()

    async def blocked(item: Item, attempt: int) -> None:
        started.append(item.id)
        one_started.set()
        if len(started) == 4:
            four_started.set()
        await release.wait()

    source.behaviour = blocked
    service = (
        processing(max_concurrency=1)
        .add_handler(source.handler(), name="A", max_items_per_cycle=8)
        .build()
    )
    async with service.running():
        with anyio.fail_after(5):
            await one_started.wait()
        await anyio.wait_all_tasks_blocked()
        assert service.snapshot().in_flight == 1
        service.set_concurrency(4)
        with anyio.fail_after(5):
            await four_started.wait()
        snap = service.snapshot()
        assert (snap.in_flight, snap.concurrency, snap.configured_concurrency) == (4, 4, 1)
        service.set_concurrency(2)
        release.set()
        events = service.events()
        for _ in range(4):
            await next_event(events, lambda e: isinstance(e, ItemFinished))
        assert service.snapshot().in_flight <= 2


async def test_shutdown_lets_in_flight_items_finish() -> None:
    source = Source(ids=list(range(3)))
    entered, release = anyio.Event(), anyio.Event()

    async def slow_first(item: Item, attempt: int) -> None:
        if item.id == 0:
            entered.set()
            await release.wait()

    source.behaviour = slow_first
    service = (
        processing(max_concurrency=1)
        .add_handler(source.handler(), name="A", max_items_per_cycle=3)
        .build()
    )
    states: list[str] = []
    async with service.running():
        events = service.events()
        with anyio.fail_after(5):
            await entered.wait()
        async with anyio.create_task_group() as group:
            group.start_soon(service.drain)
            event = await next_event(events, lambda e: isinstance(e, ServiceStateChanged))
            assert isinstance(event, ServiceStateChanged)
            states.append(event.state)
            release.set()
    assert states == ["draining"]
    assert source.order == ["0#1"], "queued items stay pending at their source"
    assert service.snapshot().succeeded == 1
    assert service.snapshot().state == "stopped"


async def test_shutdown_grace_cancels_what_does_not_finish() -> None:
    source = Source(ids=[1])
    entered = anyio.Event()

    async def forever(item: Item, attempt: int) -> None:
        entered.set()
        await anyio.sleep_forever()

    source.behaviour = forever
    store = MemoryStateStore()
    service = (
        processing(shutdown_grace=0.1).add_handler(source.handler(), name="A").build(store=store)
    )
    with anyio.fail_after(5):
        async with service.running():
            await entered.wait()
    assert [(o.item_id, o.status) for o in store.outcomes] == [(1, OutcomeStatus.CANCELLED)]


async def test_events_carry_kind_handler_and_item_id() -> None:
    source = Source(ids=[1, 2])
    service = processing().add_handler(source.handler(), name="A").build()
    async with service.running(poll=False):
        events = service.events()
        await service.run_once()
        service.set_concurrency(3)
        seen = events.drain()
    finished = [e for e in seen if isinstance(e, ItemFinished)]
    assert {(e.kind, e.handler, e.item_id, e.status) for e in finished} == {
        ("item_finished", "A", 1, "succeeded"),
        ("item_finished", "A", 2, "succeeded"),
    }
    kinds = [e.kind for e in seen]
    assert kinds[0] == "cycle_started"
    assert "fetch_completed" in kinds
    assert "cycle_finished" in kinds
    assert [e for e in seen if isinstance(e, ControlChanged)] == [ControlChanged("concurrency", 3)]


async def test_a_slow_reader_loses_the_oldest_events_and_is_told() -> None:
    hub = EventHub()
    slow = hub.subscribe(max_buffer=5)
    for value in range(20):
        hub.publish(ControlChanged("concurrency", value))
    first = await slow.__anext__()
    assert first == EventsDropped(15)
    rest = [await slow.__anext__() for _ in range(5)]
    assert [e.value for e in rest if isinstance(e, ControlChanged)] == [15, 16, 17, 18, 19]


async def test_snapshot_lists_what_design_promises() -> None:
    source = Source(ids=[1])
    service = (
        processing(max_concurrency=3, queue_capacity=50)
        .add_handler(source.handler(), name="A", purpose=HandlerPurpose.EXPORT)
        .build()
    )
    async with service.running(poll=False):
        await service.run_once()
        snap = service.snapshot()
    assert (snap.paused, snap.concurrency, snap.queue_depth, snap.queue_capacity) == (
        False,
        3,
        0,
        50,
    )
    assert (snap.in_flight, snap.cycles) == (0, 1)
    view = snap.handlers["A"]
    assert (view.name, view.purpose, view.paused, view.enabled) == (
        "A",
        HandlerPurpose.EXPORT,
        False,
        True,
    )
    assert (view.batch_size, view.succeeded, view.failed, view.last_error) == (10, 1, 0, None)


async def test_controls_set_at_run_time_survive_a_restart_of_the_service() -> None:
    source = Source(ids=[])
    store = MemoryStateStore()
    build = processing().add_handler(source.handler(), name="A")
    first = build.build(store=store)
    async with first.running(poll=False):
        first.pause_handler("A")
        first.set_batch_size("A", 42)
        first.set_concurrency(5)
    second = build.build(store=store)
    async with second.running(poll=False):
        snap = second.snapshot()
    assert (snap.concurrency, snap.handlers["A"].paused, snap.handlers["A"].batch_size) == (
        5,
        True,
        42,
    )


async def test_disabled_handlers_are_never_fetched() -> None:
    source = Source(ids=[1])
    service = processing().add_handler(source.handler(), name="A", enabled=False).build()
    async with service.running(poll=False):
        report = await service.run_once()
    assert report.outcomes == []
    assert source.fetch_sizes == []
    assert service.snapshot().handlers["A"].state == "disabled"


async def test_shutdown_waits_for_a_fetch_under_way_then_cuts_it_off_at_the_grace() -> None:
    hung = Source(fetch_hangs=True)
    service = (
        processing(shutdown_grace=0.2, fetch_timeout=60)
        .add_handler(hung.handler(), name="Hung")
        .build()
    )
    with anyio.fail_after(5):
        async with service.running():
            await hung.fetched.wait()
            started = anyio.current_time()
        assert anyio.current_time() - started >= 0.2, "the fetch was given its grace"
    assert (
        service.snapshot().handlers["Hung"].last_error == "fetch cancelled: the service is stopping"
    )


async def test_a_run_once_cancelled_mid_fetch_still_closes_the_handlers_scope() -> None:
    closed = anyio.Event()
    entered = anyio.Event()

    class Slow:
        def __init__(self, ctx: Any) -> None:
            ctx.add_cleanup(closed.set)

        async def fetch_next(self, max_items: int) -> list[Item]:
            entered.set()
            await anyio.sleep_forever()
            return []

        async def process(self, item: Item) -> None:
            return None

    service = processing().add_handler(Slow, name="Slow").build()
    async with service.running(poll=False):
        async with anyio.create_task_group() as group:
            group.start_soon(service.run_once)
            with anyio.fail_after(5):
                await entered.wait()
            group.cancel_scope.cancel()
        assert closed.is_set(), "the scope's cleanup ran although its fetch was cancelled"
