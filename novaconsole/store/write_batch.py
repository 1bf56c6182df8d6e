"""One write transaction of the store's writer: items' ``ctx.write()`` statements, outcome
rows, the claims' completion, item states and controls, committed together.

The batch first runs in one transaction with consecutive uses of a statement merged into one
executemany. If an item's statement fails, the transaction is rolled back and replayed with a
savepoint per item (its claim's completion inside it), so the failing item is rolled back and
fails alone while every other item and outcome commits. A database fault (see
:mod:`novaconsole.store.faults`) is never replayed: it propagates, and the store holds the whole
batch and retries it later without charging any item.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from novaconsole.engine.outcomes import ItemOutcome
from novaconsole.engine.persistence import Controls, ItemState
from novaconsole.store import claims as claim_sql
from novaconsole.store import started as start_marks
from novaconsole.store.control_plane import save_change
from novaconsole.store.end_records import EndRecorder
from novaconsole.store.faults import is_database_fault
from novaconsole.store.models import item_states, results, stored_key
from novaconsole.store.rows import ROW_COLUMNS, SQLITE_INSERT, driver_row, outcome_row
from novaconsole.store.sqlite_writes import DriverWrites, SqliteDirect, write_sqlite

if TYPE_CHECKING:
    from sqlalchemy.sql import Executable

    from novaconsole.engine.writes import ItemWrites, Params, WriteDone

StateKey = tuple[str, str]


@dataclass(slots=True, eq=False)
class PendingWrites:
    """One item's ``ctx.write()`` statements and the outcome to write with them."""

    writes: ItemWrites
    outcome: ItemOutcome | None
    done: WriteDone
    error: BaseException | None = None
    """Set when the item's own statements failed (they were rolled back, no outcome)."""


@dataclass(slots=True)
class Batch:
    """Everything one transaction writes."""

    items: list[PendingWrites] = field(default_factory=list)
    outcomes: list[ItemOutcome] = field(default_factory=list)
    states: dict[StateKey, ItemState | None] = field(default_factory=dict)
    controls: list[Controls] = field(default_factory=list)
    """Control changes in the order they were made (each with its ``by``, audited)."""
    forget: set[StateKey] = field(default_factory=set)
    """Start marks to remove besides those of the outcomes written."""
    marks: bool = False
    """Whether start marks may exist: an outcome written removes its item's."""
    starts: start_marks.TakenMarks = field(default_factory=start_marks.TakenMarks)
    """Start marks to write (before the outcomes' remove any), as ``run_id``'s."""
    run_id: str = ""

    def __bool__(self) -> bool:
        return bool(
            self.items or self.outcomes or self.states or self.controls or self.forget
        ) or bool(self.starts)

    @property
    def size(self) -> int:
        """Outcomes it holds (an item with writes counts as one)."""
        return len(self.items) + len(self.outcomes)


async def commit_batch(
    engine: AsyncEngine,
    batch: Batch,
    *,
    fenced: bool,
    worker_id: str,
    end_recorder: EndRecorder,
    direct: SqliteDirect | None = None,
) -> list[ItemOutcome]:
    """See :func:`write_batch`; then, when fenced, the claims ended get their end record
    (``end_recorder``).
    A plain batch (outcomes and start marks only, not fenced) goes through ``direct`` when
    there is one (SQLite)."""
    if direct is not None and not fenced and not (batch.items or batch.states or batch.controls):
        await direct.write(partial(_sqlite_rows, batch.outcomes, batch, worker_id))
        return []
    ending = claim_sql.new_end() if fenced else None
    rejected = await write_batch(engine, batch, ending=ending, worker_id=worker_id)
    if ending is not None:
        stale = {id(o) for o in rejected}
        ended = (*(e.outcome for e in batch.items if e.error is None), *batch.outcomes)
        if any(o is not None and o.token is not None and id(o) not in stale for o in ended):
            await end_recorder.ended(ending)
    return rejected


async def write_batch(
    engine: AsyncEngine, batch: Batch, *, ending: int | None, worker_id: str
) -> list[ItemOutcome]:
    """Write ``batch`` in one transaction; the outcomes rejected as stale. With an ``ending``
    (fenced) the claims it ends get that end record, and an outcome whose worker lost the claim
    is stale. Items whose statements failed get ``error`` set and no outcome row. Raises on a
    database fault (nothing written)."""
    for entry in batch.items:
        entry.error = None
    try:
        async with engine.begin() as connection:
            return await _write(connection, batch, ending, worker_id, replay=False)
    except Exception as error:
        if not batch.items or is_database_fault(error):
            raise
    async with engine.begin() as connection:
        return await _write(connection, batch, ending, worker_id, replay=True)


