"""The store writer's rows straight to SQLite's driver: many rows per statement, built and
written on the connection's own thread in one hand-off.

SQLAlchemy's per-row binding costs more than the rest of recording an outcome, and so do
aiosqlite's hand-offs (each a wait for the GIL on a busy event loop), so the writer's plain
rows (outcomes, start marks) skip both.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from typing import Any

import aiosqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

_VARIABLES = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
"""The most parameters one statement may have (SQLITE_MAX_VARIABLE_NUMBER's default)."""
_MOST_ROWS = 256


@dataclass(frozen=True, slots=True)
class RowsStatement:
    """A statement that takes many rows at once: ``head``, ``row`` once per row (joined by
    commas), then ``tail``; ``lead`` are parameters before the rows' own.

    One statement per chunk of rows, where ``executemany`` steps once per row: SQLite's
    driver lets go of the GIL around every step and a busy event loop takes it, so the
    writer waited for the GIL again for each row. B1 with the SQLite store, quiet machine,
    alternated: 40,863-44,602 items/s with an executemany per statement, 47,618-50,099 with
    chunks.
    """

    head: str
    row: str
    tail: str = ""
    lead: tuple[Any, ...] = ()

    def chunks(self, rows: Sequence[tuple[Any, ...]]) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """(SQL, parameters) of statements that together take ``rows``: chunks of a power of
        two rows each, so that a handful of texts stay in the driver's statement cache."""
        if not rows:
            return
        width = self.row.count("?")
        size = _MOST_ROWS
        while size > 1 and size * width + len(self.lead) > _VARIABLES:
            size //= 2
        at, left = 0, len(rows)
        while left:
            while size > left:
                size //= 2
            chunk = rows[at : at + size]
            yield _sql(self.head, self.row, self.tail, size), (*self.lead, *chain(*chunk))
            at += size
            left -= size

    @property
    def shown(self) -> str:
        """The statement for one row, to name it in an error."""
        return f"{self.head}{self.row}{self.tail}"


@lru_cache(maxsize=64)
def _sql(head: str, row: str, tail: str, count: int) -> str:
    return f"{head}{', '.join([row] * count)}{tail}"


DriverWrites = list[tuple[RowsStatement, Sequence[tuple[Any, ...]]]]
"""Statements with the rows each takes, as SQLite's driver takes them."""


DRIVER_QUEUE = callable(getattr(aiosqlite.Connection, "_execute", None))
"""aiosqlite has no public way to run a function on a connection's thread; its private
``_execute`` (0.17 to 0.22 at least) is used when present, and plain statements otherwise."""


async def write_sqlite(connection: AsyncConnection, build: Callable[[], DriverWrites]) -> None:
    """Build rows and run their statements on the SQLite connection's own thread, in its
    open transaction, in one hand-off.

    Each aiosqlite call is a hand-off to that thread and back to the loop, which waits its
    turn for the GIL; on a busy machine a hand-off costs milliseconds. Building the rows there
    too saves the hand-off to a worker thread as well (under the GIL, building them in any
    thread costs the loop the same).
    """
    if not DRIVER_QUEUE:
        for statement, rows in build():
            for sql, parameters in statement.chunks(rows):
                await connection.exec_driver_sql(sql, parameters)
        return
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection  # aiosqlite.Connection
    running = _Statements(driver._conn)
    await running.on_thread_of(driver, lambda: running.execute_all(build))


class _Statements:
    """Statements run on a SQLite connection's thread; the last one names a driver error."""

    def __init__(self, database: sqlite3.Connection) -> None:
        self.database = database
        self.last = ""

    def execute(self, sql: str) -> None:
        self.last = sql
        self.database.execute(sql)

    def execute_all(self, build: Callable[[], DriverWrites]) -> None:
        database = self.database
        for statement, rows in build():
            self.last = statement.shown
            for sql, parameters in statement.chunks(rows):
                database.execute(sql, parameters)

    async def on_thread_of(self, driver: Any, work: Callable[[], None]) -> None:
        """Run ``work`` on ``driver``'s thread; a driver error raised as SQLAlchemy would
        raise it, so that faults are told apart."""
        try:
            await driver._execute(work)
        except sqlite3.Error as error:
            raise DBAPIError.instance(self.last, None, error, sqlite3.Error) from error


class SqliteDirect:
    """The store writer's own connection to a SQLite file, for plain batches (outcomes and
    start marks, nothing else): ``BEGIN IMMEDIATE``, the rows and ``COMMIT`` in one hand-off
    to the connection's thread, where a transaction through SQLAlchemy takes three (and a
    connection from the pool a fourth, to reset it on return). B1 with the SQLite store,
    quiet machine, 3 rounds twice each way: 11,384 and 10,274 items/s with it, 10,095 and
    9,279 without."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._connection: AsyncConnection | None = None

    async def write(self, build: Callable[[], DriverWrites]) -> None:
        """Commit the statements ``build()`` returns (built on the connection's thread) in one
        transaction; a driver error is raised as SQLAlchemy would raise it."""
        if self._connection is None:
            self._connection = await self.engine.connect()
        raw = await self._connection.get_raw_connection()
        driver: Any = raw.driver_connection  # aiosqlite.Connection
        running = _Statements(driver._conn)

        def transaction() -> None:
            running.execute("BEGIN IMMEDIATE")
            try:
                running.execute_all(build)
                running.execute("COMMIT")
            except BaseException:
                if running.database.in_transaction:
                    running.database.execute("ROLLBACK")
                raise

        try:
            await running.on_thread_of(driver, transaction)
        except DBAPIError:
            await self.close()  # a fresh connection next time
            raise

    async def close(self) -> None:
        """Give the connection back (before the engine is disposed of)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()
