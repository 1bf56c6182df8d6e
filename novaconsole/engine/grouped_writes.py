"""Grouped writes: items queue their statements; one writer runs a whole group in one
transaction, a savepoint per item, and commits it (group commit).

``ctx.session()`` per item pays a connection checkout, a BEGIN and a COMMIT each time, and
through SQLAlchemy's aiosqlite adapter every statement, savepoint and cursor is a round trip
to the driver's thread (about nine per item). Here an item's statements are only collected
while its ``async with`` block runs. When the block ends, whoever finds the writer free takes
every item waiting and runs them together: on SQLite in a single thread call on a plain
pysqlite connection, elsewhere through the async engine. An item whose statement fails is
rolled back to its savepoint alone and its block raises; a successful block returns once the
commit holding it is done, and a failed commit fails every item it held.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio

from novaconsole.engine.batch_session import BatchCommitError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.ext.asyncio import AsyncEngine
    from sqlalchemy.sql import Executable

Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


class ItemWrites:
    """What one item will write: statements run after its block, in its group's transaction."""

    __slots__ = ("statements",)

    def __init__(self) -> None:
        self.statements: list[tuple[Executable, Params]] = []

    def execute(self, statement: Executable | str, params: Params = None) -> None:
        """Queue ``statement``: any SQLAlchemy statement (Core or ``text()``), or SQL text with
        ``:name`` parameters; a list of parameter mappings runs it once for each."""
        if isinstance(statement, str):
            from sqlalchemy import text

            statement = text(statement)
        self.statements.append((statement, params))


class _Entry:
    __slots__ = ("done", "error", "writes")

    def __init__(self, writes: ItemWrites) -> None:
        self.writes = writes
        self.done = anyio.Event()
        self.error: BaseException | None = None


class GroupedWriter:
    """The one writer of a service. ``sync_engine`` (SQLite only) is asked for on first use."""

    def __init__(self, engine: AsyncEngine, sync_engine: Callable[[], Engine | None]) -> None:
        self._engine = engine
        self._sync_engine = sync_engine
        self._pending: list[_Entry] = []
        self._lock = anyio.Lock()
        self._thread = anyio.CapacityLimiter(1)

    @asynccontextmanager
    async def use(self) -> AsyncIterator[ItemWrites]:
        """Collect one item's statements; run them (grouped) when the block ends."""
        writes = ItemWrites()
        yield writes
        if not writes.statements:
            return
        entry = _Entry(writes)
        self._pending.append(entry)
        while not entry.done.is_set():
            async with self._lock:
                if not entry.done.is_set():
                    await self._flush()
        if entry.error is not None:
            raise entry.error

    async def _flush(self) -> None:
        group, self._pending = self._pending, []
        try:
            with anyio.CancelScope(shield=True):
                sync_engine = self._sync_engine()
                if sync_engine is not None:
                    await anyio.to_thread.run_sync(
                        self._run_in_thread, sync_engine, group, limiter=self._thread
                    )
                else:
                    await self._run_async(group)
        finally:
            for entry in group:
                entry.done.set()

    @staticmethod
    def _run_in_thread(engine: Engine, group: list[_Entry]) -> None:
        try:
            with engine.connect() as connection, connection.begin():
                for entry in group:
                    _run_item(connection, entry)
        except Exception as error:
            _commit_failed(group, error)

    async def _run_async(self, group: list[_Entry]) -> None:
        try:
            async with self._engine.connect() as connection, connection.begin():
                for entry in group:
                    savepoint = await connection.begin_nested()
                    try:
                        for statement, params in entry.writes.statements:
                            await connection.execute(statement, params)
                    except Exception as error:
                        await savepoint.rollback()
                        entry.error = error
                    else:
                        await savepoint.commit()
        except Exception as error:
            _commit_failed(group, error)


def _run_item(connection: Connection, entry: _Entry) -> None:
    savepoint = connection.begin_nested()
    try:
        for statement, params in entry.writes.statements:
            connection.execute(statement, params)
    except Exception as error:
        savepoint.rollback()
        entry.error = error
    else:
        savepoint.commit()


def _commit_failed(group: list[_Entry], error: Exception) -> None:
    failed = BatchCommitError(f"the batch transaction failed to commit: {error}")
    failed.__cause__ = error
    for entry in group:
        if entry.error is None:
            entry.error = failed
