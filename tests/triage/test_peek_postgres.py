"""Peek on PostgreSQL (127.0.0.1:5432): fetch_next runs in a transaction that is rolled back, so
the source rows a fetch marks and the claims of a running fleet are unchanged afterwards,
checked in the database; a fetch cut off by its timeout leaves no lock and no open
transaction behind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text

from novaconsole import BackgroundProcessing, HandlerContext
from novaconsole.engine.peek import PeekError
from novaconsole.store import open_store
from tests.postgres import throwaway_database

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@dataclass(frozen=True)
class Job:
    id: int
    payload: str


class MarkingHandler:
    """Takes pending jobs by marking them (UPDATE ... RETURNING, rows locked FOR UPDATE SKIP
    LOCKED) and commits, as a real handler would: only the rollback keeps them pending."""

    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx

    async def fetch_next(self, max_items: int) -> Sequence[Job]:
        async with self.ctx.session() as session:
            rows = await session.execute(
                text(
                    "UPDATE jobs SET state = 'taken', taken_at = now() WHERE id IN ("
                    "SELECT id FROM jobs WHERE state = 'pending' ORDER BY id LIMIT :n "
                    "FOR UPDATE SKIP LOCKED) RETURNING id, payload"
                ),
                {"n": max_items},
            )
            jobs = [Job(row.id, row.payload) for row in rows]
            await session.commit()
        async with self.ctx.session() as other:  # a second session joins the same transaction
            await other.execute(text("INSERT INTO fetch_log (n) VALUES (:n)"), {"n": len(jobs)})
            await other.commit()
        return sorted(jobs, key=lambda job: job.id)

    async def process(self, item: Job) -> None:
        raise AssertionError("peek must not process anything")


class StuckHandler(MarkingHandler):
    """Marks rows, then waits on the database far longer than the fetch timeout."""

    async def fetch_next(self, max_items: int) -> Sequence[Job]:
        jobs = await super().fetch_next(max_items)
        async with self.ctx.session() as session:
            await session.execute(text("SELECT pg_sleep(60)"))
        return jobs


class Holding:
    """One item whose processing waits for ``release``: its claim is held meanwhile."""

    release: anyio.Event
    started: anyio.Event

    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx

    async def fetch_next(self, max_items: int) -> list[Job]:
        return [Job(7, "held")] if not Holding.release.is_set() else []

    async def process(self, item: Job) -> None:
        Holding.started.set()
        await Holding.release.wait()


SOURCE = (
    "CREATE TABLE jobs (id INTEGER PRIMARY KEY, payload TEXT NOT NULL, "
    "state TEXT NOT NULL DEFAULT 'pending', taken_at TIMESTAMPTZ)",
    "CREATE TABLE fetch_log (n INTEGER NOT NULL)",
)


@dataclass
class Database:
    url: str
    admin: Any

    async def rows(self, query: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self.admin.fetch(query)]


@pytest.fixture
async def database() -> AsyncIterator[Database]:
    async with throwaway_database("peek") as url:
        store = open_store(url, shared=True)  # the schema, claims in use as on a fleet
        await store.open()
        await store.close()
        admin = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            for statement in SOURCE:
                await admin.execute(statement)
            await admin.executemany(
                "INSERT INTO jobs (id, payload) VALUES ($1, $2)",
                [
                    (n, f"job {n}" if n != 2 else "postgresql://u:hunter2@db/x \x1b]0;pwned\x07")
                    for n in range(1, 6)
                ],
            )
            yield Database(url, admin)
        finally:
            await admin.close()


JOBS = "SELECT id, payload, state, taken_at FROM jobs ORDER BY id"
CLAIMS = "SELECT handler, item_id, worker_id, token, state FROM novaconsole_claims ORDER BY 1, 2"
"""The claims without their lease, which a running worker renews."""
KEPT = (
    "SELECT (SELECT count(*) FROM novaconsole_results), "
    "(SELECT count(*) FROM novaconsole_item_states), (SELECT count(*) FROM fetch_log)"
)


async def test_peek_leaves_the_source_and_the_claims_unchanged(database: Database) -> None:
    jobs, kept = await database.rows(JOBS), await database.rows(KEPT)
    service = (
        BackgroundProcessing()
        .add_handler(MarkingHandler, name="Jobs", max_items_per_cycle=3)
        .build(store=open_store(database.url, shared=True))
    )
    try:
        peeked = await service.peek("Jobs")  # a stopped service: built, never run
        assert peeked.rolled_back and peeked.asked == 3
        assert [item.id for item in peeked.items] == ["1", "2", "3"]
        assert peeked.items[0].repr == "Job(id=1, payload='job 1')"
        shown = peeked.items[1].repr
        assert "hunter2" not in shown and "\x1b" not in shown and "\x07" not in shown
        again = await service.peek("Jobs", limit=5)
        assert [item.id for item in again.items] == ["1", "2", "3", "4", "5"]  # still pending
    finally:
        await service.store.close()
    assert await database.rows(JOBS) == jobs
    assert await database.rows(CLAIMS) == []
    assert await database.rows(KEPT) == kept


async def test_peek_on_a_running_service_leaves_its_held_claims_unchanged(
    database: Database,
) -> None:
    Holding.release, Holding.started = anyio.Event(), anyio.Event()
    service = (
        BackgroundProcessing(poll_interval=3600)
        .add_handler(Holding, name="Holding", max_items_per_cycle=1)
        .add_handler(MarkingHandler, name="Jobs", max_items_per_cycle=2)
        .build(store=open_store(database.url, shared=True))
    )
    service.pause_handler("Jobs")  # only Holding runs: its item's claim is held
    async with service.running():
        try:
            with anyio.fail_after(60):
                await Holding.started.wait()
            claims = await database.rows(CLAIMS)
            assert [(c[0], c[1], c[4]) for c in claims] == [("Holding", "7", "held")]
            jobs, kept = await database.rows(JOBS), await database.rows(KEPT)
            peeked = await service.peek("Jobs", limit=2)
            assert [item.id for item in peeked.items] == ["1", "2"]
            assert await database.rows(CLAIMS) == claims
            assert await database.rows(JOBS) == jobs
            assert await database.rows(KEPT) == kept
            assert service.snapshot().handlers["Jobs"].in_flight == 0
        finally:
            Holding.release.set()
    assert await database.rows("SELECT count(*) FROM jobs WHERE state = 'pending'") == [(5,)]


async def test_a_peek_cut_off_by_its_timeout_leaves_no_lock_and_no_open_transaction(
    database: Database,
) -> None:
    jobs = await database.rows(JOBS)
    service = (
        BackgroundProcessing(fetch_timeout=1)
        .add_handler(StuckHandler, name="Stuck", max_items_per_cycle=2)
        .add_handler(MarkingHandler, name="Jobs", max_items_per_cycle=2)
        .build(store=open_store(database.url, shared=True))
    )
    try:
        with anyio.fail_after(60):
            with pytest.raises(PeekError, match="timed out after 1s"):
                await service.peek("Stuck")
        assert await database.rows(JOBS) == jobs
        # The rows it marked are not left locked: another connection takes them at once.
        async with database.admin.transaction():
            await database.admin.execute("SET LOCAL lock_timeout = '5s'")
            await database.admin.execute("UPDATE jobs SET state = 'x' WHERE id IN (1, 2)")
            await database.admin.execute("UPDATE jobs SET state = 'pending' WHERE id IN (1, 2)")
        # No connection of ours sits in an open transaction, or still runs the sleep.
        left = await database.rows(
            "SELECT state, query FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND (state LIKE 'idle in transaction%' "
            "OR query LIKE '%pg_sleep%')"
        )
        assert left == []
        # The same service peeks again, normally.
        with anyio.fail_after(60):
            peeked = await service.peek("Jobs")
        assert [item.id for item in peeked.items] == ["1", "2"]
    finally:
        await service.store.close()
    assert await database.rows(JOBS) == jobs
