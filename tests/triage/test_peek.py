"""Peek: fetch_next runs in a transaction that is rolled back, nothing is claimed or processed
(checked in the SQLite file itself), with a handler whose fetch marks rows."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from novaconsole import BackgroundProcessing, HandlerContext
from novaconsole.engine.peek import PeekError, one_line
from novaconsole.store import open_store

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Job:
    id: int
    payload: str


class MarkingHandler:
    """Takes pending jobs by marking them (UPDATE ... RETURNING) and commits, as a real
    handler would: only the rollback keeps the rows pending."""

    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx

    async def fetch_next(self, max_items: int) -> Sequence[Job]:
        async with self.ctx.session() as session:
            rows = await session.execute(
                text(
                    "UPDATE jobs SET state = 'taken' WHERE id IN (SELECT id FROM jobs "
                    "WHERE state = 'pending' ORDER BY id LIMIT :n) RETURNING id, payload"
                ),
                {"n": max_items},
            )
            jobs = [Job(row.id, row.payload) for row in rows]
            await session.commit()
        return sorted(jobs, key=lambda job: job.id)

    async def process(self, item: Job) -> None:
        raise AssertionError("peek must not process anything")


def source(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, payload TEXT, state TEXT)")
        db.executemany(
            "INSERT INTO jobs VALUES (?, ?, 'pending')",
            [
                (n, f"job {n}" if n != 2 else "postgresql://u:hunter2@db/x \x1b]0;pwned\x07")
                for n in range(1, 6)
            ],
        )


def table(path: Path, query: str) -> list[Any]:
    with sqlite3.connect(path) as db:
        return db.execute(query).fetchall()


async def test_peek_leaves_the_source_and_the_claims_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    url = f"sqlite+aiosqlite:///{path}"
    store = open_store(url, shared=True)  # claims in use, as on a fleet
    await store.open()
    await store.close()
    source(path)
    jobs_before = table(path, "SELECT * FROM jobs ORDER BY id")
    claims_before = table(path, "SELECT * FROM novaconsole_claims")
    results_before = table(path, "SELECT count(*) FROM novaconsole_results")

    service = (
        BackgroundProcessing()
        .add_handler(MarkingHandler, name="Jobs", max_items_per_cycle=3)
        .build(url, store=open_store(url, shared=True))
    )
    peeked = await service.peek("Jobs")  # a stopped service: built, never run
    assert peeked.rolled_back and peeked.asked == 3
    assert [item.id for item in peeked.items] == ["1", "2", "3"]
    assert peeked.items[0].repr == "Job(id=1, payload='job 1')"
    shown = peeked.items[1].repr
    assert "hunter2" not in shown and "\x1b" not in shown and "\x07" not in shown
    again = await service.peek("Jobs", limit=5)
    assert [item.id for item in again.items] == ["1", "2", "3", "4", "5"]  # still pending
    await service.store.close()

    assert table(path, "SELECT * FROM jobs ORDER BY id") == jobs_before
    assert table(path, "SELECT * FROM novaconsole_claims") == claims_before
    assert table(path, "SELECT count(*) FROM novaconsole_results") == results_before


async def test_peek_on_a_running_service_claims_nothing(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    url = f"sqlite+aiosqlite:///{path}"
    store = open_store(url, shared=True)
    await store.open()
    await store.close()
    source(path)
    service = (
        BackgroundProcessing(poll_interval=3600)
        .add_handler(MarkingHandler, name="Jobs", max_items_per_cycle=2)
        .build(url, store=open_store(url, shared=True))
    )
    service.pause()
    async with service.running():
        peeked = await service.peek("Jobs", limit=2)
        assert [item.id for item in peeked.items] == ["1", "2"]
        assert service.snapshot().handlers["Jobs"].in_flight == 0
    assert table(path, "SELECT count(*) FROM jobs WHERE state = 'pending'") == [(5,)]
    assert table(path, "SELECT count(*) FROM novaconsole_claims") == [(0,)]


async def test_a_failing_fetch_is_one_peek_error_and_bad_arguments_are_refused() -> None:
    class Broken:
        async def fetch_next(self, max_items: int) -> list[Any]:
            raise ConnectionError("source down at postgresql://u:pw@db/x")

        async def process(self, item: Any) -> None: ...

    class NotAList:
        async def fetch_next(self, max_items: int) -> Any:
            return "oops"

        async def process(self, item: Any) -> None: ...

    service = (
        BackgroundProcessing().add_handler(Broken, name="B").add_handler(NotAList, name="N").build()
    )
    with pytest.raises(
        PeekError,
        match=r"fetch_next raised ConnectionError: source down at postgresql://u:\*\*\*@db/x",
    ):
        await service.peek("B")
    with pytest.raises(PeekError, match="must return a list"):
        await service.peek("N")
    with pytest.raises(ValueError, match="at least 1"):
        await service.peek("B", limit=0)
    with pytest.raises(KeyError, match="no handler named 'X'"):
        await service.peek("X")


def test_one_line_reprs() -> None:
    class Raises:
        def __repr__(self) -> str:
            raise ValueError("no")

    assert one_line({"a": "x\ny"}) == "{'a': 'x\\ny'}"
    assert one_line("x" * 500).endswith("…") and len(one_line("x" * 500)) == 120
    assert one_line(Raises()) == "<repr failed: ValueError: no>"
