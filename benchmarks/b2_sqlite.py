"""B2 SQLite drain: a table of pending rows set done one by one, engine against hand-written.

Each run gets a fresh database file holding ``work(id, state, payload)`` (100 characters of
payload, a partial index on the pending rows' ids) with every row pending. The
handler's ``fetch_next`` selects pending ids (batches of 500) through ``ctx.session()``;
``process`` sets its row done in one of two ways:

- ``session``: its own ``ctx.session()`` and a commit (B2a);
- ``write``: ``ctx.write()``, the recommended fast path: the write runs after ``process``
  returns, grouped with other items' in one transaction, and the outcome waits for that
  commit (B2b).

Outcomes are recorded in the same SQLite file (``build(database_url=...)``), 8 workers.
Baselines, recording nothing: a sequential asyncio loop with the same SQLAlchemy calls as
``session`` (a session and a commit per row, on an engine configured like the store's: WAL,
``BEGIN IMMEDIATE``), and a sequential asyncio loop on aiosqlite alone that fetches 500 ids
and commits once per batch (the baseline of ``write``).
"""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from time import perf_counter
from typing import Any

import aiosqlite
import anyio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from benchmarks.measure import progress
from benchmarks.report import Row, ratio_row
from novaconsole import BackgroundProcessing, HandlerContext
from novaconsole.store import create_engine

BATCH = 500
WORKERS = 8
_IPS = "rows/s"
SELECT = text("SELECT id FROM work WHERE state = 'pending' ORDER BY id LIMIT :n")
UPDATE = text("UPDATE work SET state = 'done' WHERE id = :id")
RAW_SELECT = "SELECT id FROM work WHERE state = 'pending' ORDER BY id LIMIT ?"
RAW_UPDATE = "UPDATE work SET state = 'done' WHERE id = ?"
PENDING_INDEX = "CREATE INDEX work_pending ON work (id) WHERE state = 'pending'"
"""The table of issue 16's drain: a payload column and a partial index on pending rows."""
PAYLOAD = "x" * 100
_NAMES = {
    "a0": "session loop",
    "a": "engine+session",
    "b0": "aiosqlite loop",
    "d": "engine+ctx.write",
}


def prepare(path: Path, rows: int) -> str:
    """A fresh database file with ``rows`` pending rows; its SQLAlchemy URL."""
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(
            "CREATE TABLE work (id INTEGER PRIMARY KEY, state TEXT NOT NULL, payload TEXT NOT NULL)"
        )
        connection.execute(PENDING_INDEX)
        connection.executemany(
            "INSERT INTO work (id, state, payload) VALUES (?, 'pending', ?)",
            ((i, PAYLOAD) for i in range(rows)),
        )
    connection.close()
    return f"sqlite+aiosqlite:///{path}"


def pending_rows(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        (count,) = connection.execute(
            "SELECT count(*) FROM work WHERE state = 'pending'"
        ).fetchone()
    connection.close()
    return int(count)


@dataclass(frozen=True, slots=True)
class Row_:
    id: int


class Drain:
    """Counts processed rows and says when every row is done."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.processed = 0
        self.done = anyio.Event()

    def count(self) -> None:
        self.processed += 1
        if self.processed == self.total:
            self.done.set()

    def handler(self, write: str) -> type:
        drain = self

        class MarkDone:
            def __init__(self, ctx: HandlerContext) -> None:
                self.ctx = ctx

            async def fetch_next(self, max_items: int) -> list[Row_]:
                async with self.ctx.session() as session:
                    result = await session.execute(SELECT, {"n": max_items})
                    return [Row_(row_id) for (row_id,) in result]

            async def process(self, item: Row_) -> None:
                if write == "write":
                    self.ctx.write(UPDATE, {"id": item.id})
                else:
                    async with self.ctx.session() as session:
                        await session.execute(UPDATE, {"id": item.id})
                        await session.commit()
                drain.count()

        return MarkDone


async def engine(path: Path, rows: int, *, write: str) -> float:
    """Rows per second drained by the engine; ``write`` is how ``process`` writes (see the
    module docstring)."""
    url = prepare(path, rows)
    drain = Drain(rows)
    service = (
        BackgroundProcessing(poll_interval=0, max_concurrency=WORKERS, queue_capacity=1000)
        .add_handler(drain.handler(write), name="MarkDone", max_items_per_cycle=BATCH)
        .build(database_url=url)
    )
    started = perf_counter()
    async with service.running():
        await drain.done.wait()
    elapsed = perf_counter() - started
    _check(path, service.snapshot().failed)
    return rows / elapsed


async def session_loop(path: Path, rows: int) -> float:
    """The hand-written loop with the engine's per-item calls: a session and a commit per row."""
    url = prepare(path, rows)
    database = create_engine(url)
    sessions = async_sessionmaker(database, expire_on_commit=False)
    started = perf_counter()
    try:
        while True:
            async with sessions() as session:
                ids = [row_id for (row_id,) in await session.execute(SELECT, {"n": BATCH})]
            if not ids:
                break
            for row_id in ids:
                async with sessions() as session:
                    await session.execute(UPDATE, {"id": row_id})
                    await session.commit()
    finally:
        await database.dispose()
    elapsed = perf_counter() - started
    _check(path, 0)
    return rows / elapsed


async def aiosqlite_loop(path: Path, rows: int) -> float:
    """The hand-written aiosqlite loop: fetch 500 ids, update each, commit once per batch."""
    prepare(path, rows)
    started = perf_counter()
    async with aiosqlite.connect(path, isolation_level=None) as connection:
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000"):
            await connection.execute(f"PRAGMA {pragma}")
        while True:
            async with connection.execute(RAW_SELECT, (BATCH,)) as cursor:
                ids: list[Any] = [row_id for (row_id,) in await cursor.fetchall()]
            if not ids:
                break
            await connection.execute("BEGIN IMMEDIATE")
            for row_id in ids:
                await connection.execute(RAW_UPDATE, (row_id,))
            await connection.execute("COMMIT")
    elapsed = perf_counter() - started
    _check(path, 0)
    return rows / elapsed


def _check(path: Path, failed: int) -> None:
    left = pending_rows(path)
    if left or failed:
        raise RuntimeError(f"{path.name}: {left} rows still pending, {failed} items failed")


async def run(rows: int, repeat: int, workdir: Path) -> list[Row]:
    """Every variant, ``repeat`` interleaved rounds; a fresh file for every run."""
    variants: tuple[tuple[str, Callable[[Path, int], Awaitable[float]]], ...] = (
        ("a0", session_loop),
        ("a", partial(engine, write="session")),
        ("b0", aiosqlite_loop),
        ("d", partial(engine, write="write")),
    )
    results: dict[str, list[float]] = {key: [] for key, _ in variants}
    for round_ in range(repeat):
        for key, measure in variants:
            gc.collect()
            results[key].append(await measure(workdir / f"b2-{key}-{round_}.db", rows))
        progress(
            f"B2 round {round_ + 1}: "
            + ", ".join(f"{_NAMES[key]} {results[key][-1]:,.0f}/s" for key, _ in variants)
        )
    loop = results["b0"]
    return [
        ratio_row(
            "B2a",
            "ctx.session() per row vs loop, session+commit per row",
            results["a"],
            results["a0"],
            _IPS,
            0.8,
        ),
        ratio_row(
            "B2b", "ctx.write() vs aiosqlite loop, commit per 500", results["d"], loop, _IPS, 0.8
        ),
    ]
