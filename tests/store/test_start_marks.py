"""Start marks (crash records) go through the store's single writer: committed before
``mark_started`` returns, in the writer's transaction rather than one of their own, and
removed in the transaction that writes their item's outcome."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import event

from novaconsole.engine.crashes import StartMark
from novaconsole.store import SqlStore, open_store
from novaconsole.store.database import READ_ONLY
from tests.factories import outcome
from tests.postgres import throwaway_database

pytestmark = pytest.mark.anyio


def marks(db_path: Path) -> list[tuple[str, str]]:
    """(handler, item id) of every mark, read by another connection (what is committed)."""
    with sqlite3.connect(db_path) as connection:
        rows = connection.execute("SELECT handler, item_id FROM novaconsole_started").fetchall()
    return sorted((str(handler), str(item_id)) for handler, item_id in rows)


async def marks_a_new_run_finds(url: str, keys: list[str]) -> dict[str, StartMark]:
    """The marks of ``Ping``'s ``keys`` that the next run, opened now, finds committed."""
    other = open_store(url)
    await other.open()
    try:
        return dict(await other.started_items("Ping", keys))
    finally:
        await other.close()


@asynccontextmanager
async def writing(store: SqlStore) -> AsyncIterator[None]:
    """The store's writer running, as in a running service."""
    async with anyio.create_task_group() as group:
        group.start_soon(store.run)
        await anyio.wait_all_tasks_blocked()
        yield
        group.cancel_scope.cancel()


async def test_marks_are_committed_by_the_writer_before_mark_started_returns(
    store: SqlStore, db_path: Path
) -> None:
    transactions: list[Any] = []  # write transactions begun through SQLAlchemy

    def begun(connection: Any) -> None:
        if not connection.get_execution_options().get(READ_ONLY, False):
            transactions.append(connection)

    event.listen(store.engine.sync_engine, "begin", begun)
    async with writing(store):
        await store.mark_started("Ping", {"1": 0, "2": 0})
        assert marks(db_path) == [("Ping", "1"), ("Ping", "2")]
    assert transactions == [], "a transaction of their own, beside the writer's"


async def test_an_outcome_written_removes_its_items_mark(store: SqlStore, db_path: Path) -> None:
    async with writing(store):
        await store.mark_started("Ping", {"1": 0, "2": 0, "3": 0})
        store.record([outcome(1), outcome(3)])
        await store.settled()
        assert marks(db_path) == [("Ping", "2")]
        store.forget_started("Ping", ["2"])  # given back unfinished
        await store.flush()
        assert marks(db_path) == []


