"""Two fetches of one handler at once (the poll loop's and a run-once) that return the same
items: each item is admitted once, and the run-once waits for it instead of missing it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from novaconsole.engine.events import ItemFinished
from novaconsole.engine.outcomes import CycleReport
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


class FinishesWhileWaiting:
    """Row 1 stays pending at the source until its ``process`` (held by ``release``) ends."""

    done: set[int] = set()
    fetches = 0
    fetched_again = anyio.Event()
    running = anyio.Event()
    release = anyio.Event()
    processed: list[int] = []

    async def fetch_next(self, max_items: int) -> list[Row]:
        cls = type(self)
        cls.fetches += 1
        if cls.fetches == 2:
            cls.fetched_again.set()
        return [] if 1 in cls.done else [Row(1)]

    async def process(self, item: Row) -> None:
        cls = type(self)
        cls.running.set()
        await cls.release.wait()
        cls.done.add(item.id)
        cls.processed.append(item.id)


async def test_an_item_that_finishes_while_a_fetch_waits_to_be_admitted_runs_once() -> None:
    """A second fetch returns row 1 while it is in flight, then waits its turn to admit (the
    handler's admitting lock, held here as another fetch's admission would hold it); row 1
    finishes meanwhile. It must not be admitted again: the fetch read it before it was done.
    The run-once reports the outcome it finished with. Seen for real in a headless drain on
    SQLite, where admission waits for the start marks' commit: 42 of 600 rows processed twice
    by one worker."""
    cls = FinishesWhileWaiting
    cls.done, cls.processed, cls.fetches = set(), [], 0
    cls.fetched_again, cls.running, cls.release = anyio.Event(), anyio.Event(), anyio.Event()
    service = processing().add_handler(FinishesWhileWaiting, name="Once").build()
    events = service.events()
    admitting = service._core.runtimes["Once"].admitting  # the lock two admissions share
    reports: list[CycleReport] = []

    async def run_once() -> None:
        reports.append(await service.run_once())

    async with service.running(), anyio.create_task_group() as group:
        with anyio.fail_after(30):
            await cls.running.wait()  # row 1, from the first poll
            async with admitting:
                group.start_soon(run_once)  # fetches row 1 again, then waits here
                await cls.fetched_again.wait()
                await anyio.wait_all_tasks_blocked()
                assert admitting.statistics().tasks_waiting == 1
                cls.release.set()
                await next_event(events, lambda e: isinstance(e, ItemFinished))
            while service.snapshot().in_flight or service.snapshot().queue_depth:
                await next_event(events, lambda e: isinstance(e, ItemFinished))
    assert cls.processed == [1]
    assert [o.item_id for o in reports[0].outcomes] == [1]
