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

import logging
import os
import socket
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, suppress
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from novaconsole import defaults
from novaconsole.engine.crashes import StartMark
from novaconsole.engine.fleet_protocol import Claim
from novaconsole.engine.handler import SessionFactory
from novaconsole.engine.outcomes import ItemOutcome, shown_id
from novaconsole.engine.persistence import Controls, ItemState
from novaconsole.errors import ConfigError
from novaconsole.store import control_plane as plane_sql
from novaconsole.store import started as start_marks
from novaconsole.store import states
from novaconsole.store.breakers import SqlBreakerBoard
from novaconsole.store.control_plane import SqlControlPlane
from novaconsole.store.coordinator import SqlCoordinator
from novaconsole.store.database import (
    BUSY_TIMEOUT_MS,
    IDLE_IN_TRANSACTION_TIMEOUT,
    LOCK_TIMEOUT,
    OPEN_ERRORS,
    create_engine,
    describe_database_error,
    mask_url,
    reader,
    uncancelled,
)
from novaconsole.store.end_records import EndRecorder
from novaconsole.store.faults import is_database_fault, is_row_refusal
from novaconsole.store.models import (
    item_states,
    results,
    stored_handler,
    stored_item_id,
)
from novaconsole.store.outcome_buffer import OutcomeBuffer
from novaconsole.store.queries import delete_item_state
from novaconsole.store.retention import prune_results
from novaconsole.store.rows import row_outcome
from novaconsole.store.schema import ensure_schema
from novaconsole.store.sqlite_writes import DRIVER_QUEUE, SqliteDirect
from novaconsole.store.write_batch import Batch, PendingWrites, StateKey, commit_batch
from novaconsole.triage import FailedRow

if TYPE_CHECKING:
    from novaconsole.engine.writes import ItemWrites, WriteDone
from novaconsole.store.unclaimed import SqlSourceFilter

log = logging.getLogger("novaconsole.store")

_RETRY_MAX = 10.0
"""Longest wait between two tries of a write the database refused: a database back is
noticed within this many seconds."""
_SQLITE_UPSERT_RETURNING = (3, 35, 0)


MARK_BUSY_TIMEOUT_MS = BUSY_TIMEOUT_MS
"""How long marking a batch started waits for the writer to commit the marks, as long as any
write waits for a locked SQLite file (then the engine runs the batch unmarked). Under load a
writer's transaction of thousands of outcomes can take longer than a second."""
OTHERS_MARKS_HELD = 100_000
"""Other runs' marks a store alone on its database keeps in memory (more: it reads the table
at every admission)."""


