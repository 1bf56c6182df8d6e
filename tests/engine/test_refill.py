"""A full batch says more work is waiting: the handler is fetched again once half of the batch
is through, not after the whole batch and a poll interval (issue 16). A source outside the
database leaves the in-flight items out with ``ctx.in_flight_ids()``."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from novaconsole import HandlerContext
from tests.engine.support import Item, processing

pytestmark = pytest.mark.anyio


async def test_a_full_batch_is_refilled_once_half_of_it_is_through() -> None:
    pending = list(range(1, 13))
    fetches: list[list[int]] = []
    slow_items = anyio.Event()
    second_fetch = anyio.Event()

    class Source:
        def __init__(self, ctx: HandlerContext) -> None:
            self.ctx = ctx

        async def fetch_next(self, max_items: int) -> Sequence[Item]:
            taken = set(self.ctx.in_flight_ids())
            ids = [i for i in pending if i not in taken][:max_items]
            fetches.append(ids)
            if len(fetches) == 2:
                second_fetch.set()
            return [Item(i) for i in ids]

        async def process(self, item: Item) -> None:
            if item.id in (3, 4):
                await slow_items.wait()
            pending.remove(item.id)

    # An hour between polls: only the refill can fetch again while 3 and 4 are in flight.
    service = (
        processing(poll_interval=3600, max_concurrency=4)
        .add_handler(Source, name="Source", max_items_per_cycle=4)
        .build()
    )
    async with service.running():
        with anyio.fail_after(60):  # a hang guard, not a measurement
            await second_fetch.wait()
        assert fetches[:2] == [[1, 2, 3, 4], [5, 6, 7, 8]]
        slow_items.set()


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
