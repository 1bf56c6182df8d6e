"""``SqlCoordinator``: the engine's :class:`~novaconsole.engine.fleet_protocol.Coordinator` on the
store's database (claims, heartbeats, fleet commands), one short transaction per call."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from typing import TypeVar

import anyio
import anyio.lowlevel
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from novaconsole.engine.fleet_protocol import Claim, Command, WorkerBeat, WorkerView, alone_in
from novaconsole.store import claims as claim_sql
from novaconsole.store import fleet
from novaconsole.store.clock import engine_now
from novaconsole.store.database import PRUNE_BATCH, chunked, reader, uncancelled
from novaconsole.store.models import stored_item_id

log = logging.getLogger("novaconsole.store")

T = TypeVar("T")


class SqlCoordinator:
    """Claims with leases and fencing tokens, heartbeats and commands in the database.

    ``lock`` is the store's writer lock, taken on SQLite (one writer per process); on
    PostgreSQL calls run side by side. ``buffered`` lists the claims of outcomes recorded but
    not yet written: their leases are renewed too, so an item finished a moment ago is not
    taken by another worker while its outcome waits for the next batch.

    The engine calls in every poll interval (to see commands soon); heartbeats and renewals
    go to the database only every quarter of the lease (at most every second), which is
    plenty to keep leases, and a fleet of fast-polling workers light on the database.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        lock: anyio.Lock | None,
        buffered: Callable[[], Iterable[Claim]] = tuple,
        on_worker: Callable[[str], None] | None = None,
    ) -> None:
        self.engine = engine
        self._lock = lock
        self._buffered = buffered
        self._on_worker = on_worker
        self._reader = reader(engine)
        self.worker_id: str | None = None
        """The worker this process coordinates for (seen at its first claim or beat)."""
        self._fleet: Sequence[WorkerView] = ()
        self._next_beat = 0.0
        self._next_renewal = 0.0

    def _seen(self, worker_id: str) -> None:
        if worker_id != self.worker_id:
            self.worker_id = worker_id
            if self._on_worker is not None:
                self._on_worker(worker_id)

    async def _write(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async def transaction() -> T:
            async with AsyncExitStack() as stack:
                if self._lock is not None:
                    await stack.enter_async_context(self._lock)
                connection = await stack.enter_async_context(self.engine.begin())
                return await work(connection)
            raise AssertionError("unreachable")  # pragma: no cover

        return await uncancelled(transaction)

    async def now(self) -> datetime:
        """The database clock (on SQLite, this machine's: no round trip)."""
        return await uncancelled(lambda: engine_now(self.engine))

    async def claim(
        self,
        worker_id: str,
        handler: str,
        item_ids: Sequence[str],
        lease: float,
        fetched_at: datetime | None = None,
    ) -> Mapping[str, int]:
        """Claim what is free; see :func:`novaconsole.store.claims.claim`."""
        self._seen(worker_id)
        stored = {stored_item_id(item_id): item_id for item_id in item_ids}
        wanted = list(stored.values())
        # The read only steers around other workers' row locks (the claim re-checks every
        # row itself): with no other live worker it is a transaction per batch for nothing.
        if not self._alone(worker_id):
            taken = await self._visibly_taken(handler, list(stored), fetched_at)
            wanted = [item_id for key, item_id in stored.items() if key not in taken]
        if not wanted:
            return {}
        return await self._write(
            lambda c: claim_sql.claim(c, worker_id, handler, wanted, lease, fetched_at)
        )

    async def _visibly_taken(
        self, handler: str, stored_ids: Sequence[str], fetched_at: datetime | None
    ) -> set[str]:
        """Which of ``stored_ids`` other claims hold, read in chunks outside a transaction."""

        async def read() -> set[str]:
            async with self._reader.connect() as connection:
                taken: set[str] = set()
                for chunk in chunked(stored_ids):
                    taken |= await claim_sql.visibly_taken(connection, handler, chunk, fetched_at)
                return taken

        return await uncancelled(read)

    def _alone(self, worker_id: str) -> bool:
        """Whether the last heartbeat found no other live worker (unknown before it)."""
        return alone_in(self._fleet, worker_id)

    def renewal_due(self) -> bool:
        """False while leases were renewed less than a quarter lease (at most a second) ago."""
        return anyio.current_time() >= self._next_renewal

    async def renew(
        self, worker_id: str, claims: Sequence[Claim], lease: float
    ) -> Collection[Claim]:
        """Extend leases (also of outcomes waiting to be written); the claims lost."""
        if not self.renewal_due():
            return []
        started = anyio.current_time()
        wanted = claim_sql.keys_of(claims)
        everything = [*claims, *self._buffered()]
        if not everything:
            return []
        renewed = await self._write(lambda c: claim_sql.renew(c, worker_id, everything, lease))
        self._next_renewal = started + _period(lease)
        missing = {key: claim for key, claim in wanted.items() if key not in renewed}
        if not missing:
            return []
        # An item whose outcome this worker committed since ``claims`` was read is done, not
        # lost: its claim is no longer held, so the renewal passed it by.
        done = list(missing.values())
        finished = await self._write(lambda c: claim_sql.finished_by(c, worker_id, done))
        return [claim for key, claim in missing.items() if key not in finished]

    async def release(self, worker_id: str, claims: Sequence[Claim]) -> None:
        """Free unfinished claims for other workers at once."""
        if claims:
            freed = await self._write(lambda c: claim_sql.release(c, worker_id, claims))
            log.info("released %d of %d unfinished claims", freed, len(claims))

    async def beat(self, beat: WorkerBeat, lease: float) -> Sequence[WorkerView]:
        """Heartbeat; the fleet."""
        self._seen(beat.worker_id)
        started = anyio.current_time()
        if started >= self._next_beat:
            self._fleet = await self._write(lambda c: fleet.beat(c, beat, lease))
            self._next_beat = started + _period(lease)
        return self._fleet

    async def take_commands(self, worker_id: str) -> Sequence[Command]:
        """Fleet commands for this worker, each taken by one worker only."""

        async def waiting() -> bool:
            async with self._reader.connect() as connection:
                return await fleet.commands_waiting(connection)

        if not await uncancelled(waiting):
            return []
        return await self._write(lambda c: fleet.take_commands(c, worker_id))

    async def prune(self, keep_claims: timedelta) -> int:
        """Forget old claims (in small batches), old workers and old commands."""
        deleted = 0
        while True:
            count = await self._write(lambda c: claim_sql.prune(c, keep_claims))
            deleted += count
            if count < PRUNE_BATCH:
                break
            await anyio.lowlevel.checkpoint()
        return deleted + await self._write(fleet.prune)

    async def stop(self) -> None:
        """This worker is leaving cleanly: show it as stopped."""
        worker_id = self.worker_id
        if worker_id is not None:
            await self._write(lambda c: fleet.mark_stopped(c, worker_id))


def _period(lease: float) -> float:
    """How often leases are renewed and heartbeats written."""
    return min(lease / 4, 1.0)