def _backoff(failures: int) -> float:
    return min(_RETRY_MAX, 0.5 * 2.0 ** min(failures, 8))


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
    ``lock_timeout`` and ``idle_in_transaction_timeout`` (seconds) bound the store's own
    transactions on PostgreSQL (see :mod:`novaconsole.store.database`).
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
        connect_timeout: float = defaults.CONNECT_TIMEOUT.total_seconds(),
        auto_upgrade: bool | None = None,
        lock_timeout: float = LOCK_TIMEOUT,
        idle_in_transaction_timeout: float = IDLE_IN_TRANSACTION_TIMEOUT,
    ) -> None:
        if keep_results_count is not None and keep_results_count < 0:
            raise ValueError("keep_results_count must not be negative")
        self.engine: AsyncEngine = create_engine(
            url, lock_timeout=lock_timeout, idle_in_transaction_timeout=idle_in_transaction_timeout
        )
        self.display_url = mask_url(self.engine.url)
        self._handler_engine = self.engine
        if self.engine.dialect.name == "postgresql":
            # Handlers' sessions may stay in a transaction across a slow call: not under the
            # store's server-side limits; and each connection is pinged before they get it,
            # so that a dead one costs no item an attempt (see novaconsole.store.database).
            self._handler_engine = create_engine(url, limits=False, ping_always=True)
        self.session_factory: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self._handler_engine, expire_on_commit=False
        )
        self.keep_results_age = keep_results_age
        self.keep_results_count = keep_results_count
        self.flush_interval = flush_interval
        self.prune_interval = prune_interval
        self.batch_rows = batch_rows
        self._reader = reader(self.engine)
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        """PostgreSQL: for single statements that write, each its own transaction."""
        self._lock = anyio.Lock()
        self.breaker_board = SqlBreakerBoard(
            self.engine, lock=self._lock if self.engine.dialect.name == "sqlite" else None
        )
        self._wake: anyio.Event | None = None
        self._outcomes = OutcomeBuffer(buffer_capacity, flush_at, wake=self._wake_writer)
        self.connect_timeout = connect_timeout
        self.run_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        """This run, on its start marks (a mark of another run after a restart: a crash)."""
        self._marking = False
        """Start marks may exist: finishing an item removes its own."""
        self._others_marks: dict[str, set[str]] | None = None
        """The stored ids other runs marked, by stored handler, read once at start when no other
        worker shares the database (admission reads the table only for a batch holding one
        of them); None: look for every batch."""
        self._forget: set[StateKey] = set()
        sqlite = self.engine.dialect.name == "sqlite"
        self._direct = SqliteDirect(self.engine) if sqlite and DRIVER_QUEUE else None
        """The writer's own connection for plain batches (one hand-off per transaction)."""
        self._end_recorder = EndRecorder(self.engine if sqlite else self._autocommit)
        """Records claim ends after their outcomes' commit (beside the writer on PostgreSQL)."""
        self._starts = start_marks.PendingMarks()
        """Start marks for the writer's next transaction (admission waits for its commit)."""
        self._items: list[PendingWrites] = []
        """Items' ``ctx.write()`` statements with their outcomes, waiting for the writer."""
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
        self._writing_items: list[PendingWrites] = []
        self._writing_forget: set[StateKey] = set()
        """Start marks of given-back items the transaction under way removes."""
        self.keep_claims = keep_claims
        self.auto_upgrade = auto_upgrade
        self.rejected_outcomes = 0
        """Outcomes not written because their worker had lost the item's claim."""
        self.refused_outcomes = 0
        """Outcomes not written because the database refused their row (a constraint, a
        trigger): each logged, never retried (counted among the written: they are done)."""
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
        self.round_trips = self.engine.dialect.name != "sqlite"
        """Whether the database is a server reached by round trips, not a file this process
        reads and writes itself (SQLite)."""
        self.source_filter = SqlSourceFilter(
            self.engine.dialect.name, claimed=self.coordinator is not None
        )
        """What ``ctx.unclaimed()`` adds to a handler's select (claims only when shared)."""
        self.control_plane = SqlControlPlane(
            self.engine,
            lock=self._lock if self.engine.dialect.name == "sqlite" else None,
            worker_id=lambda: self.worker_id,
            write_buffered=self.flush,
        )
        """Audit, retry requests, and commands and heartbeats when no coordinator takes them."""

    def _set_worker(self, worker_id: str) -> None:
        self.worker_id = worker_id

    def _buffered_claims(self) -> Iterator[Claim]:
        for outcome in (*self._writing_batch, *self._outcomes.peek(), *self._item_outcomes()):
            if outcome.token is not None:
                yield Claim(outcome.handler, str(outcome.item_id), outcome.token)

    def _item_outcomes(self) -> Iterator[ItemOutcome]:
        for entry in (*self._writing_items, *self._items):
            if entry.outcome is not None:
                yield entry.outcome

    def __repr__(self) -> str:
        return f"SqlStore({self.display_url!r})"

    @property
    def dropped_outcomes(self) -> int:
        """Outcomes dropped because the buffer was full (see
        :mod:`novaconsole.store.outcome_buffer`)."""
        return self._outcomes.dropped

    @property
    def buffered_outcomes(self) -> int:
        """Outcomes recorded and not yet written (items' writes waiting included)."""
        return len(self._outcomes) + len(self._items)

    @property
    def unwritten_outcomes(self) -> int:
        """Outcomes recorded and not yet committed, the batch being written included."""
        return self._recorded - self._written - self._outcomes.dropped

    def unwritten_since(self) -> datetime | None:
        """When the oldest outcome not yet committed was produced (``None``: every one is);
        the time since is the outcome-write lag."""
        oldest = [self._outcomes.oldest(), *self._writing_batch[:1]]
        for entries in (self._writing_items, self._items):
            oldest.append(next((e.outcome for e in entries if e.outcome is not None), None))
        return min((o.finished_at for o in oldest if o is not None), default=None)

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Create the schema on first use; upgrade an older one only with ``auto_upgrade``
        (else refuse it, naming the command to run); refuse a newer one.

        A database that cannot be reached (or is locked, or full) is retried with backoff for
        up to :attr:`connect_timeout` seconds, a line logged per try, before giving up with a
        :class:`~novaconsole.errors.ConfigError`.
        """
        deadline = anyio.current_time() + self.connect_timeout
        failures = 0
        while True:
            try:
                await ensure_schema(self.engine, auto_upgrade=self.auto_upgrade)
                break
            except ConfigError as error:
                cause = error.__cause__ or error.__context__
                left = deadline - anyio.current_time()
                if cause is None or not is_database_fault(cause) or self.connect_timeout <= 0:
                    raise
                if left <= 0:
                    raise ConfigError(
                        f"{error.message} (still failing after {self.connect_timeout:g}s: "
                        "[database] connect_timeout)",
                        key="database.url",
                    ) from None
                failures += 1
                delay = min(_backoff(failures), left)
                log.warning(
                    "cannot open database %s (%s); retrying in %.1fs, for up to %gs",
                    self.display_url,
                    describe_database_error(cause, self.engine.url),
                    delay,
                    self.connect_timeout,
                )
                await anyio.sleep(delay)
        await self._check_states_in_db()
        await self._check_others_marks()

    async def run(self) -> None:
        """Flush as soon as items' writes wait (group commit) and at least every
        ``flush_interval``, and prune old results, until cancelled.

        A write that fails is held (nothing is lost, no item is charged) and retried with
        backoff, one line logged per try naming the cause, until the database takes it.
        """
        async with anyio.create_task_group() as group:
            if self.coordinator is not None and self.engine.dialect.name != "sqlite":
                group.start_soon(self._end_recorder.run)  # see novaconsole.store.end_records
            await self._write_loop()

    async def _write_loop(self) -> None:
        self._wake = anyio.Event()
        failures = 0
        next_prune = anyio.current_time() + min(self.prune_interval, 5.0)
        next_states_check = 0.0
        while True:
            if not self._items and not self._starts:
                with anyio.move_on_after(self.flush_interval):
                    await self._wake.wait()
            self._wake = anyio.Event()
            try:
                await self.flush()
                # Once a tick, not after every flush: under load the writer flushes back to
                # back, and admission waits for it (start marks).
                if not self._states_in_db and anyio.current_time() >= next_states_check:
                    next_states_check = anyio.current_time() + self.flush_interval
                    await self._check_states_in_db()
                if anyio.current_time() >= next_prune:
                    next_prune = anyio.current_time() + self.prune_interval
                    await self.prune()
            except OPEN_ERRORS as error:
                failures += 1
                delay = _backoff(failures)
                log.error(
                    "cannot write to database %s (%s); %d outcomes waiting, retrying in %.1fs",
                    self.display_url,
                    describe_database_error(error, self.engine.url),
                    self.buffered_outcomes,
                    delay,
                )
                await anyio.sleep(delay)
            else:
                if failures:
                    log.warning("writing to database %s again", self.display_url)
                failures = 0

    async def close(self) -> None:
        """Write everything buffered, then release the connections.

        If the database cannot take the last writes, they are logged as lost (an error, not an
        exception: the service is stopping either way). Items whose writes are lost were not
        recorded: their source still has them, and the next run processes them again.
        """
        try:
            with anyio.CancelScope(shield=True):
                await self.flush()
                await self._end_recorder.flush()
                if self.coordinator is not None:
                    await self.coordinator.stop()
                else:
                    await self.control_plane.stop()
        except OPEN_ERRORS as error:
            log.error(
                "cannot write to database %s (%s): %d outcomes and %d item states are lost",
                self.display_url,
                describe_database_error(error, self.engine.url),
                self.buffered_outcomes,
                len(self._states),
            )
        finally:
            with anyio.CancelScope(shield=True):
                if self._direct is not None:
                    with suppress(*OPEN_ERRORS):
                        await self._direct.close()
                await self.engine.dispose()
                if self._handler_engine is not self.engine:
                    await self._handler_engine.dispose()

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

    def submit_writes(
        self, writes: ItemWrites, outcome: ItemOutcome | None, done: WriteDone
    ) -> None:
        """Write an item's ``ctx.write()`` statements and its outcome in one transaction (with
        other items' and everything buffered), as soon as the writer is free; then ``done``."""
        self._items.append(PendingWrites(writes, outcome, done))
        if outcome is not None:
            self._recorded += 1
        if self._wake is not None:
            self._wake.set()

    async def flush(self) -> int:
        """Write what is buffered now, in batches; the number of outcomes written."""
        written = 0
        todo = len(self._outcomes) + len(self._items)
        while True:
            async with self._lock:
                batch = self._take()
                if not batch:
                    return written
                self._writing_states, self._writing_controls = batch.states, batch.controls
                if any(state is not None for state in batch.states.values()):
                    self._states_in_db = True
                    self._states_generation += 1
                self._writing_batch, self._writing_items = batch.outcomes, batch.items
                self._writing_forget = batch.forget
                try:
                    rejected = await self._write_refusing(batch)
                finally:
                    self._writing_states, self._writing_controls = {}, []
                    self._writing_batch, self._writing_items = [], []
                    self._writing_forget = set()
            self._account(batch, rejected)
            written += batch.size
            if written >= todo:
                return written

    def _account(self, batch: Batch, rejected: list[ItemOutcome]) -> None:
        """After ``batch`` is committed (or refused row by row): counts, items told, waiters."""
        batch.starts.committed()
        if rejected:
            self._rejected(rejected)
        self._outcomes.written()
        self._written += len(batch.outcomes) + sum(1 for e in batch.items if e.outcome is not None)
        for entry in batch.items:
            entry.done(entry.error)  # failed: the engine records the failure instead
        if self._progress is not None:
            self._progress.set()
            self._progress = None

    async def _write_refusing(self, batch: Batch) -> list[ItemOutcome]:
        """Commit ``batch``; the stale outcomes. A batch the database refuses for its rows'
        sake (see :func:`~novaconsole.store.faults.is_row_refusal`: a constraint, a trigger, a
        value a column rejects, the same every time) is written in halves, down to each row
        it refuses, which is left out with one line logged: never retried as a whole, so one
        bad row cannot wedge the writer. Any other error (a database fault) puts back what
        is not committed yet, and raises: the writer holds it and retries."""
        try:
            return await self._write_shielded(batch)
        except Exception as error:
            if not is_row_refusal(error):  # a fault, or unknown: held and retried
                self._put_back(batch)
                raise
            first = error
        except BaseException:
            self._put_back(batch)
            raise
        units = _units(batch)
        log.warning(
            "the database refused a batch of %d rows (%s); writing it in parts to find the rows "
            "it refuses",
            len(units),
            describe_database_error(first, self.engine.url),
        )
        pending: list[list[Batch]] = [units]
        rejected: list[ItemOutcome] = []
        done: list[Batch] = []
        group: list[Batch] = []
        try:
            while pending:
                group = pending.pop()
                try:
                    rejected += await self._write_shielded(_merged_batch(group, batch))
                except Exception as error:
                    if not is_row_refusal(error):
                        raise
                    if len(group) > 1:
                        half = len(group) // 2
                        pending += [group[half:], group[:half]]  # the first half first
                        continue
                    self._refused(group[0], error)
                done += group
                group = []
        except BaseException:
            left = [*group, *(unit for part in reversed(pending) for unit in part)]
            self._put_back(_merged_batch(left, batch))
            self._account(_merged_batch(done, batch), rejected)
            raise
        return rejected

    def _refused(self, unit: Batch, error: Exception) -> None:
        """One row (or an item's writes with its outcome) the database refuses: left out."""
        why = describe_database_error(error, self.engine.url)
        if unit.items:
            entry = unit.items[0]
            entry.error = error  # its writes are rolled back; the engine records a failure
            outcome = entry.outcome
            if outcome is not None:
                log.error(
                    "the database refused the writes or the result of %s item %s (%s): the "
                    "item fails, its writes rolled back",
                    outcome.handler,
                    shown_id(outcome.item_id),
                    why,
                    extra={"handler": outcome.handler, "item_id": outcome.item_id},
                )
        elif unit.outcomes:
            outcome = unit.outcomes[0]
            self.refused_outcomes += 1
            log.error(
                "the database refused the result of %s item %s (%s, %s): it is not recorded",
                outcome.handler,
                shown_id(outcome.item_id),
                outcome.status.value,
                why,
                extra={"handler": outcome.handler, "item_id": outcome.item_id},
            )
        else:
            log.error(
                "the database refused %d item states and %d control changes (%s): not written",
                len(unit.states),
                len(unit.controls),
                why,
            )

    def _take(self) -> Batch:
        """The next batch: start marks alone when there are any (admission waits for them:
        their transaction is short), else items' writes first, then buffered outcomes,
        states, controls."""
        if self._starts:
            return Batch(marks=True, starts=self._starts.take(), run_id=self.run_id)
        items = self._items[: self.batch_rows]
        del self._items[: len(items)]
        outcomes = self._outcomes.take(max(self.batch_rows - len(items), 0))
        states, self._states = self._states, {}
        saved, self._controls = self._controls, []
        forget, self._forget = self._forget, set()
        return Batch(items, outcomes, states, saved, forget, self._marking, run_id=self.run_id)

    def _put_back(self, batch: Batch) -> None:
        """Keep a batch that could not be written, under anything buffered since."""
        self._items[:0] = batch.items
        self._outcomes.put_back(batch.outcomes)
        self._states = {**batch.states, **self._states}
        self._forget |= batch.forget
        self._starts.put_back(batch.starts)
        self._controls = batch.controls + self._controls  # not written: keep the order

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

    async def _write_shielded(self, batch: Batch) -> list[ItemOutcome]:
        fenced = self.coordinator is not None
        worker_id = self.worker_id

        async def write() -> list[ItemOutcome]:
            return await commit_batch(
                self.engine,
                batch,
                fenced=fenced,
                worker_id=worker_id,
                end_recorder=self._end_recorder,
                direct=self._direct,
            )

        return await uncancelled(write)

    # ------------------------------------------------------------------ start marks

    async def started_items(self, handler: str, keys: Sequence[str]) -> Mapping[str, StartMark]:
        """The start marks other runs left on ``keys`` (crash suspects)."""
        if not keys:
            return {}
        if self._others_marks is not None:
            # A crash can leave marks on items their source never returns again: without
            # this, every batch after it would read the table for nothing.
            marked = self._others_marks.get(stored_handler(handler))
            if not marked or marked.isdisjoint(stored_item_id(key) for key in keys):
                return {}

        async def read() -> dict[str, StartMark]:
            async with self._reader.connect() as connection:
                return await start_marks.read(connection, handler, keys, self.run_id)

        return await uncancelled(read)

    async def start_items(self, handler: str, keys: Sequence[str]) -> Mapping[str, StartMark]:
        """Mark ``keys`` started by this run, committed before return; the marks other runs
        left on them (crash suspects), whose crashes (one more if left running alone) the new
        marks carry on."""
        # A removal from an earlier give-back of these items would take the new marks: they
        # would then run unmarked, and a crash would go uncounted. One the writer is making
        # now is waited for (PostgreSQL writes the marks beside the writer, not through it);
        # one still queued is dropped.
        if self._writing_forget.intersection((handler, key) for key in keys):
            async with self._lock:
                pass
        if self._forget:
            self._forget.difference_update((handler, key) for key in keys)
        if self.engine.dialect.name == "sqlite":  # through the writer (see started.py)
            found = await self.started_items(handler, keys)
            counted = {key: mark.crashes + mark.alone for key, mark in found.items()}
            await self.mark_started(handler, {key: counted.get(key, 0) for key in keys})
            return found
        self._marking = True

        async def start() -> dict[str, StartMark]:
            async with self._autocommit.connect() as connection:
                return await start_marks.start(connection, handler, keys, self.run_id)

        return await uncancelled(start)

    async def mark_started(self, handler: str, marks: Mapping[str, int]) -> None:
        """Mark items (key: crashes counted) started by this run, committed before return."""
        self._marking = True
        rows = {key: (False, crashes) for key, crashes in marks.items()}
        await self._mark(handler, rows)

    async def mark_alone(self, handler: str, key: str, crashes: int, alone: bool) -> None:
        """Mark one item (not) running alone, committed before return."""
        self._marking = True
        await self._mark(handler, {key: (alone, crashes)})

    def forget_started(self, handler: str, keys: Sequence[str]) -> None:
        """Remove this run's marks on ``keys`` (given back unfinished), in the next batch."""
        if self._marking:
            self._forget.update((handler, key) for key in keys)

    async def _mark(self, handler: str, rows: Mapping[str, tuple[bool, int]]) -> None:
        # Written by the writer in its next transaction (one writer: no lock to wait for, no
        # transaction of their own), at once. A database that is locked for long must not
        # hold up admission: after MARK_BUSY_TIMEOUT_MS the engine runs the batch unmarked
        # (the marks are still written with the writer's next batch).
        committed = self._starts.add(handler, rows)
        if self._wake is None:  # no writer running: write them now
            await self.flush()
            return
        self._wake.set()
        with anyio.move_on_after(MARK_BUSY_TIMEOUT_MS / 1000):
            await committed.wait()
            return
        raise TimeoutError(
            f"the writer did not commit them within {MARK_BUSY_TIMEOUT_MS / 1000:g}s"
        )

    async def _check_others_marks(self) -> None:
        if self.coordinator is not None:
            return  # other live workers leave marks at any time: always look

        async def marked() -> dict[str, set[str]] | None:
            async with self._reader.connect() as connection:
                return await start_marks.others(connection, self.run_id, OTHERS_MARKS_HELD)

        self._others_marks = await uncancelled(marked)

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

        async def read() -> None:
            async with self._reader.connect() as connection:
                for item_id, state in (await states.read(connection, handler, list(asked))).items():
                    found[asked[item_id]] = state

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

    def rolled_back_sessions(self) -> AbstractAsyncContextManager[SessionFactory]:
        """Sessions joined to one transaction rolled back at the end (a peek)."""
        from novaconsole.store.peek import rolled_back_sessions

        return rolled_back_sessions(self._handler_engine)

    async def failed_rows(self, handler: str | None = None) -> list[FailedRow]:
        """Each item whose latest outcome (flushed) is a failure (:mod:`novaconsole.triage`)."""
        return await _failed_rows(self, handler)

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


