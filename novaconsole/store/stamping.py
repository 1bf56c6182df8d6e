"""Claims ended by a committed transaction get their real end time (see ``claims._ENDING``),
in a transaction after that commit: at once, or beside the store's writer.

Inline, the stamp held the writer for its own transaction: 7-12 ms of the 26-33 ms the
writer took for 500 outcomes on PostgreSQL (B7, one worker, quiet machine), while the next
batch's admission waited for the writer to commit its start marks. On PostgreSQL the stamp
runs in a task of its own, on its own connection: it touches only claims already done, by
their token (a claim taken again since has a new one and is left alone). On SQLite it stays
inline: a second writer would wait for the file's lock in SQLite's busy handler.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import anyio
from sqlalchemy.ext.asyncio import AsyncEngine

from novaconsole.store import claims as claim_sql
from novaconsole.store.claims import ClaimKey
from novaconsole.store.database import uncancelled

log = logging.getLogger("novaconsole.store")


async def stamp_ended(engine: AsyncEngine, keys: Collection[ClaimKey]) -> None:
    """Stamp ``keys`` now; a failure is logged, not raised (the claims stay ended "later":
    taken again once their lease runs out)."""
    try:
        async with engine.begin() as connection:
            await claim_sql.stamp_finished(connection, keys)
    except Exception as error:
        log.warning("stamping %d ended claims failed: %s", len(keys), error)


class ClaimStamper:
    """Stamps ended claims beside the writer while :meth:`run` runs, else at once."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._keys: set[ClaimKey] = set()
        self._wake = anyio.Event()
        self._running = False

    async def ended(self, keys: Collection[ClaimKey]) -> None:
        """Claims whose ending transaction just committed."""
        if not self._running:
            await stamp_ended(self.engine, keys)
            return
        self._keys.update(keys)
        self._wake.set()

    async def run(self) -> None:
        """Stamp what :meth:`ended` hands over, until cancelled."""
        self._running = True
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                await self.flush()
        finally:
            self._running = False

    async def flush(self) -> None:
        """Stamp everything handed over and not stamped yet."""
        keys, self._keys = self._keys, set()
        if not keys:
            return
        try:
            await uncancelled(lambda: stamp_ended(self.engine, keys))
        except TimeoutError as error:  # the database hangs: the writer says so too
            log.warning("stamping %d ended claims failed: %s", len(keys), error)
