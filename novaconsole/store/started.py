"""The ``novaconsole_started`` marks (see :mod:`novaconsole.engine.crashes`): their SQL, and
the marks waiting for the store's writer.

On SQLite, marks are written by the store's single writer, in the transaction it commits next
(with outcomes, and the deletion of finished items' marks): a separate transaction per admitted
batch would wait for the writer's SQLite lock, with SQLite's busy handler sleeping in steps of
up to 100 ms, and hold admission up while the queue runs dry. PostgreSQL has no such lock: an
admitted batch's marks are read and written in one statement of their own (:func:`start`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from novaconsole.engine.crashes import StartMark
from novaconsole.store.database import chunked
from novaconsole.store.models import started, stored_key
from novaconsole.store.sqlite_writes import DriverWrites, RowsStatement

# PostgreSQL: one statement with a parameter per column (arrays), where an executemany of
# 500 rows cost SQLAlchemy's per-row binding and a round trip each: the writer's marks of a
# batch of 500 took 6 ms to insert and 4-7 ms to delete (B7, one worker, quiet machine).
_PG_UPSERT = text("""
INSERT INTO novaconsole_started (handler, item_id, run_id, alone, crashes)
SELECT m.handler, m.item_id, :run_id, m.alone, m.crashes
FROM unnest(
    CAST(:handlers AS VARCHAR[]), CAST(:item_ids AS VARCHAR[]),
    CAST(:alone AS BOOLEAN[]), CAST(:crashes AS INTEGER[])
) AS m(handler, item_id, alone, crashes)
ORDER BY m.handler, m.item_id
ON CONFLICT (handler, item_id) DO UPDATE SET run_id = excluded.run_id,
    alone = excluded.alone, crashes = excluded.crashes
""")
_PG_DELETE = """
DELETE FROM novaconsole_started AS s
USING unnest(CAST(:handlers AS VARCHAR[]), CAST(:item_ids AS VARCHAR[])) AS k(handler, item_id)
WHERE s.handler = k.handler AND s.item_id = k.item_id
"""
_PG_DELETE_ANY = text(_PG_DELETE)
_PG_DELETE_OWN = text(_PG_DELETE + "AND s.run_id = :run_id")
# PostgreSQL: admission's marks in one statement, in autocommit (one round trip): the marks
# other runs left on the keys are read, and the keys marked as this run's with those crashes
# carried on, a mark left running alone counting one more. Every part of a statement sees the
# same snapshot, so ``other`` is what was there before. Read and write as two calls, the
# writer's transaction and a read took 14-16 and 8-10 ms of each 500-item admission (B7, one
# worker, no-op items).
_PG_START = text("""
WITH keys AS (
    SELECT DISTINCT k.item_id FROM unnest(CAST(:item_ids AS VARCHAR[])) AS k(item_id)
), other AS (
    SELECT s.item_id, s.alone, s.crashes FROM novaconsole_started AS s
    JOIN keys ON s.item_id = keys.item_id
    WHERE s.handler = :handler AND s.run_id <> :run_id
), marked AS (
    INSERT INTO novaconsole_started (handler, item_id, run_id, alone, crashes)
    SELECT :handler, keys.item_id, :run_id, false,
        COALESCE(other.crashes + CAST(other.alone AS INTEGER), 0)
    FROM keys LEFT JOIN other ON other.item_id = keys.item_id
    ORDER BY keys.item_id
    ON CONFLICT (handler, item_id) DO UPDATE SET run_id = excluded.run_id,
        alone = excluded.alone, crashes = excluded.crashes
)
SELECT item_id, alone, crashes FROM other
""")
SQLITE_UPSERT = RowsStatement(
    "INSERT INTO novaconsole_started (handler, item_id, run_id, alone, crashes) VALUES ",
    "(?, ?, ?, ?, ?)",
    " ON CONFLICT (handler, item_id) DO UPDATE SET run_id = excluded.run_id, "
    "alone = excluded.alone, crashes = excluded.crashes",
)
"""The upsert of :func:`upsert_rows` tuples on SQLite."""
_SQLITE_DELETE_HEAD = "DELETE FROM novaconsole_started WHERE handler = ? AND item_id IN ("
_SQLITE_DELETE_OWN_HEAD = (
    "DELETE FROM novaconsole_started WHERE handler = ? AND run_id = ? AND item_id IN ("
)


Marks = dict[tuple[str, str], tuple[bool, int]]
"""(handler, key): (alone, crashes counted)."""


@dataclass(slots=True)
class TakenMarks:
    """The marks one write transaction takes, and who waits for their commit."""

    marks: Marks = field(default_factory=dict)
    waiters: list[anyio.Event] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.marks)

    def committed(self) -> None:
        """Their transaction committed: wake those waiting."""
        for waiter in self.waiters:
            waiter.set()


class PendingMarks:
    """Marks given to the store and not yet taken by its writer (later ones win)."""

    def __init__(self) -> None:
        self._taken = TakenMarks()

    def __bool__(self) -> bool:
        return bool(self._taken.marks)

    def add(self, handler: str, rows: Mapping[str, tuple[bool, int]]) -> anyio.Event:
        """Queue ``rows`` (key: (alone, crashes)); the event is set once they are committed."""
        marks = self._taken.marks
        for key, row in rows.items():
            marks[(handler, key)] = row
        waiter = anyio.Event()
        self._taken.waiters.append(waiter)
        return waiter

    def take(self) -> TakenMarks:
        """Everything queued, for the writer's next transaction."""
        taken, self._taken = self._taken, TakenMarks()
        return taken

    def put_back(self, taken: TakenMarks) -> None:
        """Marks whose transaction failed, under any queued since (the newer win)."""
        self._taken = TakenMarks(
            {**taken.marks, **self._taken.marks}, taken.waiters + self._taken.waiters
        )