async def _write(
    connection: AsyncConnection,
    batch: Batch,
    ending: int | None,
    worker_id: str,
    *,
    replay: bool,
) -> list[ItemOutcome]:
    rejected: list[ItemOutcome] = []
    written: list[ItemOutcome] = []
    if replay:
        for entry in batch.items:
            await _replay_item(connection, entry, ending, written, rejected)
        outcomes = batch.outcomes
    else:
        outcomes = [e.outcome for e in batch.items if e.outcome is not None] + batch.outcomes
    if outcomes and ending is not None:
        outcomes, stale = await _fence(connection, outcomes, ending)
        rejected.extend(stale)
    if not replay:
        stale_ids = {id(o) for o in rejected}
        for statement, params in _merged(batch.items, lambda o: id(o) not in stale_ids):
            await connection.execute(statement, params)
    written.extend(outcomes)
    if connection.dialect.name == "sqlite":
        # Rows as the driver takes them, built and written on its thread in one hand-off.
        await write_sqlite(connection, partial(_sqlite_rows, written, batch, worker_id))
    else:
        await start_marks.upsert_all(connection, batch.starts.marks, batch.run_id)
        if written:
            await _insert_results(connection, written, worker_id)
        if batch.marks and written:
            await start_marks.delete(connection, {(o.handler, str(o.item_id)) for o in written})
        if batch.marks and batch.forget:
            await start_marks.delete(connection, batch.forget, run_id=batch.run_id)
    if batch.states:
        await _write_states(connection, batch.states)
    for change in batch.controls:
        await save_change(connection, change, change.by or worker_id)
    return rejected


async def _replay_item(
    connection: AsyncConnection,
    entry: PendingWrites,
    ending: int | None,
    written: list[ItemOutcome],
    rejected: list[ItemOutcome],
) -> None:
    """One item in its own savepoint: its claim's completion, then its statements."""
    outcome = entry.outcome
    savepoint = await connection.begin_nested()
    try:
        if outcome is not None and ending is not None:
            _, stale = await _fence(connection, [outcome], ending)
            if stale:
                rejected.extend(stale)
                await savepoint.commit()
                return
        for statement, params in entry.writes.statements:
            await connection.execute(statement, params)
    except Exception as error:
        if is_database_fault(error):
            raise
        await savepoint.rollback()
        entry.error = error
        return
    await savepoint.commit()
    if outcome is not None:
        written.append(outcome)


def _merged(
    items: Sequence[PendingWrites], keep: Callable[[ItemOutcome], bool]
) -> list[tuple[Executable, Params]]:
    """The statements of the kept items in order, consecutive uses of one statement object
    with one parameter mapping each merged into a single executemany."""
    merged: list[tuple[Executable, Params]] = []
    run: list[Mapping[str, Any]] = []
    for entry in items:
        if entry.outcome is not None and not keep(entry.outcome):
            continue
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


async def _write_states(
    connection: AsyncConnection, states: dict[StateKey, ItemState | None]
) -> None:
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


async def _fence(
    connection: AsyncConnection, batch: list[ItemOutcome], ending: int
) -> tuple[list[ItemOutcome], list[ItemOutcome]]:
    """Mark done (ended by ``ending``) the claims of the batch's outcomes whose token is
    current; (the outcomes to write, the stale ones). Outcomes without a token (no claim was
    made) all pass."""
    keys = {
        id(o): (*stored_key(o.handler, str(o.item_id)), o.token)
        for o in batch
        if o.token is not None
    }
    if not keys:
        return batch, []
    accepted = await claim_sql.finish(connection, set(keys.values()), ending)
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


def _sqlite_rows(written: list[ItemOutcome], batch: Batch, worker_id: str) -> DriverWrites:
    """The start marks to write, the result rows of ``written`` and the start marks to
    delete (in that order), as SQLite's driver takes them."""
    writes: DriverWrites = []
    if batch.starts:
        starts = start_marks.upsert_rows(batch.starts.marks, batch.run_id)
        writes.append((start_marks.SQLITE_UPSERT, starts))
    rows = [driver_row(outcome, True, worker_id) for outcome in written]
    writes.append((SQLITE_INSERT, rows))
    if batch.marks:  # a key twice is harmless: the second delete finds nothing
        writes += start_marks.sqlite_deletes([(row[0], row[1]) for row in rows])
        forget = start_marks.key_rows(batch.forget)
        writes += start_marks.sqlite_deletes(forget, run_id=batch.run_id)
    return writes


async def _insert_results(
    connection: AsyncConnection, batch: list[ItemOutcome], worker_id: str
) -> None:
    """Insert a batch of results the cheapest way the driver offers: a binary COPY on
    asyncpg, Core executemany anywhere else (SQLite: see :func:`_sqlite_rows`)."""
    dialect = connection.dialect
    if dialect.driver == "asyncpg":
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