def _units(batch: Batch) -> list[Batch]:
    """``batch`` as batches of one thing each: an item's writes, an outcome, the rest."""
    units = [Batch(items=[entry]) for entry in batch.items]
    units += [Batch(outcomes=[outcome]) for outcome in batch.outcomes]
    if batch.states or batch.controls or batch.forget:
        units.append(Batch(states=batch.states, controls=batch.controls, forget=batch.forget))
    if batch.starts:
        units.append(Batch(marks=True, starts=batch.starts, run_id=batch.run_id))
    return units


def _merged_batch(units: Sequence[Batch], whole: Batch) -> Batch:
    """``units`` of ``whole`` (see :func:`_units`) as one batch again."""
    merged = Batch(marks=whole.marks, run_id=whole.run_id)
    for unit in units:
        merged.items += unit.items
        merged.outcomes += unit.outcomes
        merged.states.update(unit.states)
        merged.controls += unit.controls
        merged.forget |= unit.forget
        if unit.starts:  # a batch holds one taken set of marks at most
            merged.starts = unit.starts
    return merged


async def _failed_rows(store: SqlStore, handler: str | None) -> list[FailedRow]:
    from novaconsole.store.triage import failed_rows

    async def read() -> list[FailedRow]:
        async with store._reader.connect() as connection:
            return await failed_rows(connection, handler)

    return await uncancelled(read)