def upsert_rows(marks: Marks, run_id: str) -> list[tuple[str, str, str, int, int]]:
    """``marks`` as this run's, as SQLite's driver takes them (:data:`SQLITE_UPSERT`)."""
    return [
        (*stored_key(handler, key), run_id, int(alone), crashes)
        for (handler, key), (alone, crashes) in marks.items()
    ]


async def upsert_all(connection: AsyncConnection, marks: Marks, run_id: str) -> None:
    """Mark ``marks`` as this run's, in one statement (PostgreSQL; SQLite:
    :data:`SQLITE_UPSERT`)."""
    # Keyed as stored: two long keys cut to the same id would otherwise meet twice in one
    # upsert, which PostgreSQL refuses.
    rows = {stored_key(handler, key): row for (handler, key), row in marks.items()}
    if not rows:
        return
    await connection.execute(
        _PG_UPSERT,
        {
            "handlers": [handler for handler, _ in rows],
            "item_ids": [item_id for _, item_id in rows],
            "alone": [alone for alone, _ in rows.values()],
            "crashes": [crashes for _, crashes in rows.values()],
            "run_id": run_id,
        },
    )


async def read(
    connection: AsyncConnection, handler: str, keys: Sequence[str], run_id: str
) -> dict[str, StartMark]:
    """Marks other runs left on ``keys``."""
    asked = _by_stored_id(handler, keys)
    stored_handler = stored_key(handler, "")[0]
    found: dict[str, StartMark] = {}
    for chunk in chunked(list(asked)):
        rows = await connection.execute(
            select(started.c.item_id, started.c.alone, started.c.crashes).where(
                started.c.handler == stored_handler,
                started.c.item_id.in_(chunk),
                started.c.run_id != run_id,
            )
        )
        _collect(rows, asked, found)
    return found


def _collect(
    rows: Iterable[Any], asked: Mapping[str, list[str]], found: dict[str, StartMark]
) -> None:
    """Put the marks of ``rows`` (item id, alone, crashes) under the keys asked for them."""
    for item_id, alone, crashes in rows:
        for key in asked[item_id]:
            found[key] = StartMark(alone=bool(alone), crashes=int(crashes))


def _by_stored_id(handler: str, keys: Iterable[str]) -> dict[str, list[str]]:
    """``keys`` by their stored item id: two long keys cut to the same id share its mark."""
    asked: dict[str, list[str]] = {}
    for key in keys:
        asked.setdefault(stored_key(handler, key)[1], []).append(key)
    return asked


async def start(
    connection: AsyncConnection, handler: str, keys: Sequence[str], run_id: str
) -> dict[str, StartMark]:
    """Mark ``keys`` started by ``run_id`` and return the marks other runs left on them, in one
    statement (PostgreSQL, see ``_PG_START``; run it in autocommit)."""
    asked = _by_stored_id(handler, keys)
    if not asked:
        return {}
    rows = await connection.execute(
        _PG_START,
        {"handler": stored_key(handler, "")[0], "item_ids": list(asked), "run_id": run_id},
    )
    found: dict[str, StartMark] = {}
    _collect(rows, asked, found)
    return found


async def others(connection: AsyncConnection, run_id: str, most: int) -> dict[str, set[str]] | None:
    """The stored item ids other runs marked, by stored handler name; None if more than
    ``most`` marks."""
    rows = (
        await connection.execute(
            select(started.c.handler, started.c.item_id)
            .where(started.c.run_id != run_id)
            .limit(most + 1)
        )
    ).all()
    if len(rows) > most:
        return None
    found: dict[str, set[str]] = {}
    for handler, item_id in rows:
        found.setdefault(handler, set()).add(item_id)
    return found


def key_rows(keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(handler, key) pairs as stored."""
    return [stored_key(handler, key) for handler, key in keys]


def sqlite_deletes(stored: Iterable[tuple[str, str]], run_id: str | None = None) -> DriverWrites:
    """Statements removing the marks of stored (handler, item id) pairs on SQLite, one per
    handler (``item_id IN (...)`` searches the primary key; a row value ``IN`` scans); with
    ``run_id``, only that run's (see :func:`delete`)."""
    by_handler: dict[str, list[tuple[str]]] = {}
    for handler, item_id in stored:
        by_handler.setdefault(handler, []).append((item_id,))
    head = _SQLITE_DELETE_HEAD if run_id is None else _SQLITE_DELETE_OWN_HEAD
    lead: tuple[str, ...] = () if run_id is None else (run_id,)
    return [
        (RowsStatement(head, "?", ")", lead=(handler, *lead)), ids)
        for handler, ids in by_handler.items()
    ]


async def delete(
    connection: AsyncConnection, keys: Iterable[tuple[str, str]], run_id: str | None = None
) -> None:
    """Remove the marks of (handler, key) pairs in one statement (PostgreSQL; SQLite:
    :func:`sqlite_deletes`): of finished items whoever marked them, or with ``run_id`` only
    that run's, for items it gave back unfinished: another worker may have taken and marked
    them since."""
    stored = key_rows(keys)
    if stored:
        params: dict[str, Any] = {
            "handlers": [h for h, _ in stored],
            "item_ids": [i for _, i in stored],
        }
        if run_id is not None:
            params["run_id"] = run_id
        await connection.execute(_PG_DELETE_ANY if run_id is None else _PG_DELETE_OWN, params)
