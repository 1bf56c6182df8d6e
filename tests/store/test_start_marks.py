"""Start marks (crash records) go through the store's single writer: committed before
``mark_started`` returns, in the writer's transaction rather than one of their own, and
removed in the transaction that writes their item's outcome."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import event

from novaconsole.store import SqlStore
from novaconsole.store.database import READ_ONLY
from tests.factories import outcome

pytestmark = pytest.mark.anyio


def marks(db_path: Path) -> list[tuple[str, str]]:
    """(handler, item id) of every mark, read by another connection (what is committed)."""
    with sqlite3.connect(db_path) as connection:
        rows = connection.execute("SELECT handler, item_id FROM novaconsole_started").fetchall()
    return sorted((str(handler), str(item_id)) for handler, item_id in rows)


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
