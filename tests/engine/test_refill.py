"""A full batch says more work is waiting: the handler is fetched again once half of the batch
is through, not after the whole batch and a poll interval (issue 16). Sooner, as soon as a
slot finds nothing to take, when the fetch left out what is taken (``ctx.unclaimed()``,
``ctx.in_flight_ids()``), the store's database is a server, and no other worker fetches."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import pytest

from novaconsole import HandlerContext, ProcessingService
from novaconsole.engine import fetching
from novaconsole.store import open_store
from tests.engine.support import Item, processing
from tests.faults.process_support import until
from tests.postgres import throwaway_database

pytestmark = pytest.mark.anyio


class Source:
    """Items 1 to 12. Items 1 and 2 wait for ``first_half``, the others for ``gate``. A fetch
    waits for ``go``; ``asks``: it leaves out what is taken (``ctx.in_flight_ids()``), else the
    source moves on by itself (a cursor)."""

    def __init__(self, asks: bool) -> None:
        self.asks = asks
        self.go = anyio.Event()
        self.first_half = anyio.Event()
        self.gate = anyio.Event()
        self.second_fetch = anyio.Event()
        self.fetches: list[list[int]] = []
        self.started: list[int] = []
        self.all_started = anyio.Event()
        self.ended: list[int] = []
        """Items through, or cancelled by their timeout."""
        self.ended_at_fetch: list[list[int]] = []

    def handler(self) -> type:
        source = self

        class Numbers:
            def __init__(self, ctx: HandlerContext) -> None:
                self.ctx = ctx

            async def fetch_next(self, max_items: int) -> Sequence[Item]:
                source.ended_at_fetch.append(list(source.ended))
                await source.go.wait()
                if source.asks:
                    taken = set(source.ended) | set(self.ctx.in_flight_ids())
                else:
                    taken = {i for fetch in source.fetches for i in fetch}
                ids = [i for i in range(1, 13) if i not in taken][:max_items]
                source.fetches.append(ids)
                if len(source.fetches) == 2:
                    source.second_fetch.set()
                return [Item(i) for i in ids]

            async def process(self, item: Item) -> None:
                source.started.append(item.id)
                if len(source.started) == 4:
                    source.all_started.set()
                try:
                    await (source.first_half if item.id <= 2 else source.gate).wait()
                finally:
                    source.ended.append(item.id)

        return Numbers


def _worker(
    source: type, store_url: str | None, name: str, concurrency: int = 4
) -> ProcessingService:
    builder = processing(max_concurrency=concurrency, lease_duration=3).add_handler(
        source,
        name=source.__name__,
        max_items_per_cycle=4,  # a heartbeat every second
    )
    if store_url is None:
        return builder.build()
    return builder.build(store=open_store(store_url), worker_id=name)


class Nothing:
    async def fetch_next(self, max_items: int) -> Sequence[Item]:
        return []

    async def process(self, item: Item) -> None:
        return None


@asynccontextmanager
async def _running(
    source: Source, store: str, tmp_path: Path, concurrency: int = 4
) -> AsyncIterator[None]:
    """The source's worker running on ``store`` (``memory``, ``sqlite``, ``postgresql`` alone,
    or ``fleet``: on PostgreSQL beside another worker) with ``concurrency`` slots for its
    batches of 4, its fetches let through once its heartbeat has named every worker."""
    async with AsyncExitStack() as stack:
        url: str | None = None
        if store == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        elif store in ("postgresql", "fleet"):
            url = await stack.enter_async_context(throwaway_database("novaconsole_refill"))
        workers = 1
        if store == "fleet":
            assert url is not None
            workers = 2
            await stack.enter_async_context(_worker(Nothing, url, "other").running())
        service = _worker(source.handler(), url, "this", concurrency)
        await stack.enter_async_context(service.running())
        if url is not None and url.startswith("postgresql"):
            await until(lambda: len(service.snapshot().workers) == workers, "a heartbeat")
        source.go.set()
        yield


async def test_a_fetch_that_leaves_out_what_is_taken_is_followed_once_a_slot_idles(
    tmp_path: Path,
) -> None:
    source = Source(asks=True)
    async with _running(source, "postgresql", tmp_path, concurrency=8):  # 4 slots left idle
        with anyio.fail_after(60):  # a hang guard, not a measurement
            await source.second_fetch.wait()  # only the refill can: an hour between polls
        assert source.fetches[:2] == [[1, 2, 3, 4], [5, 6, 7, 8]]
        assert source.ended_at_fetch[1] == []  # every item of the first batch still running
        source.first_half.set()
        source.gate.set()


@pytest.mark.parametrize(
    ("store", "asks", "concurrency"),
    [
        ("memory", False, 8),  # the source does not ask what is taken
        ("sqlite", True, 8),  # in this process: fetching sooner competes with the writer
        ("fleet", True, 8),  # the other worker would fetch the same rows at the same time
        ("postgresql", True, 4),  # every slot busy: no fetching ahead, no claims held idle
    ],
)
async def test_a_full_batch_is_refilled_once_half_of_it_is_through(
    store: str, asks: bool, concurrency: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The database's clock read once: a fetch then starts with no round trip, so that one
    # started too soon has called fetch_next by the time every task waits.
    monkeypatch.setattr(fetching, "CLOCK_READ_EVERY", 3600.0)
    source = Source(asks)
    async with _running(source, store, tmp_path, concurrency):
        with anyio.fail_after(60):  # a hang guard, not a measurement
            await source.all_started.wait()
            await anyio.wait_all_tasks_blocked()
            assert source.fetches == [[1, 2, 3, 4]]  # every item running, none through
            source.first_half.set()
            await source.second_fetch.wait()
        assert sorted(source.ended_at_fetch[1]) == [1, 2]
        assert source.fetches[1] == [5, 6, 7, 8]
        source.gate.set()


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
