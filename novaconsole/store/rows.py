"""The ``novaconsole_results`` row format: outcomes to rows and rows back to outcomes.

Text a handler controls (error, traceback, item id, the errors of earlier attempts) is
redacted (:func:`novaconsole.redaction.redact`) both ways: masked where outcomes are written,
as a second line of defence, and again where rows are read back, since a row written by an
older novaconsole may hold raw escapes or secrets.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiosqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from novaconsole.engine.outcomes import Attempt, ItemOutcome, OutcomeStatus
from novaconsole.redaction import redact
from novaconsole.store.models import sqlite_time, stored_key


def redact_optional(text: str | None) -> str | None:
    """:func:`~novaconsole.redaction.redact` of a nullable column's text."""
    return None if text is None else redact(text)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def outcome_row(outcome: ItemOutcome, worker_id: str | None = None) -> dict[str, Any]:
    """The ``novaconsole_results`` row of an outcome (recorded by ``worker_id``)."""
    handler, item_id = stored_key(outcome.handler, outcome.item_id)
    return {
        "handler": handler,
        "item_id": item_id,
        "status": outcome.status.value,
        "attempts": outcome.attempts,
        "started_at": outcome.started_at,
        "finished_at": outcome.finished_at,
        "duration": outcome.duration,
        "error": redact_optional(outcome.error),
        "traceback": redact_optional(outcome.traceback),
        "history": None if _told_by_row(outcome) else _history_json(outcome),
        "worker_id": worker_id,
    }


ROW_COLUMNS = (
    "handler",
    "item_id",
    "status",
    "attempts",
    "started_at",
    "finished_at",
    "duration",
    "error",
    "traceback",
    "history",
    "worker_id",
)
"""The columns of :func:`driver_row` tuples, in order."""

SQLITE_INSERT = (
    f"INSERT INTO novaconsole_results ({', '.join(ROW_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ROW_COLUMNS)})"
)
"""The insert of :func:`driver_row` tuples for SQLite's executemany."""


def driver_row(outcome: ItemOutcome, sqlite: bool, worker_id: str | None = None) -> tuple[Any, ...]:
    """The result row of an outcome as the driver takes it (columns: :data:`ROW_COLUMNS`):
    the values SQLAlchemy would bind, without its per-row processing, which costs more than
    the rest of recording. Timestamps are integers on SQLite (see ``UtcDateTime``)."""
    started, finished = outcome.started_at, outcome.finished_at
    handler, item_id = stored_key(outcome.handler, outcome.item_id)
    return (
        handler,
        item_id,
        outcome.status.value,
        outcome.attempts,
        sqlite_time(started) if sqlite else _aware(started),
        sqlite_time(finished) if sqlite else _aware(finished),
        outcome.duration,
        redact_optional(outcome.error),
        redact_optional(outcome.traceback),
        None if _told_by_row(outcome) else json.dumps(_history_json(outcome)),
        worker_id,
    )


def _told_by_row(outcome: ItemOutcome) -> bool:
    """True when the history is one attempt that the row's own columns describe exactly
    (most outcomes): it is then stored as NULL, which saves encoding JSON for every row."""
    if len(outcome.history) != 1:
        return False
    (attempt,) = outcome.history
    return (
        attempt.number == 1
        and attempt.started_at == outcome.started_at
        and attempt.duration == outcome.duration
        and attempt.error == outcome.error
        and attempt.timed_out == (outcome.status is OutcomeStatus.TIMED_OUT)
    )


def _history_json(outcome: ItemOutcome) -> list[dict[str, Any]]:
    return [_attempt_json(attempt) for attempt in outcome.history]


def _attempt_json(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "started_at": _aware(attempt.started_at).isoformat(),
        "duration": attempt.duration,
        "error": redact_optional(attempt.error),
        "timed_out": attempt.timed_out,
    }


def history_of(row: Mapping[Any, Any]) -> tuple[Attempt, ...]:
    """The attempts of a result row (NULL: the one attempt the row describes)."""
    value = row["history"]
    if value is None:
        return (
            Attempt(
                number=1,
                started_at=row["started_at"],
                duration=row["duration"],
                error=redact_optional(row["error"]),
                timed_out=row["status"] == OutcomeStatus.TIMED_OUT.value,
            ),
        )
    return tuple(
        Attempt(
            number=int(entry["number"]),
            started_at=_aware(datetime.fromisoformat(entry["started_at"])),
            duration=float(entry["duration"]),
            error=redact_optional(entry.get("error")),
            timed_out=bool(entry.get("timed_out", False)),
        )
        for entry in value
    )


def row_outcome(row: Mapping[Any, Any]) -> ItemOutcome:
    """An :class:`ItemOutcome` read back from a result row (``item_id`` is a str); text a
    handler controlled comes back redacted."""
    return ItemOutcome(
        handler=row["handler"],
        item_id=redact(row["item_id"]),
        status=OutcomeStatus(row["status"]),
        attempts=row["attempts"],
        duration=row["duration"],
        error=redact_optional(row["error"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        traceback=redact_optional(row["traceback"]),
        history=history_of(row),
    )


def row_dict(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A result row as plain JSON-ready data (timestamps as ISO 8601 strings; text a handler
    controlled redacted)."""
    return {
        "handler": row["handler"],
        "item_id": redact(row["item_id"]),
        "status": row["status"],
        "attempts": row["attempts"],
        "duration": row["duration"],
        "error": redact_optional(row["error"]),
        "started_at": row["started_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat(),
        "traceback": redact_optional(row["traceback"]),
        "history": [_attempt_json(attempt) for attempt in history_of(row)],
        "worker_id": row.get("worker_id"),
    }


DriverWrites = list[tuple[str, Sequence[tuple[Any, ...]]]]
"""Statements with the rows of one executemany each, as SQLite's driver takes them."""


DRIVER_QUEUE = callable(getattr(aiosqlite.Connection, "_execute", None))
"""aiosqlite has no public way to run a function on a connection's thread; its private
``_execute`` (0.17 to 0.22 at least) is used when present, and plain statements otherwise."""


async def write_sqlite(connection: AsyncConnection, build: Callable[[], DriverWrites]) -> None:
    """Build rows and run their executemany statements on the SQLite connection's own thread,
    in its open transaction, in one hand-off.

    Each aiosqlite call is a hand-off to that thread and back to the loop, which waits its
    turn for the GIL; on a busy machine a hand-off costs milliseconds. Building the rows there
    too saves the hand-off to a worker thread as well (under the GIL, building them in any
    thread costs the loop the same).
    """
    if not DRIVER_QUEUE:
        for sql, rows in build():
            if rows:
                await connection.exec_driver_sql(sql, rows)
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
        for sql, rows in build():
            if rows:
                self.last = sql
                self.database.executemany(sql, rows)

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
