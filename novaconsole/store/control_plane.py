"""The control plane in the database: controls with who paused and until when, the audit
history, fleet commands and retry requests.

Everything here runs on a connection it is given (a worker's store, or an operator's command
through :class:`~novaconsole.store.operator.OperatorClient`). Values are validated where they
are read: a concurrency or batch size outside its range is clamped, anything else unusable is
refused; each refusal is logged once per process. Times are the database clock.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from novaconsole.engine.fleet_protocol import Command, WorkerBeat, WorkerView
from novaconsole.engine.operator import (
    AUDIT_KEEP,
    MAX_BATCH_SIZE,
    MAX_CONCURRENCY,
    AuditEntry,
    PauseInfo,
    RetryStatus,
    clamp,
)
from novaconsole.engine.persistence import Controls
from novaconsole.redaction import redact
from novaconsole.store import fleet
from novaconsole.store.database import reader, uncancelled
from novaconsole.store.fleet import write_controls
from novaconsole.store.models import (
    GLOBAL_SCOPE,
    HANDLER_LENGTH,
    HANDLER_SCOPE,
    ITEM_ID_LENGTH,
    REASON_LENGTH,
    WORKER_ID_LENGTH,
    audit,
    controls,
    pauses,
    retries,
)

log = logging.getLogger("novaconsole.store")
T = TypeVar("T")
RETRY_LOOK = 0.5
"""Seconds between two looks for retry requests."""

_refused: set[str] = set()


def refuse_once(message: str) -> None:
    """Log a refused control or command, once per process for the same message."""
    if message not in _refused:
        _refused.add(message)
        log.warning("%s", message)


def _pg(connection: AsyncConnection) -> bool:
    return connection.dialect.name == "postgresql"


def sql_now(connection: AsyncConnection) -> Any:
    """The database clock for a statement: ``now()`` on PostgreSQL, a bound value on SQLite
    (one machine's clock, shared by every process on the file)."""
    return func.now() if _pg(connection) else datetime.now(UTC)


async def database_now(connection: AsyncConnection) -> datetime:
    if not _pg(connection):
        return datetime.now(UTC)
    value = await connection.scalar(select(func.now()))
    assert isinstance(value, datetime)
    return value.astimezone(UTC)


def _short(text: str | None, length: int = REASON_LENGTH) -> str | None:
    return redact(text)[:length] if text else None


# ---------------------------------------------------------------------- controls


async def read_controls(connection: AsyncConnection) -> Controls:
    """The controls as stored, validated (concurrency 1..:data:`MAX_CONCURRENCY`, batch sizes
    1..:data:`MAX_BATCH_SIZE`, clamped), with who paused; expired pauses not yet resumed
    (see :meth:`Controls.effective`)."""
    loaded = Controls()
    for row in (await connection.execute(select(controls))).mappings():
        scope, name = row["scope"], row["name"]
        if scope == GLOBAL_SCOPE:
            loaded.paused = None if row["paused"] is None else bool(row["paused"])
            loaded.concurrency = _clamped("concurrency", row["concurrency"], MAX_CONCURRENCY)
        elif scope == HANDLER_SCOPE:
            if row["paused"] is not None:
                loaded.handler_paused[name] = bool(row["paused"])
            size = _clamped(f"batch size of {name}", row["batch_size"], MAX_BATCH_SIZE)
            if size is not None:
                loaded.batch_sizes[name] = size
        else:
            refuse_once(f"ignoring a control row of unknown scope {scope!r}")
    if not loaded.paused and not any(loaded.handler_paused.values()):
        return loaded  # nothing paused: no pause to describe (the usual case, one query)
    for row in (await connection.execute(select(pauses))).mappings():
        info = PauseInfo(
            by=row["paused_by"],
            at=row["paused_at"],
            reason=_short(row["reason"]),
            resumes_at=row["resumes_at"],
        )
        if row["scope"] == GLOBAL_SCOPE and loaded.paused:
            loaded.pause = info
        elif row["scope"] == HANDLER_SCOPE and loaded.handler_paused.get(row["name"]):
            loaded.handler_pauses[row["name"]] = info
    return loaded


def _clamped(what: str, value: Any, highest: int) -> int | None:
    if value is None:
        return None
    clamped = clamp(value, highest)
    if clamped is None:
        refuse_once(f"ignoring stored {what} {value!r}: not a whole number")
    elif clamped != value:
        refuse_once(f"stored {what} {value!r} is outside 1..{highest}: using {clamped}")
    return clamped


async def save_change(connection: AsyncConnection, change: Controls, by: str) -> list[AuditEntry]:
    """Write what ``change`` sets (with who paused, why and until when) and an audit entry
    for each control it changes; the entries."""
    before = await read_controls(connection)
    now = await database_now(connection)
    entries: list[AuditEntry] = []

    def note(what: str, handler: str | None, old: Any, new: Any, detail: str | None = None) -> None:
        entries.append(
            AuditEntry(now, by, what, handler, _text(old), _text(new), _short(detail, 500))
        )

    if change.paused is not None:
        await _save_pause(connection, GLOBAL_SCOPE, "", change.paused, change.pause, now)
        note(*_pause_entry(None, before.paused, change.paused, change.pause))
    if change.concurrency is not None:
        note("concurrency", None, before.concurrency, change.concurrency)
    for name, paused in sorted(change.handler_paused.items()):
        info = change.handler_pauses.get(name)
        await _save_pause(connection, HANDLER_SCOPE, name, paused, info, now)
        note(*_pause_entry(name, before.handler_paused.get(name), paused, info))
    for name, size in sorted(change.batch_sizes.items()):
        note("batch_size", name, before.batch_sizes.get(name), size)
    await write_controls(
        connection,
        paused=change.paused,
        concurrency=change.concurrency,
        handler_paused=change.handler_paused,
        batch_sizes=change.batch_sizes,
    )
    await add_audit(connection, entries)
    return entries


def _pause_entry(
    handler: str | None, was: bool | None, paused: bool, info: PauseInfo | None
) -> tuple[str, str | None, str, str, str | None]:
    old = "paused" if was else "running"
    if not paused:
        return "resume", handler, old, "running", None
    detail = []
    if info is not None and info.reason:
        detail.append(info.reason)
    if info is not None and info.resumes_at is not None:
        detail.append(f"until {info.resumes_at.isoformat(timespec='seconds')}")
    return "pause", handler, old, "paused", "; ".join(detail) or None


async def _save_pause(
    connection: AsyncConnection,
    scope: str,
    name: str,
    paused: bool,
    info: PauseInfo | None,
    now: datetime,
) -> None:
    key = and_(pauses.c.scope == scope, pauses.c.name == name[:HANDLER_LENGTH])
    await connection.execute(delete(pauses).where(key))
    if paused and info is not None:
        await connection.execute(
            pauses.insert().values(
                scope=scope,
                name=name[:HANDLER_LENGTH],
                paused_by=(info.by or "")[:WORKER_ID_LENGTH] or None,
                paused_at=now,
                reason=_short(info.reason),
                resumes_at=info.resumes_at,
            )
        )


async def expire_pauses(connection: AsyncConnection, by: str) -> list[AuditEntry]:
    """Resume every pause whose expiry is past; each once, fleet-wide (the worker that deletes
    the pause row writes the audit entry)."""
    now = await database_now(connection)
    rows = list(
        (
            await connection.execute(
                select(pauses).where(pauses.c.resumes_at.is_not(None), pauses.c.resumes_at <= now)
            )
        ).mappings()
    )
    entries = []
    for row in rows:
        gone = await connection.execute(
            delete(pauses).where(
                pauses.c.scope == row["scope"],
                pauses.c.name == row["name"],
                pauses.c.resumes_at <= now,
            )
        )
        if gone.rowcount != 1:
            continue  # another worker resumed it first
        await connection.execute(
            update(controls)
            .where(controls.c.scope == row["scope"], controls.c.name == row["name"])
            .values(paused=False)
        )
        handler = row["name"] if row["scope"] == HANDLER_SCOPE else None
        set_by = f" set by {row['paused_by']}" if row["paused_by"] else ""
        entries.append(
            AuditEntry(now, by, "resume", handler, "paused", "running", f"pause{set_by} expired")
        )
    await add_audit(connection, entries)
    return entries


def _text(value: Any) -> str | None:
    return None if value is None else str(value)[:200]


# ---------------------------------------------------------------------- audit


async def add_audit(connection: AsyncConnection, entries: Sequence[AuditEntry]) -> None:
    """Append ``entries``, keeping the latest :data:`AUDIT_KEEP`."""
    if not entries:
        return
    await connection.execute(
        audit.insert(),
        [
            {
                "at": entry.at,
                "by": redact(entry.by)[:WORKER_ID_LENGTH],
                "what": entry.what[:50],
                "handler": entry.handler[:HANDLER_LENGTH] if entry.handler else None,
                "old": entry.old,
                "new": entry.new,
                "detail": _short(entry.detail),
            }
            for entry in entries
        ],
    )
    newest = await connection.scalar(select(func.max(audit.c.id)))
    if newest is not None and newest > AUDIT_KEEP:
        await connection.execute(delete(audit).where(audit.c.id <= newest - AUDIT_KEEP))


async def read_audit(connection: AsyncConnection, limit: int = 50) -> list[AuditEntry]:
    """The latest ``limit`` entries, oldest first."""
    rows = await connection.execute(select(audit).order_by(audit.c.id.desc()).limit(limit))
    entries = [
        AuditEntry(
            at=row["at"],
            by=redact(row["by"]),
            what=row["what"],
            handler=row["handler"],
            old=row["old"],
            new=row["new"],
            detail=_short(row["detail"]),
        )
        for row in rows.mappings()
    ]
    entries.reverse()
    return entries


# ---------------------------------------------------------------------- retry requests


async def insert_retry(
    connection: AsyncConnection,
    handler: str,
    item_id: str,
    by: str,
    *,
    taken_by: str | None = None,
) -> RetryStatus:
    """Record a retry request (taken already when ``taken_by`` carries it out itself)."""
    now = await database_now(connection)
    values = {
        "handler": handler[:HANDLER_LENGTH],
        "item_id": str(item_id)[:ITEM_ID_LENGTH],
        "requested_by": by[:WORKER_ID_LENGTH],
        "requested_at": now,
        "state": "requested",
        "taken_by": taken_by[:WORKER_ID_LENGTH] if taken_by else None,
        "updated_at": now,
    }
    result = await connection.execute(retries.insert().values(values).returning(retries.c.id))
    request_id = int(result.scalar_one())
    await prune_retries(connection)
    await add_audit(
        connection, [AuditEntry(now, by, "retry", handler, None, None, f"item {item_id}")]
    )
    return _retry_status({**values, "id": request_id, "detail": None})


async def retries_waiting(connection: AsyncConnection, handlers: Collection[str]) -> bool:
    """Whether a retry request for one of ``handlers`` waits to be taken (a read)."""
    found = await connection.scalar(
        select(retries.c.id)
        .where(retries.c.taken_by.is_(None), retries.c.handler.in_(list(handlers)))
        .limit(1)
    )
    return found is not None


async def take_retries(
    connection: AsyncConnection, worker_id: str, handlers: Collection[str]
) -> list[RetryStatus]:
    """Take the untaken retry requests for ``handlers`` (each by one worker)."""
    untaken = (
        select(retries.c.id)
        .where(retries.c.taken_by.is_(None), retries.c.handler.in_(list(handlers)))
        .order_by(retries.c.id)
        .with_for_update(skip_locked=True)
    )
    rows = await connection.execute(
        update(retries)
        .where(retries.c.id.in_(untaken.scalar_subquery()), retries.c.taken_by.is_(None))
        .values(taken_by=worker_id[:WORKER_ID_LENGTH], updated_at=sql_now(connection))
        .returning(*retries.c)
    )
    return sorted((_retry_status(row) for row in rows.mappings()), key=lambda r: r.id or 0)


async def update_retry(
    connection: AsyncConnection, request_id: int, state: str, detail: str | None
) -> None:
    await connection.execute(
        update(retries)
        .where(retries.c.id == request_id)
        .values(state=state, detail=_short(detail), updated_at=sql_now(connection))
    )


async def read_retry(connection: AsyncConnection, request_id: int) -> RetryStatus | None:
    row = (
        (await connection.execute(select(retries).where(retries.c.id == request_id)))
        .mappings()
        .first()
    )
    return _retry_status(row) if row is not None else None


async def latest_retries(connection: AsyncConnection, limit: int = 50) -> list[RetryStatus]:
    rows = await connection.execute(select(retries).order_by(retries.c.id.desc()).limit(limit))
    return [_retry_status(row) for row in rows.mappings()]


async def prune_retries(connection: AsyncConnection, keep: int = AUDIT_KEEP) -> None:
    newest = await connection.scalar(select(func.max(retries.c.id)))
    if newest is not None and newest > keep:
        await connection.execute(delete(retries).where(retries.c.id <= newest - keep))


def _retry_status(row: Any) -> RetryStatus:
    return RetryStatus(
        id=row["id"],
        handler=row["handler"],
        item_id=redact(row["item_id"]),
        state=row["state"],
        requested_by=redact(row["requested_by"]),
        requested_at=row["requested_at"],
        detail=_short(row["detail"]),
        taken_by=row["taken_by"],
        updated_at=row["updated_at"],
    )


# ---------------------------------------------------------------------- a worker's side


class SqlControlPlane:
    """A worker's side of the control plane, on its store's engine; one short transaction
    per call. ``lock`` is the store's writer lock (SQLite: one writer per process).

    With a coordinator (shared mode) the coordinator beats and takes commands; without one,
    this does, so that an operator's command reaches a single worker on a SQLite file too.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        lock: anyio.Lock | None,
        worker_id: Callable[[], str],
        write_buffered: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.engine = engine
        self._lock = lock
        self._worker_id = worker_id
        self._write_buffered = write_buffered
        """Writes the store's buffer: control changes wait there for the store's writer."""
        self._reader = reader(engine)
        self._next_beat = 0.0
        self._fleet: Sequence[WorkerView] = ()
        self._beat_worker: str | None = None
        self._next_retries = 0.0

    async def _write(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async def transaction() -> T:
            async with AsyncExitStack() as stack:
                if self._lock is not None:
                    await stack.enter_async_context(self._lock)
                connection = await stack.enter_async_context(self.engine.begin())
                return await work(connection)
            raise AssertionError("unreachable")  # pragma: no cover

        return await uncancelled(transaction)

    async def _read(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async def read() -> T:
            async with self._reader.connect() as connection:
                return await work(connection)

        return await uncancelled(read)

    async def expire_pauses(self) -> list[AuditEntry]:
        """Resume the pauses whose expiry is past (once fleet-wide) and say so."""
        entries = await self._write(lambda c: expire_pauses(c, self._worker_id()))
        for entry in entries:
            log.info(
                "%s resumed: %s",
                entry.handler or "everything",
                entry.detail,
                extra={"handler": entry.handler} if entry.handler else None,
            )
        return entries

    async def take_commands(self, worker_id: str) -> list[Command]:
        if not await self._read(fleet.commands_waiting):
            return []
        return await self._write(lambda c: fleet.take_commands(c, worker_id))

    async def beat(self, beat: WorkerBeat, lease: float) -> Sequence[WorkerView]:
        """Heartbeat (every quarter lease, at most every second); the fleet."""
        self._beat_worker = beat.worker_id
        started = anyio.current_time()
        if started >= self._next_beat:
            self._fleet = await self._write(lambda c: fleet.beat(c, beat, lease))
            self._next_beat = started + min(lease / 4, 1.0)
        return self._fleet

    async def stop(self) -> None:
        """This worker (if it beat) is leaving cleanly: listed as stopped."""
        worker_id = self._beat_worker
        if worker_id is not None:
            await self._write(lambda c: fleet.mark_stopped(c, worker_id))

    async def take_retries(self, worker_id: str, handlers: Collection[str]) -> list[RetryStatus]:
        """Retry requests for this worker's handlers (looked for at most every half second:
        a read that finds nothing almost always)."""
        started = anyio.current_time()
        if not handlers or started < self._next_retries:
            return []
        self._next_retries = started + RETRY_LOOK
        if not await self._read(lambda c: retries_waiting(c, handlers)):
            return []
        return await self._write(lambda c: take_retries(c, worker_id, handlers))

    async def insert_retry(
        self, handler: str, item_id: str, by: str, *, taken_by: str | None = None
    ) -> RetryStatus:
        return await self._write(lambda c: insert_retry(c, handler, item_id, by, taken_by=taken_by))

    async def update_retry(self, request_id: int, state: str, detail: str | None) -> None:
        await self._write(lambda c: update_retry(c, request_id, state, detail))

    async def retry_status(self, request_id: int) -> RetryStatus | None:
        return await self._read(lambda c: read_retry(c, request_id))

    async def audit(self, limit: int = 50) -> list[AuditEntry]:
        """The latest changes; this worker's own, still buffered for the writer, included."""
        if self._write_buffered is not None:
            await self._write_buffered()
        return await self._read(lambda c: read_audit(c, limit))
