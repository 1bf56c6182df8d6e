"""``ctx.write()``: items queue their statements; one writer runs a whole group in one
transaction, a savepoint per item, and commits it (group commit).

``ctx.session()`` per item pays a connection checkout, a BEGIN and a COMMIT each time, and
through SQLAlchemy's aiosqlite adapter every statement, savepoint and cursor is a round trip
to the driver's thread (about nine per item). Here an item's statements are only collected
while ``process`` runs. When it returns, the writer takes every item waiting and runs them
together: on SQLite in a single thread call on a plain pysqlite connection, elsewhere through
the async engine. The group first runs in one
transaction with consecutive uses of a statement merged into one executemany; only if that
fails is it rolled back and replayed with a savepoint per item, so that an item whose
statement fails is rolled back alone and fails alone. A successful item is done once the
commit holding it is, and a failed commit fails every item it held.

The item's slot does not wait: the engine records the item's outcome once its group has
committed, so a group gathers every item finished while the previous one was committing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.ext.asyncio import AsyncEngine
    from sqlalchemy.sql import Executable

Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


class GroupCommitError(RuntimeError):
    """The transaction holding a group of items' writes failed to commit: every item in it
    fails (and is retried)."""


class WritesHolder:
    """Per slot: the writes the item in hand queued with ``ctx.write()``."""

    __slots__ = ("writes",)

    def __init__(self) -> None:
        self.writes: ItemWrites | None = None

    def add(self, statement: Executable | str, params: Params) -> None:
        if self.writes is None:
            self.writes = ItemWrites()
        self.writes.execute(statement, params)

    def take(self) -> ItemWrites | None:
        writes, self.writes = self.writes, None
        return writes


current_writes: ContextVar[WritesHolder | None] = ContextVar("novaconsole_writes", default=None)
"""Set by each slot: ``ctx.write()`` queues into it for the item being processed."""

CommitCallback = Callable[[BaseException | None], Awaitable[None]]


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
    __slots__ = ("callback", "error", "writes")

    def __init__(self, writes: ItemWrites, callback: CommitCallback | None = None) -> None:
        self.writes = writes
        self.callback = callback
        self.error: BaseException | None = None


class GroupedWriter:
    """The one writer of a service. ``sync_engine`` (SQLite only) is asked for on first use."""

    def __init__(self, engine: AsyncEngine, sync_engine: Callable[[], Engine | None]) -> None:
        self._engine = engine
        self._sync_engine = sync_engine
        self._pending: list[_Entry] = []
        self._thread = anyio.CapacityLimiter(1)
        self._submitted = anyio.Event()
        self.committing = 0
        """Items submitted whose commit (and callback) has not finished yet."""

    def submit(self, writes: ItemWrites, callback: CommitCallback) -> None:
        """Queue an item's writes; ``callback(error)`` once the group holding them is done.

        Used by the engine for ``ctx.write()``: the slot moves on at once and the item's
        outcome waits for the callback. :meth:`run` does the flushing.
        """
        self.committing += 1
        self._pending.append(_Entry(writes, callback))
        self._submitted.set()

    async def run(self) -> None:
        """Flush submitted writes, a group at a time, for as long as the service runs.

        While one group commits, the next one gathers every item finished meanwhile.
        """
        while True:
            if not self._pending:
                self._submitted = anyio.Event()
                await self._submitted.wait()
                continue
            group = await self._flush()
            await self._notify(group)

    async def _notify(self, group: list[_Entry]) -> None:
        """Tell the engine how its items' commits went."""
        for entry in group:
            if entry.callback is not None:
                try:
                    await entry.callback(entry.error)
                finally:
                    self.committing -= 1

    async def _flush(self) -> list[_Entry]:
        group, self._pending = self._pending, []
        with anyio.CancelScope(shield=True):
            sync_engine = self._sync_engine()
            if sync_engine is not None:
                await anyio.to_thread.run_sync(
                    self._run_in_thread, sync_engine, group, limiter=self._thread
                )
            else:
                await self._run_async(group)
        return group

    @staticmethod
    def _run_in_thread(engine: Engine, group: list[_Entry]) -> None:
        try:
            with engine.connect() as connection, connection.begin():
                for statement, params in _merged(group):
                    connection.execute(statement, params)
            return
        except Exception:
            pass  # an item's statement (or the commit) failed: replay item by item below
        try:
            with engine.connect() as connection, connection.begin():
                for entry in group:
                    _run_item(connection, entry)
        except Exception as error:
            _commit_failed(group, error)

    async def _run_async(self, group: list[_Entry]) -> None:
        try:
            async with self._engine.connect() as connection, connection.begin():
                for statement, params in _merged(group):
                    await connection.execute(statement, params)
            return
        except Exception:
            pass  # as in _run_in_thread: find the failing items with a savepoint each
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


def _merged(group: list[_Entry]) -> list[tuple[Executable, Params]]:
    """The group's statements in order, consecutive uses of one statement object with one
    parameter mapping each merged into a single executemany."""
    merged: list[tuple[Executable, Params]] = []
    run: list[Mapping[str, Any]] = []
    for entry in group:
        for statement, params in entry.writes.statements:
            if isinstance(params, Mapping) and run and merged[-1][0] is statement:
                run.append(params)
                continue
            if len(run) > 1:
                merged[-1] = (merged[-1][0], run)
            merged.append((statement, params))
            run = [params] if isinstance(params, Mapping) else []
    if len(run) > 1:
        merged[-1] = (merged[-1][0], run)
    return merged


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
    failed = GroupCommitError(f"the group's transaction failed to commit: {error}")
    failed.__cause__ = error
    for entry in group:
        if entry.error is None:
            entry.error = failed
