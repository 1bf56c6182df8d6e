"""The fleet in the database: worker heartbeats and operator commands.

The worker side (:func:`beat`, :func:`take_commands`, :func:`mark_stopped`) and the operator
side (:func:`read_workers`, :func:`insert_command`, :func:`write_controls`) both run on a
connection they are given. Times are the database's (see :mod:`novaconsole.store.clock`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from novaconsole.engine.fleet_protocol import Command, WorkerBeat, WorkerView
from novaconsole.engine.operator import check_batch_size, check_concurrency
from novaconsole.engine.persistence import Controls
from novaconsole.store.clock import on_postgresql, sql_now
from novaconsole.store.models import (
    GLOBAL_SCOPE,
    HANDLER_SCOPE,
    UtcDateTime,
    commands,
    controls,
    stored_handler,
    stored_worker_id,
    workers,
)

COMMAND_KINDS = frozenset({"run_once"})
"""Commands a worker carries out (``run_once``, optionally ``{"handler": name}``); anything
else is refused when it is issued, and by the worker that reads it."""
COMMAND_TTL = timedelta(minutes=1)
"""A command no worker took within this long is not carried out any more (no stale run-once
when a worker starts much later)."""
KEEP_STOPPED = timedelta(hours=1)
"""How long a stopped or dead worker stays listed, and taken commands are kept."""
STOPPED = "stopped"


def _upsert(connection: AsyncConnection) -> Any:
    return pg_insert if on_postgresql(connection) else sqlite_insert


async def beat(connection: AsyncConnection, beat: WorkerBeat, lease: float) -> list[WorkerView]:
    """Record ``beat``; the fleet as it stands, this worker included."""
    now = sql_now(connection)
    values = {
        "worker_id": stored_worker_id(beat.worker_id),
        "started_at": beat.started_at,
        "last_beat": now,
        "state": beat.state[:20],
        "in_flight": beat.in_flight,
        "processed": beat.processed,
        "lease": lease,
    }
    statement = _upsert(connection)(workers).values(values)
    changed = {key: value for key, value in values.items() if key != "worker_id"}
    await connection.execute(
        statement.on_conflict_do_update(index_elements=[workers.c.worker_id], set_=changed)
    )
    return await read_workers(connection)


async def read_workers(connection: AsyncConnection) -> list[WorkerView]:
    """Every worker listed, by id; ``alive``: heard from within its lease and not stopped."""
    now = sql_now(connection)
    if isinstance(now, datetime):  # bound (SQLite): typed so that it reads back as one
        now = literal(now, UtcDateTime())
    query = select(workers, now.label("now"))
    rows = list(await connection.execute(query.order_by(workers.c.worker_id)))
    clock = rows[0].now if rows else datetime.now(UTC)
    return [
        WorkerView(
            worker_id=row.worker_id,
            state=row.state,
            in_flight=row.in_flight,
            processed=row.processed,
            started_at=row.started_at,
            last_beat=row.last_beat,
            alive=row.state != STOPPED and row.last_beat > clock - timedelta(seconds=row.lease),
        )
        for row in rows
    ]


async def mark_stopped(connection: AsyncConnection, worker_id: str) -> None:
    """A worker left cleanly: listed as stopped rather than dead."""
    await connection.execute(
        update(workers)
        .where(workers.c.worker_id == stored_worker_id(worker_id))
        .values(state=STOPPED, in_flight=0, last_beat=sql_now(connection))
    )


def _untaken(connection: AsyncConnection) -> ColumnElement[bool]:
    """Commands no worker has taken and that have not expired."""
    fresh: ColumnElement[bool] = commands.c.created_at > sql_now(connection) - COMMAND_TTL
    return and_(commands.c.taken_by.is_(None), fresh)


async def commands_waiting(connection: AsyncConnection) -> bool:
    """Whether any command waits to be taken: a read, so that polling for commands costs
    no write transaction while there are none (almost always)."""
    found = await connection.scalar(select(commands.c.id).where(_untaken(connection)).limit(1))
    return found is not None


async def take_commands(connection: AsyncConnection, worker_id: str) -> list[Command]:
    """Take every command no worker has taken yet (and not expired): each goes to one worker
    (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one writer at a time)."""
    now = sql_now(connection)
    untaken = (
        select(commands.c.id)
        .where(_untaken(connection))
        .order_by(commands.c.id)
        .with_for_update(skip_locked=True)
    )
    rows = await connection.execute(
        update(commands)
        .where(commands.c.id.in_(untaken.scalar_subquery()), commands.c.taken_by.is_(None))
        .values(taken_by=stored_worker_id(worker_id), taken_at=now)
        .returning(commands.c.id, commands.c.kind, commands.c.args)
    )
    return sorted(
        (Command(id=row.id, kind=row.kind, args=dict(row.args or {})) for row in rows),
        key=lambda command: command.id,
    )


async def prune(connection: AsyncConnection) -> int:
    """Forget workers silent (and commands taken or expired) for :data:`KEEP_STOPPED`."""
    before = sql_now(connection) - KEEP_STOPPED
    gone = await connection.execute(delete(workers).where(workers.c.last_beat < before))
    done = await connection.execute(delete(commands).where(commands.c.created_at < before))
    return int(gone.rowcount) + int(done.rowcount)


# ---------------------------------------------------------------------- the operator side


def validate_command(kind: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The arguments of a valid command; ``ValueError`` naming the problem otherwise."""
    if kind not in COMMAND_KINDS:
        known = ", ".join(sorted(COMMAND_KINDS))
        raise ValueError(f"unknown fleet command {kind!r} (known: {known})")
    args = dict(args or {})
    handler = args.pop("handler", None)
    if args:
        raise ValueError(f"fleet command {kind!r} takes only a handler, got {sorted(args)}")
    if handler is None:
        return {}
    if not isinstance(handler, str) or not handler:
        raise ValueError(f"fleet command {kind!r}: handler must be a name, got {handler!r}")
    return {"handler": handler}


