"""``SqlStore``: the engine's :class:`~novaconsole.engine.persistence.StateStore` on a database.

Everything the engine hands over is buffered in memory and written by :meth:`SqlStore.run`
in batches: one transaction per batch (outcomes by executemany, or COPY on asyncpg; item
states; controls), at least every ``flush_interval`` seconds and at once when ``flush_at``
outcomes are waiting.
:meth:`SqlStore.close` writes whatever is left. A crash loses at most the writes not yet
flushed; each batch commits atomically, so the database is never left half-written.
Outcome buffer policy: see :mod:`novaconsole.store.outcome_buffer`.

All writes of this process go through one :class:`anyio.Lock` (one writer per process).
Reads answer from what is still buffered first, then from the database.

Each outcome is written once. The one case of a duplicate row, for a store that does not
share work: the database commits a batch but the connection fails before the driver reports
it; the batch is kept and written again. Item states and controls are rewritten idempotently,
so they are never doubled.

When work is shared (``shared``: on by default on PostgreSQL, on request on SQLite), the store
has a :attr:`SqlStore.coordinator` (claims, heartbeats, fleet commands) and an outcome is
written only if its fencing token is still the claim's, in the same transaction that marks
the claim done: a stale outcome (its worker lost the lease) is rejected, counted in
:attr:`SqlStore.rejected_outcomes` and logged; a batch written again after an unreported
commit is rejected the same way, so it is not doubled either.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from novaconsole import defaults
from novaconsole.engine.fleet_protocol import Claim
from novaconsole.engine.outcomes import ItemOutcome
from novaconsole.engine.persistence import Controls, ItemState
from novaconsole.errors import ConfigError
from novaconsole.store import claims as claim_sql
from novaconsole.store import control_plane as plane_sql
from novaconsole.store.control_plane import SqlControlPlane
from novaconsole.store.coordinator import SqlCoordinator
from novaconsole.store.database import (
    OPEN_ERRORS,
    chunked,
    create_engine,
    describe_database_error,
    mask_url,
    reader,
    sync_sqlite_engine,
    uncancelled,
)
from novaconsole.store.models import (
    item_states,
    results,
    stored_handler,
    stored_item_id,
    stored_key,
)
from novaconsole.store.outcome_buffer import OutcomeBuffer
from novaconsole.store.retention import prune_results
from novaconsole.store.rows import ROW_COLUMNS, SQLITE_INSERT, driver_row, outcome_row, row_outcome
from novaconsole.store.schema import ensure_schema
from novaconsole.store.unclaimed import SqlSourceFilter

log = logging.getLogger("novaconsole.store")

StateKey = tuple[str, str]

_RETRY_MAX = 30.0
_SQLITE_UPSERT_RETURNING = (3, 35, 0)


def _shares_work(engine: AsyncEngine, shared: bool | None) -> bool:
    """Whether workers share this database: by default on PostgreSQL only."""
    backend = engine.dialect.name
    if shared is None:
        return backend == "postgresql"
    if not shared:
        return False
    if backend == "sqlite":
        if sqlite3.sqlite_version_info < _SQLITE_UPSERT_RETURNING:
            raise ConfigError(
                f"sharing work on SQLite needs SQLite 3.35 or newer (this is "
                f"{sqlite3.sqlite_version}); use PostgreSQL or set shared = false",
                key="database.shared",
            )
        return True
    if backend != "postgresql":
        raise ConfigError(
            f"sharing work needs PostgreSQL or SQLite, not {backend}", key="database.shared"
        )
    return True


class SqlStore:
    """Results, item states and controls in an SQL database (SQLite, PostgreSQL, ...).

    ``session_factory`` opens sessions on the same database for handler code
    (``ctx.session()``). Constructing a store connects to nothing: :meth:`open` does.
    ``shared`` (``None``: on PostgreSQL only) gives it a :attr:`coordinator` so that several
    workers share the database's work; ``keep_claims`` is how long a finished item's claim is
    kept (a fetch that started before the item finished cannot claim it meanwhile).
    ``auto_upgrade`` (``None``: on SQLite only) lets :meth:`open` upgrade an older schema.
    """

    def __init__(
        self,
        url: str,
        *,
        keep_results_age: timedelta | None = defaults.KEEP_RESULTS_AGE,
        keep_results_count: int | None = defaults.KEEP_RESULTS_COUNT,
        flush_interval: float = 0.25,
        flush_at: int = 1000,
        buffer_capacity: int = 50_000,
        batch_rows: int = 5000,
        prune_interval: float = 60.0,
        shared: bool | None = None,
        keep_claims: timedelta = timedelta(minutes=10),
        auto_upgrade: bool | None = None,
    ) -> None:
        if keep_results_count is not None and keep_results_count < 0:
            raise ValueError("keep_results_count must not be negative")
        self.engine: AsyncEngine = create_engine(url)
        self.display_url = mask_url(self.engine.url)
        self.session_factory: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.engine, expire_on_commit=False
        )
        self.keep_results_age = keep_results_age
        self.keep_results_count = keep_results_count
        self.flush_interval = flush_interval
        self.prune_interval = prune_interval
        self.batch_rows = batch_rows
        self._reader = reader(self.engine)
        self._lock = anyio.Lock()
        self._wake: anyio.Event | None = None
        self._outcomes = OutcomeBuffer(buffer_capacity, flush_at, wake=self._wake_writer)
        self._states: dict[StateKey, ItemState | None] = {}
        self._writing_states: dict[StateKey, ItemState | None] = {}
        self._controls: list[Controls] = []
        self._writing_controls: list[Controls] = []
        self._states_in_db = True
        """False while the item-state table is known to be empty: lookups skip the database."""
        self._states_generation = 0
        self._recorded = 0
        self._written = 0
        self._progress: anyio.Event | None = None
        self._writing_batch: list[ItemOutcome] = []
        self.keep_claims = keep_claims
        self.auto_upgrade = auto_upgrade
        self.rejected_outcomes = 0
        """Outcomes not written because their worker had lost the item's claim."""
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        """Written beside each result; the worker's own id once it claims or beats."""
        self.coordinator: SqlCoordinator | None = None
        if _shares_work(self.engine, shared):
            self.coordinator = SqlCoordinator(
                self.engine,
                lock=self._lock if self.engine.dialect.name == "sqlite" else None,
                buffered=self._buffered_claims,
                on_worker=self._set_worker,
            )
        self.source_filter = SqlSourceFilter(
            self.engine.dialect.name, claimed=self.coordinator is not None
        )
        """What ``ctx.unclaimed()`` adds to a handler's select (claims only when shared)."""
        self.control_plane = SqlControlPlane(
            self.engine,
            lock=self._lock if self.engine.dialect.name == "sqlite" else None,
            worker_id=lambda: self.worker_id,
        )
        """Audit, retry requests, and commands and heartbeats when no coordinator takes them."""

    def _set_worker(self, worker_id: str) -> None:
        self.worker_id = worker_id

    def _buffered_claims(self) -> Iterator[Claim]:
        for outcome in (*self._writing_batch, *self._outcomes.peek()):
            if outcome.token is not None:
                yield Claim(outcome.handler, str(outcome.item_id), outcome.token)

    def __repr__(self) -> str:
        return f"SqlStore({self.display_url!r})"

    @functools.cached_property
    def sync_engine(self) -> Engine | None:
        """A synchronous engine on the same SQLite file, for writes grouped in a thread
        (``ctx.write()``); None for other databases. Made on first use."""
        return sync_sqlite_engine(self.engine)

    @property
    def dropped_outcomes(self) -> int:
        """Outcomes dropped because the buffer was full (see
        :mod:`novaconsole.store.outcome_buffer`)."""
        return self._outcomes.dropped

    @property
    def buffered_outcomes(self) -> int:
        """Outcomes recorded and not yet written."""
        return len(self._outcomes)

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Create the schema on first use; upgrade an older one only with ``auto_upgrade``
        (else refuse it, naming the command to run); refuse a newer one."""
        await ensure_schema(self.engine, auto_upgrade=self.auto_upgrade)
        await self._check_states_in_db()

    async def run(self) -> None:
        """Flush periodically and prune old results, until cancelled."""
        self._wake = anyio.Event()
        failures = 0
        next_prune = anyio.current_time() + min(self.prune_interval, 5.0)
        while True:
            with anyio.move_on_after(self.flush_interval):
                await self._wake.wait()
            self._wake = anyio.Event()
            try:
                await self.flush()
                if not self._states_in_db:
                    await self._check_states_in_db()
                if anyio.current_time() >= next_prune:
                    next_prune = anyio.current_time() + self.prune_interval
                    await self.prune()
            except OPEN_ERRORS as error:
                failures += 1
                delay = min(_RETRY_MAX, 0.5 * 2 ** min(failures, 8))
                log.error(
                    "cannot write to database %s (%s); %d outcomes waiting, retrying in %.1fs",
                    self.display_url,
                    describe_database_error(error, self.engine.url),
                    len(self._outcomes),
                    delay,
                )
                await anyio.sleep(delay)
            else:
                if failures:
                    log.info("writing to database %s again", self.display_url)
                failures = 0

    async def close(self) -> None:
        """Write everything buffered, then release the connections.

        If the database cannot take the last writes, they are logged as lost (an error, not an
        exception: the service is stopping either way).
        """
        try:
            with anyio.CancelScope(shield=True):
                await self.flush()
                if self.coordinator is not None:
                    await self.coordinator.stop()
                else:
                    await self.control_plane.stop()
        except OPEN_ERRORS as error:
            log.error(
                "cannot write to database %s (%s): %d outcomes and %d item states are lost",
                self.display_url,
                describe_database_error(error, self.engine.url),
                len(self._outcomes),
                len(self._states),
            )
        finally:
            with anyio.CancelScope(shield=True):
                await self.engine.dispose()
            sync_engine = self.__dict__.pop("sync_engine", None)
            if sync_engine is not None:
                sync_engine.dispose()

    # ------------------------------------------------------------------ writes

    def record(self, outcomes: Sequence[ItemOutcome]) -> None:
        """Buffer final outcomes for the next batch."""
        self._recorded += len(outcomes)
        self._outcomes.add(outcomes)

    def set_item_state(self, handler: str, item_id: str, state: ItemState | None) -> None:
        """Remember (or, with ``None``, forget) an item's attempts, in the next batch."""
        self._states[(handler, item_id)] = state

    def save_controls(self, change: Controls) -> None:
        """Persist the controls, in the next batch (each change audited, in order)."""
        self._controls.append(change)

    async def forget_item(self, handler: str, item_id: str) -> bool:
        """Forget an item's attempts now. True if it had any."""

        async def delete() -> bool:
            async with self.engine.begin() as connection:
                return await delete_item_state(connection, handler, item_id)

        async with self._lock:
            pending = self._states.pop((handler, item_id), None) is not None
            deleted = await uncancelled(delete)
        return pending or deleted

    async def flush(self) -> int:
        """Write what is buffered now, in batches; the number of outcomes written."""
        written = 0
        todo = len(self._outcomes)
        while True:
            async with self._lock:
                batch = self._outcomes.take(self.batch_rows)
                states, self._states = self._states, {}
                saved, self._controls = self._controls, []
                if not batch and not states and not saved:
                    return written
                self._writing_states, self._writing_controls = states, saved
                if any(state is not None for state in states.values()):
                    self._states_in_db = True
                    self._states_generation += 1
                self._writing_batch = batch
                try:
                    rejected = await self._write_shielded(batch, states, saved)
                except BaseException:
                    self._outcomes.put_back(batch)
                    self._states = {**states, **self._states}
                    self._controls = saved + self._controls  # not written: keep the order
                    raise
                finally:
                    self._writing_states, self._writing_controls = {}, []
                    self._writing_batch = []
            if rejected:
                self._rejected(rejected)
            self._outcomes.written()
            written += len(batch)
            self._written += len(batch)
            if self._progress is not None:
                self._progress.set()
                self._progress = None
            if written >= todo:
                return written

    @property
    def accepting(self) -> bool:
        """False while more than half the buffer's capacity is recorded and not yet written
        (the batch being written included): the engine then starts no item until the writer
        catches up, so that outcomes are delayed, never dropped."""
        unwritten = self._recorded - self._written - self._outcomes.dropped
        return unwritten < self._outcomes.capacity // 2

    async def wait_accepting(self) -> None:
        """Wait until :attr:`accepting` (the writer made progress)."""
        while not self.accepting:
            self._wake_writer()
            if self._progress is None:
                self._progress = anyio.Event()
            await self._progress.wait()

    async def settled(self) -> None:
        """Wait until every outcome recorded before this call is written (or dropped)."""
        target = self._recorded
        while self._written + self._outcomes.dropped < target:
            if self._progress is None:
                self._progress = anyio.Event()
            await self._progress.wait()

    async def prune(self, *, now: datetime | None = None) -> int:
        """Apply retention now; the number of results deleted."""
        deleted = await prune_results(
            self.engine,
            self._lock,
            keep_age=self.keep_results_age,
            keep_count=self.keep_results_count,
            now=now,
        )
        if deleted:
            log.debug("pruned %d results", deleted)
        if self.coordinator is not None:
            forgotten = await self.coordinator.prune(self.keep_claims)
            if forgotten:
                log.debug("forgot %d old claims, workers and commands", forgotten)
        return deleted

    def _rejected(self, stale: list[ItemOutcome]) -> None:
        self.rejected_outcomes += len(stale)
        shown = ", ".join(f"{o.handler} item {o.item_id} ({o.status.value})" for o in stale[:5])
        more = f" and {len(stale) - 5} more" if len(stale) > 5 else ""
        log.warning(
            "rejected %d stale outcomes: their worker lost the claim to another worker: %s%s",
            len(stale),
            shown,
            more,
            extra={"handler": stale[0].handler, "item_id": stale[0].item_id},
        )

    async def _check_states_in_db(self) -> None:
        # Item-state lookups happen on every fetch; while the table is empty they need no
        # query. Other workers' states show up here within one flush tick (run() re-checks),
        # no later than their own buffered writes would anyway.
        generation = self._states_generation

        async def any_state() -> int | None:
            async with self._reader.connect() as connection:
                return await connection.scalar(select(item_states.c.attempts).limit(1))

        found = await uncancelled(any_state)
        if generation == self._states_generation:
            self._states_in_db = found is not None

    def _wake_writer(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _write_shielded(
        self,
        batch: list[ItemOutcome],
        states: dict[StateKey, ItemState | None],
        saved: list[Controls],
    ) -> list[ItemOutcome]:
        fenced = self.coordinator is not None
        worker_id = self.worker_id

        async def write() -> list[ItemOutcome]:
            async with self.engine.begin() as connection:
                return await _write(connection, batch, states, saved, fenced, worker_id)

        return await uncancelled(write)

    # ------------------------------------------------------------------ reads

    async def item_states(self, handler: str, item_ids: Iterable[str]) -> Mapping[str, ItemState]:
        """The state of those of ``item_ids`` that have one, buffered writes included."""
        found: dict[str, ItemState] = {}
        missing: list[str] = []
        pending, writing = self._states, self._writing_states
        for item_id in item_ids:
            key = (handler, item_id)
            if key in pending:
                state = pending[key]
            elif key in writing:
                state = writing[key]
            else:
                missing.append(item_id)
                continue
            if state is not None:
                found[item_id] = state
        if not missing or not self._states_in_db:
            return found
        # Stored ids are cut to ITEM_ID_LENGTH: look up by the stored form, answer by the asked.
        asked = {stored_item_id(item_id): item_id for item_id in missing}
        table = item_states

        async def read() -> None:
            async with self._reader.connect() as connection:
                for chunk in chunked(list(asked)):
                    rows = await connection.execute(
                        select(table.c.item_id, table.c.attempts, table.c.dead).where(
                            table.c.handler == stored_handler(handler),
                            table.c.item_id.in_(chunk),
                        )
                    )
                    for item_id, attempts, dead in rows:
                        found[asked[item_id]] = ItemState(attempts=attempts, dead=bool(dead))

        await uncancelled(read)
        return found

    async def load_controls(self) -> Controls:
        """The persisted controls (validated, see :mod:`novaconsole.store.control_plane`), with
        the changes saved and not yet written laid over them, and every pause whose expiry is
        past on the database clock resumed (a change made by another process shows once it is
        in the database)."""

        async def read() -> tuple[Controls, datetime]:
            async with self._reader.connect() as connection:
                stored = await plane_sql.read_controls(connection)
                expiring = stored.pause is not None or stored.handler_pauses
                # The database clock only matters for a pause that may expire.
                now = await plane_sql.database_now(connection) if expiring else datetime.now(UTC)
                return stored, now

        loaded, now = await uncancelled(read)
        if loaded.effective(now) is not loaded:
            await self.control_plane.expire_pauses()
        for change in (*self._writing_controls, *self._controls):
            loaded = loaded.updated(change)
        return loaded.effective(now)

    async def recent_outcomes(self, limit: int = 200) -> list[ItemOutcome]:
        """The latest ``limit`` outcomes, oldest first, buffered ones included."""
        buffered = self._outcomes.peek()[-limit:] if limit > 0 else []
        wanted = max(limit - len(buffered), 0)
        stored: list[ItemOutcome] = []
        if wanted:

            async def read() -> list[ItemOutcome]:
                async with self._reader.connect() as connection:
                    rows = await connection.execute(
                        select(results).order_by(results.c.id.desc()).limit(wanted)
                    )
                    return [row_outcome(row) for row in rows.mappings()]

            stored = await uncancelled(read)
            stored.reverse()
        return stored + buffered


async def delete_item_state(connection: AsyncConnection, handler: str, item_id: str) -> bool:
    """Forget an item's attempts; True if it had any."""
    stored_name, stored_id = stored_key(handler, item_id)
    statement = item_states.delete().where(
        item_states.c.handler == stored_name, item_states.c.item_id == stored_id
    )
    return bool((await connection.execute(statement)).rowcount > 0)


async def _write(
    connection: AsyncConnection,
    batch: list[ItemOutcome],
    states: dict[StateKey, ItemState | None],
    saved: list[Controls],
    fenced: bool,
    worker_id: str,
) -> list[ItemOutcome]:
    """Write one batch; the outcomes rejected as stale (``fenced``: tokens are checked)."""
    rejected: list[ItemOutcome] = []
    if batch and fenced:
        batch, rejected = await _fence(connection, batch)
    if batch:
        await _insert_results(connection, batch, worker_id)
    if states:
        stored = {key: stored_key(*key) for key in states}
        await connection.execute(
            item_states.delete().where(
                item_states.c.handler == bindparam("k_handler"),
                item_states.c.item_id == bindparam("k_item_id"),
            ),
            [{"k_handler": handler, "k_item_id": item_id} for handler, item_id in stored.values()],
        )
        now = datetime.now(UTC)
        rows = [
            {
                "handler": stored[key][0],
                "item_id": stored[key][1],
                "attempts": state.attempts,
                "dead": state.dead,
                "updated_at": now,
            }
            for key, state in states.items()
            if state is not None
        ]
        if rows:
            await connection.execute(item_states.insert(), rows)
    for change in saved:
        await plane_sql.save_change(connection, change, change.by or worker_id)
    return rejected


async def _fence(
    connection: AsyncConnection, batch: list[ItemOutcome]
) -> tuple[list[ItemOutcome], list[ItemOutcome]]:
    """Mark done the claims of the batch's outcomes whose token is current; (the outcomes to
    write, the stale ones). Outcomes without a token (no claim was made) all pass."""
    keys = {
        id(o): (*stored_key(o.handler, o.item_id), o.token) for o in batch if o.token is not None
    }
    if not keys:
        return batch, []
    accepted = await claim_sql.finish(connection, set(keys.values()))
    if len(accepted) == len(keys):  # every claim current, each once
        return batch, []
    kept: list[ItemOutcome] = []
    stale: list[ItemOutcome] = []
    for outcome in batch:
        key = keys.get(id(outcome))
        if key is None:
            kept.append(outcome)
        elif key in accepted:
            accepted.discard(key)  # one outcome per claim, even if handed over twice
            kept.append(outcome)
        else:
            stale.append(outcome)
    return kept, stale


async def _insert_results(
    connection: AsyncConnection, batch: list[ItemOutcome], worker_id: str
) -> None:
    """Insert a batch of results the cheapest way the driver offers: executemany of plain
    tuples on SQLite, a binary COPY on asyncpg, Core executemany anywhere else."""
    dialect = connection.dialect
    if dialect.name == "sqlite":
        rows = [driver_row(outcome, True, worker_id) for outcome in batch]
        await connection.exec_driver_sql(SQLITE_INSERT, rows)
    elif dialect.driver == "asyncpg":
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        if not driver.is_in_transaction():
            # SQLAlchemy's adapter begins its transaction with the first statement sent
            # through it; the COPY goes to the driver directly, so begin it first.
            await connection.exec_driver_sql("SELECT 1")
        await driver.copy_records_to_table(
            results.name,
            records=[driver_row(outcome, False, worker_id) for outcome in batch],
            columns=ROW_COLUMNS,
            schema_name=results.schema,
        )
    else:
        await connection.execute(results.insert(), [outcome_row(o, worker_id) for o in batch])
