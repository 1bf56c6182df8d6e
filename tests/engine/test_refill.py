"""A full batch says more work is waiting: the handler is fetched again once half of the batch
is through, not after the whole batch and a poll interval (issue 16); at once when the fetch
left out what is taken (``ctx.unclaimed()``, ``ctx.in_flight_ids()``) and no other worker
fetches, since the next fetch cannot bring the same items back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from novaconsole import HandlerContext, ProcessingService
from novaconsole.store import open_store
from tests.engine.support import Item, processing
from tests.faults.process_support import until

pytestmark = pytest.mark.anyio


async def test_a_fetch_that_leaves_out_what_is_taken_is_followed_at_once() -> None:
    pending = list(range(1, 13))
    fetches: list[list[int]] = []
    ended_before_second_fetch: list[int] = []
    ended: list[int] = []
    gate = anyio.Event()
    second_fetch = anyio.Event()

    class Source:
        def __init__(self, ctx: HandlerContext) -> None:
            self.ctx = ctx

        async def fetch_next(self, max_items: int) -> Sequence[Item]:
            taken = set(self.ctx.in_flight_ids())
            ids = [i for i in pending if i not in taken][:max_items]
            fetches.append(ids)
            if len(fetches) == 2:
                ended_before_second_fetch.extend(ended)
                second_fetch.set()
            return [Item(i) for i in ids]

        async def process(self, item: Item) -> None:
            try:
                await gate.wait()
            finally:  # through, or cancelled by its timeout
                ended.append(item.id)
            pending.remove(item.id)

    # An hour between polls, and no item through: only the refill can fetch again.
    service = (
        processing(poll_interval=3600, max_concurrency=4)
        .add_handler(Source, name="Source", max_items_per_cycle=4)
        .build()
    )
    async with service.running():
        with anyio.fail_after(60):  # a hang guard, not a measurement
            await second_fetch.wait()
        assert fetches[:2] == [[1, 2, 3, 4], [5, 6, 7, 8]]
        assert ended_before_second_fetch == []
        gate.set()


async def test_in_a_fleet_a_fetch_that_leaves_out_what_is_taken_waits_for_half(
    tmp_path: Path,
) -> None:
    # Two workers on the same query would fetch the same head of it at once: one of them
    # would get nothing for its round trips.
    url = f"sqlite+aiosqlite:///{tmp_path / 'fleet.db'}"
    fetches: list[list[int]] = []
    done: set[int] = set()
    fleet_seen = anyio.Event()
    halves = {1: anyio.Event(), 2: anyio.Event()}
    second_fetch = anyio.Event()

    class Source:
        def __init__(self, ctx: HandlerContext) -> None:
            self.ctx = ctx

        async def fetch_next(self, max_items: int) -> Sequence[Item]:
            await fleet_seen.wait()
            taken = done | set(self.ctx.in_flight_ids())
            ids = [i for i in range(1, 13) if i not in taken][:max_items]
            fetches.append(ids)
            if len(fetches) == 2:
                second_fetch.set()
            return [Item(i) for i in ids]

        async def process(self, item: Item) -> None:
            await halves[1 if item.id <= 2 else 2].wait()
            done.add(item.id)

    class Nothing:
        async def fetch_next(self, max_items: int) -> Sequence[Item]:
            return []

        async def process(self, item: Item) -> None:
            return None

    def worker(name: str, handler: type) -> ProcessingService:
        return (
            processing(max_concurrency=4, lease_duration=3)  # a heartbeat every second
            .add_handler(handler, name=handler.__name__, max_items_per_cycle=4)
            .build(store=open_store(url, shared=True), worker_id=name)
        )

    other, service = worker("other", Nothing), worker("this", Source)
    async with other.running(), service.running():
        await until(lambda: len(service.snapshot().workers) == 2, "a heartbeat naming both")
        fleet_seen.set()
        with anyio.fail_after(60):  # a hang guard, not a measurement
            await anyio.wait_all_tasks_blocked()
            assert fetches == [[1, 2, 3, 4]]  # every item running, none through: no fetch
            halves[1].set()
            await second_fetch.wait()
        assert fetches[1] == [5, 6, 7, 8]
        halves[2].set()


async def test_a_full_batch_is_refilled_once_half_of_it_is_through() -> None:
    fetches: list[list[int]] = []
    done: list[int] = []
    first_half = anyio.Event()
    second_half = anyio.Event()
    second_fetch = anyio.Event()

    class Cursor:
        """A source that moves on by itself (a cursor), without asking what is taken."""

        next_id = 1

        async def fetch_next(self, max_items: int) -> Sequence[Item]:
            ids = list(range(Cursor.next_id, Cursor.next_id + max_items))
            Cursor.next_id += max_items
            fetches.append(ids)
            if len(fetches) == 2:
                second_fetch.set()
            return [Item(i) for i in ids]

        async def process(self, item: Item) -> None:
            await (first_half if item.id <= 2 else second_half).wait()
            done.append(item.id)

    service = (
        processing(poll_interval=3600, max_concurrency=4)
        .add_handler(Cursor, name="Cursor", max_items_per_cycle=4)
        .build()
    )
    async with service.running():
        with anyio.fail_after(60):  # a hang guard, not a measurement
            await anyio.wait_all_tasks_blocked()
            assert fetches == [[1, 2, 3, 4]]  # every item running, none through: no fetch
            first_half.set()
            await second_fetch.wait()
        assert sorted(done) == [1, 2]
        assert fetches[1] == [5, 6, 7, 8]
        second_half.set()


async def test_a_short_batch_waits_for_the_poll_interval() -> None:
    fetched = anyio.Event()
    calls: list[int] = []

    class Short:
        async def fetch_next(self, max_items: int) -> Sequence[Item]:
            calls.append(max_items)
            fetched.set()
            return [Item(1), Item(2)]

        async def process(self, item: Item) -> None:
            return None

    service = (
        processing(poll_interval=3600)
        .add_handler(Short, name="Short", max_items_per_cycle=4)
        .build()
    )
    async with service.running():
        await fetched.wait()
        await service.run_once()  # both items through (and a forced fetch of its own)
    assert len(calls) == 2
