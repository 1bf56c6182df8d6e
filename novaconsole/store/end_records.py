"""A transaction that ended claims gets its end record (see :func:`claims.record_ends`) after
its commit: at once, or beside the store's writer.

The record is one short statement, but inline it still held the writer for a round trip and
a commit while the next batch's admission waited for the writer to commit its start marks.
On PostgreSQL it runs in a task of its own, on its own connection, in autocommit. On SQLite
it stays inline: a second writer would wait for the file's lock in SQLite's busy handler.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import anyio
from sqlalchemy.ext.asyncio import AsyncEngine

from novaconsole.store import claims as claim_sql
from novaconsole.store.database import uncancelled

log = logging.getLogger("novaconsole.store")


async def record_ends_now(engine: AsyncEngine, ends: Collection[int]) -> None:
    """Write the end records ``ends`` now; a failure is logged, not raised (their claims are
    then taken again only once their lease runs out)."""
    try:
        async with engine.begin() as connection:
            await claim_sql.record_ends(connection, ends)
    except Exception as error:
        log.warning("recording %d claim ends failed: %s", len(ends), error)


class EndRecorder:
    """Records claim ends beside the writer while :meth:`run` runs, else at once."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._ends: set[int] = set()
        self._wake = anyio.Event()
        self._running = False

    async def ended(self, end: int) -> None:
        """The end record of a transaction that ended claims and just committed."""
        if not self._running:
            await record_ends_now(self.engine, [end])
            return
        self._ends.add(end)
        self._wake.set()

    async def run(self) -> None:
        """Record what :meth:`ended` hands over, until cancelled."""
        self._running = True
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                await self.flush()
        finally:
            self._running = False

    async def flush(self) -> None:
        """Record everything handed over and not recorded yet."""
        ends, self._ends = self._ends, set()
        if not ends:
            return
        try:
            await uncancelled(lambda: record_ends_now(self.engine, ends))
        except TimeoutError as error:  # the database hangs: the writer says so too
            log.warning("recording %d claim ends failed: %s", len(ends), error)
