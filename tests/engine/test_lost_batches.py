"""A worker whose full batch other workers had all claimed fetches again soon, not after its
poll interval, and backs off while the batch stays taken (issue 16: B7's drain)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from time import monotonic

import anyio
import pytest

from novaconsole import HandlerContext, ProcessingService
from novaconsole.engine.fetching import LOST_BATCH_RETRY
from novaconsole.store import open_store
from tests.engine.support import Item, processing

pytestmark = pytest.mark.anyio

BATCH = 4


class Source:
    """Items 1 to 8, of which worker ``a`` holds 1 to 4 (item 1 waits at ``gate``)."""

    def __init__(self) -> None:
        self.a_started = anyio.Event()
        self.gate = anyio.Event()
        self.b_fetches: list[float] = []
        self.b_fetched_5 = anyio.Event()
        self.b_done: list[int] = []
        self.b_got_new = anyio.Event()

    def handler(self, worker: str, moves_on: bool) -> type:
        source = self

        class Head:
            """The head of the pending items; ``moves_on``: the source leaves out what is
            claimed after b's first fetch (as ``ctx.unclaimed()`` does)."""

            def __init__(self, ctx: HandlerContext) -> None:
                self.ctx = ctx

            async def fetch_next(self, max_items: int) -> Sequence[Item]:
                if worker == "a":
                    return [Item(i) for i in range(1, 5)][:max_items]
                source.b_fetches.append(monotonic())
                if len(source.b_fetches) == 5:
                    source.b_fetched_5.set()
                first = moves_on and len(source.b_fetches) > 1
                return [Item(i) for i in (range(5, 9) if first else range(1, 5))][:max_items]

            async def process(self, item: Item) -> None:
                if worker == "a":
                    if item.id == 1:
                        source.a_started.set()
                        await source.gate.wait()
                    return
                source.b_done.append(item.id)
                if len(source.b_done) == BATCH:
                    source.b_got_new.set()

        return Head

    def worker(self, url: str, name: str, moves_on: bool = False) -> ProcessingService:
        return (
            processing(max_concurrency=1, lease_duration=30)  # poll interval: an hour
            .add_handler(self.handler(name, moves_on), name="Head", max_items_per_cycle=BATCH)
            .build(store=open_store(url, shared=True), worker_id=name)
        )


async def test_a_worker_that_lost_a_full_batch_fetches_again_soon(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fleet.db'}"
    source = Source()
    a = source.worker(url, "a")
    b = source.worker(url, "b", moves_on=True)
    async with a.running():
        with anyio.fail_after(10):  # hang guards, not measurements
            await source.a_started.wait()  # a holds 1 to 4
            async with b.running():
                # b's first fetch returns 1 to 4, all a's: it fetches again well before its
                # hour-long poll interval, and takes the rows the source has moved on to.
                await source.b_got_new.wait()
        source.gate.set()
    assert sorted(source.b_done) == [5, 6, 7, 8]
    assert len(source.b_fetches) >= 2


async def test_a_worker_backs_off_while_the_batch_it_lost_stays_taken(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fleet.db'}"
    source = Source()
    a = source.worker(url, "a")
    b = source.worker(url, "b")  # its source returns a's rows again and again
    async with a.running():
        with anyio.fail_after(10):
            await source.a_started.wait()
            async with b.running():
                await source.b_fetched_5.wait()
        source.gate.set()
    assert source.b_done == []
    # The waits double (5, 10, 20, 40 ms): no faster, whatever the machine's load.
    gaps = [later - earlier for earlier, later in pairwise(source.b_fetches)]
    for number, gap in enumerate(gaps[:4]):
        assert gap >= LOST_BATCH_RETRY * 2**number * 0.9, gaps