def check_controls(concurrency: int | None, batch_sizes: Mapping[str, int] | None) -> None:
    """``ValueError`` for a concurrency or a batch size outside what a control may set
    (:mod:`novaconsole.engine.operator`)."""
    if concurrency is not None:
        check_concurrency(concurrency)
    for name, size in (batch_sizes or {}).items():
        try:
            check_batch_size(size)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None


async def insert_command(
    connection: AsyncConnection, kind: str, args: Mapping[str, Any] | None = None
) -> int:
    """Queue a validated fleet command; its id."""
    checked = validate_command(kind, args)
    result = await connection.execute(
        commands.insert()
        .values(kind=kind, args=checked, created_at=sql_now(connection))
        .returning(commands.c.id)
    )
    return int(result.scalar_one())


async def write_controls(
    connection: AsyncConnection,
    *,
    paused: bool | None = None,
    concurrency: int | None = None,
    handler_paused: Mapping[str, bool] | None = None,
    batch_sizes: Mapping[str, int] | None = None,
) -> None:
    """Change some controls for the whole fleet (every worker follows within a second); what
    is not given is left as it is. ``ValueError`` for a concurrency or batch size below 1."""
    check_controls(concurrency, batch_sizes)
    upsert = _upsert(connection)
    changes: list[tuple[str, str, dict[str, Any]]] = []
    global_values: dict[str, Any] = {}
    if paused is not None:
        global_values["paused"] = paused
    if concurrency is not None:
        global_values["concurrency"] = concurrency
    if global_values:
        changes.append((GLOBAL_SCOPE, "", global_values))
    for name in sorted(set(handler_paused or {}) | set(batch_sizes or {})):
        values: dict[str, Any] = {}
        if handler_paused and name in handler_paused:
            values["paused"] = handler_paused[name]
        if batch_sizes and name in batch_sizes:
            values["batch_size"] = batch_sizes[name]
        changes.append((HANDLER_SCOPE, stored_handler(name), values))
    for scope, name, values in changes:
        await connection.execute(
            upsert(controls)
            .values(scope=scope, name=name, **values)
            .on_conflict_do_update(index_elements=[controls.c.scope, controls.c.name], set_=values)
        )


async def read_controls(connection: AsyncConnection) -> Controls:
    """The controls saved for the whole fleet."""
    loaded = Controls()
    for row in (await connection.execute(select(controls))).mappings():
        if row["scope"] == GLOBAL_SCOPE:
            loaded.paused = row["paused"]
            loaded.concurrency = row["concurrency"]
        elif row["scope"] == HANDLER_SCOPE:
            if row["paused"] is not None:
                loaded.handler_paused[row["name"]] = bool(row["paused"])
            if row["batch_size"] is not None:
                loaded.batch_sizes[row["name"]] = row["batch_size"]
    return loaded


def views_as_dicts(views: Sequence[WorkerView]) -> list[dict[str, Any]]:
    """Workers as JSON-ready data (timestamps in ISO 8601)."""
    return [
        {
            "worker_id": view.worker_id,
            "state": view.state,
            "alive": view.alive,
            "in_flight": view.in_flight,
            "processed": view.processed,
            "started_at": view.started_at.isoformat(),
            "last_beat": view.last_beat.isoformat(),
        }
        for view in views
    ]
