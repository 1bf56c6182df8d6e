"""The processing cycle: fairness, bounds, isolation, timeouts and retries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from novaconsole import OutcomeStatus, RetryPolicy
from novaconsole.engine.events import FetchCompleted, ItemFinished
from novaconsole.engine.persistence import MemoryStateStore
from tests.engine.support import Item, Source, next_event, processing

pytestmark = pytest.mark.anyio


async def test_a_small_handler_is_not_kept_behind_a_slow_backlog() -> None:
    slow, quick = Source(ids=list(range(200))), Source(ids=list(range(1000, 1005)))
    release = anyio.Event()

    async def blocked(item: Item, attempt: int) -> None:
        await release.wait()

    slow.behaviour = blocked
    service = (
        processing(max_concurrency=2)
        .add_handler(slow.handler(), name="Slow", max_items_per_cycle=200)
        .add_handler(quick.handler(), name="Quick", max_items_per_cycle=5)
        .build()
    )
    async with service.running():
        events = service.events()
        done = 0
        while done < 5:
            event = await next_event(events, lambda e: isinstance(e, ItemFinished))
            assert isinstance(event, ItemFinished)
            assert event.handler == "Quick"
            done += 1
        # Every quick item finished while the slow handler's first items still block.
        view = service.snapshot().handlers["Slow"]
        assert view.succeeded == 0
        assert view.in_flight + view.queued == 200
        release.set()
    assert service.snapshot().handlers["Quick"].succeeded == 5


async def test_a_handler_alone_may_use_every_worker() -> None:
    source = Source(ids=list(range(10)))
    started, release = [], anyio.Event()
    all_started = anyio.Event()

    async def blocked(item: Item, attempt: int) -> None:
        started.append(item.id)
        if len(started) == 4:
            all_started.set()
        await release.wait()

    source.behaviour = blocked
    service = processing(max_concurrency=4).add_handler(source.handler(), name="A").build()
    async with service.running():
        with anyio.fail_after(5):
            await all_started.wait()
        assert service.snapshot().in_flight == 4
        release.set()


async def test_the_queue_never_holds_more_than_its_capacity() -> None:
    source = Source(ids=list(range(50)))
    depths: list[int] = []
    entered, gate = anyio.Event(), anyio.Event()
    service = (
        processing(max_concurrency=1, queue_capacity=5)
        .add_handler(source.handler(), name="A", max_items_per_cycle=50)
        .build()
    )

    async def record_depth(item: Item, attempt: int) -> None:
        depths.append(service.snapshot().queue_depth)
        if item.id == 0:
            entered.set()
            await gate.wait()

    source.behaviour = record_depth
    async with service.running(poll=False), anyio.create_task_group() as group:
        group.start_soon(service.run_once)
        with anyio.fail_after(5):
            await entered.wait()
        await anyio.wait_all_tasks_blocked()
        # The fetch is waiting for room: 1 in flight, 5 queued, 44 not admitted yet.
        snap = service.snapshot()
        assert (snap.in_flight, snap.queue_depth) == (1, 5)
        gate.set()
    assert len(depths) == 50
    assert max(depths) <= 5


async def test_a_fetch_that_raises_affects_no_other_handler() -> None:
    broken, healthy = Source(fetch_error=RuntimeError("source down")), Source(ids=[1, 2])
    service = (
        processing()
        .add_handler(broken.handler(), name="Broken")
        .add_handler(healthy.handler(), name="Healthy")
        .build()
    )
    async with service.running(poll=False):
        report = await service.run_once()
        assert report.fetch_errors == {"Broken": "RuntimeError: source down"}
        assert [o.status for o in report.outcomes] == [OutcomeStatus.SUCCEEDED] * 2
        view = service.snapshot().handlers["Broken"]
        assert view.state == "failing"
        assert view.last_error == "RuntimeError: source down"
        assert service.is_running
        broken.fetch_error = None
        broken.ids = [7]
        report = await service.run_once()
        assert report.ok
        assert service.snapshot().handlers["Broken"].state == "active"


async def test_a_fetch_that_hangs_is_cut_off_at_fetch_timeout() -> None:
    hung, healthy = Source(fetch_hangs=True), Source(ids=[1])
    service = (
        processing(fetch_timeout=0.2)
        .add_handler(hung.handler(), name="Hung")
        .add_handler(healthy.handler(), name="Healthy")
        .build()
    )
    async with service.running(poll=False):
        with anyio.fail_after(5):
            report = await service.run_once()
    assert report.fetch_errors == {"Hung": "fetch timed out after 0.2s"}
    assert [(o.handler, o.status) for o in report.outcomes] == [
        ("Healthy", OutcomeStatus.SUCCEEDED)
    ]


async def test_an_item_that_hangs_times_out_and_its_worker_carries_on() -> None:
    source = Source(ids=[1, 2])

    async def hang_on_one(item: Item, attempt: int) -> None:
        if item.id == 1:
            await anyio.sleep_forever()

    source.behaviour = hang_on_one
    service = (
        processing(item_timeout=0.1, max_concurrency=1, retry=RetryPolicy(max_attempts=1))
        .add_handler(source.handler(), name="A")
        .build()
    )
    async with service.running(poll=False):
        report = await service.run_once()
    statuses = {o.item_id: (o.status, o.error) for o in report.outcomes}
    assert statuses[1] == (OutcomeStatus.TIMED_OUT, "TimeoutError: timed out after 0.1s")
    assert statuses[2] == (OutcomeStatus.SUCCEEDED, None)


async def test_a_retry_waits_without_holding_the_only_worker() -> None:
    source = Source(ids=[1, 2])

    async def fail_twice(item: Item, attempt: int) -> None:
        if item.id == 1 and attempt < 3:
            raise ValueError(f"attempt {attempt}")

    source.behaviour = fail_twice
    service = (
        processing(max_concurrency=1, retry=RetryPolicy(3, base_delay=0.1, max_delay=0.2))
        .add_handler(source.handler(), name="A")
        .build()
    )
    async with service.running(poll=False):
        report = await service.run_once()
    by_id = {o.item_id: o for o in report.outcomes}
    assert by_id[1].status is OutcomeStatus.SUCCEEDED
    assert by_id[1].attempts == 3
    assert [a.error for a in by_id[1].history] == [
        "ValueError: attempt 1",
        "ValueError: attempt 2",
        None,
    ]
    assert source.order.index("2#1") < source.order.index("1#2"), source.order


async def test_exhausted_retries_call_on_failure_once_then_the_item_is_skipped() -> None:
    source = Source(ids=[1], consume=False)

    async def always(item: Item, attempt: int) -> None:
        raise RuntimeError("still broken")

    source.behaviour = always
    service = processing().add_handler(source.handler(), name="A").build()
    async with service.running(poll=False):
        first = await service.run_once()
        assert [(o.status, o.attempts) for o in first.outcomes] == [(OutcomeStatus.FAILED, 3)]
        assert "RuntimeError: still broken" in (first.outcomes[0].traceback or "")
        assert source.failures_seen == [(1, "still broken")]

        second = await service.run_once()
        assert [o.status for o in second.outcomes] == [OutcomeStatus.SKIPPED]
        assert source.attempts[1] == 3, "a dead item is not processed again"
        assert source.failures_seen == [(1, "still broken")]

        assert await service.retry_item("A", 1)
        source.behaviour = lambda item, attempt: anyio.lowlevel.checkpoint()
        third = await service.run_once()
        assert [o.status for o in third.outcomes] == [OutcomeStatus.SUCCEEDED]


async def test_an_item_in_progress_is_not_taken_again_by_a_later_fetch() -> None:
    source = Source(ids=[1], consume=False)
    retried = anyio.Event()

    async def fail_once(item: Item, attempt: int) -> None:
        if attempt == 1:
            raise ValueError("first try")
        retried.set()

    source.behaviour = fail_once
    service = (
        processing(poll_interval=0, retry=RetryPolicy(3, base_delay=0.3, max_delay=0.3))
        .add_handler(source.handler(), name="A")
        .build()
    )
    async with service.running():
        events = service.events()
        # While item 1 waits for its retry, the handler is polled again and returns it.
        await next_event(events, lambda e: isinstance(e, FetchCompleted))
        await next_event(events, lambda e: isinstance(e, FetchCompleted))
        with anyio.fail_after(5):
            await retried.wait()
        service.pause()
    assert source.order[:2] == ["1#1", "1#2"]
    assert len(source.fetch_sizes) >= 2


async def test_per_handler_poll_interval() -> None:
    often, rarely = Source(ids=[]), Source(ids=[])
    service = (
        processing(poll_interval=3600)
        .add_handler(often.handler(), name="Often", poll_interval=0.02)
        .add_handler(rarely.handler(), name="Rarely")
        .build()
    )
    async with service.running():
        events = service.events()
        for _ in range(4):
            await next_event(
                events, lambda e: isinstance(e, FetchCompleted) and e.handler == "Often"
            )
    assert len(often.fetch_sizes) >= 4
    assert len(rarely.fetch_sizes) == 1


async def test_startup_delay_holds_the_first_fetch() -> None:
    source = Source(ids=[1])
    service = processing(startup_delay=0.3).add_handler(source.handler(), name="A").build()
    async with service.running():
        started = anyio.current_time()
        with anyio.fail_after(5):
            await source.fetched.wait()
        assert anyio.current_time() - started >= 0.25


async def test_items_without_an_id_fail_the_fetch_not_the_service() -> None:
    class NoIds:
        async def fetch_next(self, max_items: int) -> list[object]:
            return [object()]

        async def process(self, item: object) -> None:
            raise AssertionError("never processed")

    service = processing().add_handler(NoIds, name="NoIds").build()
    async with service.running(poll=False):
        report = await service.run_once()
    assert "has no id" in report.fetch_errors["NoIds"]
    assert report.outcomes == []


async def test_a_timeout_the_handler_wraps_gets_one_outcome_and_the_worker_carries_on() -> None:
    source = Source(ids=[1, 2])

    async def wraps_cancellation(item: Item, attempt: int) -> None:
        if item.id == 1:
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                raise RuntimeError("driver error while cancelled") from None

    source.behaviour = wraps_cancellation
    service = (
        processing(item_timeout=0.05, max_concurrency=1, retry=RetryPolicy(max_attempts=1))
        .add_handler(source.handler(), name="A")
        .build()
    )
    async with service.running(poll=False):
        report = await service.run_once()
    assert sorted((o.item_id, o.status) for o in report.outcomes) == [
        (1, OutcomeStatus.TIMED_OUT),
        (2, OutcomeStatus.SUCCEEDED),
    ]


async def test_a_store_that_fails_while_admitting_items_fails_the_fetch_not_the_service() -> None:
    class FlakyStore(MemoryStateStore):
        broken = True

        async def item_states(self, handler: str, item_ids: Iterable[str]) -> Mapping[str, Any]:
            if self.broken:
                raise OSError("database is locked")
            return await super().item_states(handler, item_ids)

    store = FlakyStore()
    service = processing().add_handler(Source(ids=[1]).handler(), name="A").build(store=store)
    async with service.running(poll=False):
        first = await service.run_once()
        store.broken = False
        second = await service.run_once()
    assert first.fetch_errors == {"A": "admitting items: OSError: database is locked"}
    assert [o.status for o in second.outcomes] == [OutcomeStatus.SUCCEEDED]


async def test_a_per_handler_poll_interval_of_zero_is_honoured() -> None:
    source = Source(ids=[])
    service = (
        processing(poll_interval=3600).add_handler(source.handler(), name="A", poll_interval=0)
    ).build()
    async with service.running():
        events = service.events()
        for _ in range(3):
            await next_event(events, lambda e: isinstance(e, FetchCompleted))
    assert len(source.fetch_sizes) >= 3