@pytest.fixture(params=["sqlite", "postgresql"])
async def url(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield db_url
        return
    async with throwaway_database("novaconsole_marks") as pg_url:
        yield pg_url


async def test_a_later_run_finds_the_marks_of_every_unfinished_item(url: str) -> None:
    """Many marks written and removed in one statement each (a statement per chunk on
    SQLite, arrays on PostgreSQL): the next run finds exactly the unfinished ones, with
    their crashes counted, and two keys cut to the same stored id are one mark."""
    long = "x" * 600  # longer than the item id column: stored cut
    keys = {str(n): n % 3 for n in range(700)} | {long + "a": 1, long + "b": 2}
    first = open_store(url)
    await first.open()
    try:
        await first.mark_started("Ping", keys)
        await first.mark_alone("Ping", "5", 2, True)
        first.record([outcome(n) for n in range(0, 700, 2) if n != 4])
        await first.flush()
    finally:
        await first.close()

    found = await marks_a_new_run_finds(url, [*keys, "700"])
    unfinished = {str(n) for n in range(1, 700, 2)} | {"4"}
    assert set(found) - {long + "a", long + "b"} == unfinished
    assert found["7"] == StartMark(alone=False, crashes=1)
    assert found["5"] == StartMark(alone=True, crashes=2)
    shared = {found[long + "a"], found[long + "b"]}  # one row, the later mark
    assert shared == {StartMark(alone=False, crashes=2)}


async def test_starting_items_finds_the_marks_other_runs_left_and_carries_their_crashes(
    url: str,
) -> None:
    """Admission's marks (one statement on PostgreSQL, two steps on SQLite): the marks an
    earlier run left come back, the new marks carry their crashes on (one more for a mark left
    running alone), and a run never finds its own."""
    long = "x" * 600
    runs: list[SqlStore] = []

    async def run() -> SqlStore:  # opened after the earlier runs' marks (as after a restart)
        store = open_store(url)
        runs.append(store)
        await store.open()
        return store

    try:
        first = await run()
        assert await first.start_items("Ping", ["1", "2", "3", long + "a"]) == {}
        assert await first.start_items("Ping", ["1", "2"]) == {}, "its own marks"
        await first.mark_alone("Ping", "2", 1, True)

        second = await run()
        found = await second.start_items("Ping", ["1", "2", "4", long + "a", long + "b"])
        assert found == {
            "1": StartMark(alone=False, crashes=0),
            "2": StartMark(alone=True, crashes=1),
            long + "a": StartMark(alone=False, crashes=0),
            long + "b": StartMark(alone=False, crashes=0),  # the same stored id
        }
        third = await run()
        found = await third.start_items("Ping", ["1", "2", "3", "4"])
        assert found == {
            "1": StartMark(alone=False, crashes=0),
            "2": StartMark(alone=False, crashes=2),
            "3": StartMark(alone=False, crashes=0),  # the first run's, untouched since
            "4": StartMark(alone=False, crashes=0),
        }
    finally:
        for store in runs:
            await store.close()


async def test_an_item_started_again_keeps_its_new_mark_when_an_earlier_give_back_is_written(
    url: str,
) -> None:
    """Given back unfinished (paused during its fetch), then fetched and started again before
    the writer's next batch: the removal queued by the give-back must not take the new mark."""
    store = open_store(url)
    await store.open()
    try:
        await store.start_items("Ping", ["1", "2"])
        store.forget_started("Ping", ["1", "2"])
        await store.start_items("Ping", ["1"])
        await store.flush()
        found = await marks_a_new_run_finds(url, ["1", "2"])
    finally:
        await store.close()
    assert found == {"1": StartMark(alone=False, crashes=0)}


async def test_a_give_back_removes_only_its_own_runs_mark(url: str) -> None:
    """Given back by one worker (paused, or stopping), then taken and started by another
    before the first writes the removal: the removal must leave the other run's mark, or a
    crash of that run on the item would go uncounted."""
    first, second = open_store(url, shared=True), open_store(url, shared=True)
    await first.open()
    await second.open()
    try:
        await first.start_items("Ping", ["1", "2"])
        first.forget_started("Ping", ["1", "2"])
        await second.start_items("Ping", ["1"])
        await first.flush()
        found = await first.started_items("Ping", ["1", "2"])
    finally:
        await first.close()
        await second.close()
    assert found == {"1": StartMark(alone=False, crashes=0)}  # the second run's mark


async def test_an_item_started_again_waits_for_the_removal_the_writer_is_making() -> None:
    """PostgreSQL writes admission's marks beside the writer, not through it: an item given
    back and started again while the writer's transaction removing its mark is under way
    must be marked after that transaction, or the removal would take the new mark."""
    import asyncpg  # type: ignore[import-untyped]

    async with throwaway_database("novaconsole_marks") as url:
        store = open_store(url, shared=False)  # outcomes written unfenced
        await store.open()
        locker = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        mark_version = "SELECT xmin::text FROM novaconsole_started WHERE item_id = '1'"
        try:
            async with anyio.create_task_group() as group:  # two pooled connections
                group.start_soon(store.start_items, "Ping", ["1", "2"])
                group.start_soon(store.start_items, "Ping", ["3"])
            first_mark = await locker.fetchval(mark_version)
            store.forget_started("Ping", ["1"])
            store.record([outcome(2)])
            # The writer's transaction waits at its results, before it removes the marks.
            locker_tx = locker.transaction()
            await locker_tx.start()
            await locker.execute("LOCK TABLE novaconsole_results IN EXCLUSIVE MODE")
            async with anyio.create_task_group() as group:
                group.start_soon(store.flush)
                await until(lambda: locker.fetchval(LOCK_WAITED))
                group.start_soon(store.start_items, "Ping", ["1"])

                async def marked_or_waiting() -> bool:
                    """The new mark committed, or start_items waiting for the writer."""
                    if store._lock.statistics().tasks_waiting:
                        return True
                    return bool(await locker.fetchval(mark_version) != first_mark)

                await until(marked_or_waiting)
                await locker_tx.commit()
            found = await marks_a_new_run_finds(url, ["1", "2", "3"])
        finally:
            await locker.close()
            await store.close()
    assert set(found) == {"1", "3"}


LOCK_WAITED = """
SELECT count(*) > 0 FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'
"""
"""Whether one of the database's other sessions waits for a lock."""


async def until(check: Callable[[], Awaitable[object]]) -> None:
    """Until ``check()`` is true: a condition of another process, looked at every 10 ms."""
    with anyio.fail_after(10):  # a hang guard, not a measurement
        while True:
            if await check():
                return
            await anyio.sleep(0.01)


async def test_a_run_alone_reads_the_marks_only_for_a_batch_holding_one(db_url: str) -> None:
    """A crash can leave marks on items their source never returns again. A run alone on its
    database reads which keys other runs marked when it opens, and looks the table up only
    for a batch holding one of them, not for every batch after the crash."""
    first = open_store(db_url)
    await first.open()
    try:
        await first.mark_started("Ping", {"gone": 0, "back": 1})
    finally:
        await first.close()
    second = open_store(db_url)
    await second.open()
    looked: list[str] = []

    @event.listens_for(second.engine.sync_engine, "before_cursor_execute")
    def _seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "novaconsole_started" in statement:
            looked.append(statement)

    try:
        assert await second.started_items("Ping", [str(n) for n in range(500)]) == {}
        assert await second.started_items("Other", ["gone"]) == {}
        assert looked == [], "no batch held a marked key"
        found = await second.started_items("Ping", ["1", "back"])
        assert found == {"back": StartMark(alone=False, crashes=1)}
        assert len(looked) == 1
    finally:
        await second.close()
