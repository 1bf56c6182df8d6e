"""Two fetches of one handler at once (the poll loop's and a run-once) that return the same
items: each item is admitted once, and the run-once waits for it instead of missing it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from novaconsole.engine.events import ItemFinished
from novaconsole.store.sql_store import SqlStore
from tests.engine.support import next_event, processing

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Row:
    id: int


class Overlapping:
    """The poll loop's fetch returns only after the run-once's fetch has returned: both
    then admit the same row at the same time."""

    fetches = 0
    poll_fetching = anyio.Event()
    run_once_fetched = anyio.Event()
    processed: list[int] = []

    async def fetch_next(self, max_items: int) -> list[Row]:
        cls = type(self)
        cls.fetches += 1
        if cls.fetches == 1:
            cls.poll_fetching.set()
            await cls.run_once_fetched.wait()
        else:
            cls.run_once_fetched.set()
        return [Row(1)] if not cls.processed else []

    async def process(self, item: Row) -> None:
        type(self).processed.append(item.id)


async def test_the_same_item_from_two_fetches_at_once_runs_once(tmp_path: Path) -> None:
    Overlapping.fetches, Overlapping.processed = 0, []
    Overlapping.poll_fetching, Overlapping.run_once_fetched = anyio.Event(), anyio.Event()
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'overlap.db'}")
    service = processing().add_handler(Overlapping, name="Overlap").build(store=store)
    events = service.events()
    async with service.running():
        with anyio.fail_after(30):
            await Overlapping.poll_fetching.wait()
            report = await service.run_once()
            while service.snapshot().in_flight or service.snapshot().queue_depth:
                # a second copy, if admitted, finishes before the test looks
                await next_event(events, lambda e: isinstance(e, ItemFinished))
    assert Overlapping.processed == [1]
    assert [o.item_id for o in report.outcomes] == [1]
