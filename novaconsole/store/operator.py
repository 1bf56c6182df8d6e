"""The operator's side of the control plane: what ``novaconsole status``, ``pause``,
``resume``, ``run-once``, ``batch-size``, ``concurrency``, ``retry`` and ``audit`` do to the
database, whether workers run on it or not (a change made while none runs is applied at the
next start).

Each call opens a short transaction on the client's engine; the schema is created (or brought
up) first, as a worker would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from novaconsole.engine.fleet_protocol import WorkerView
from novaconsole.engine.operator import AuditEntry, PauseInfo, RetryStatus
from novaconsole.engine.persistence import Controls
from novaconsole.redaction import redact
from novaconsole.store import breakers, fleet
from novaconsole.store import control_plane as plane
from novaconsole.store.database import (
    OPEN_ERRORS,
    connection_error,
    create_engine,
    mask_url,
    reader,
    uncancelled,
)
from novaconsole.store.models import (
    HANDLER_LENGTH,
    ITEM_ID_LENGTH,
    commands,
    item_states,
    results,
)
from novaconsole.store.models import controls as controls_table
from novaconsole.store.schema import ensure_schema

T = TypeVar("T")
_FAILED = ("failed", "timed_out")


@dataclass(frozen=True, slots=True)
class HandlerCounts:
    """One handler's kept results and remembered items, fleet-wide."""

    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    retrying: int = 0
    dead: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class ControlReading:
    """The control plane as it stands: controls (pauses past their expiry resumed), workers,
    per-handler counts, and the database clock it was read at."""

    controls: Controls
    workers: tuple[WorkerView, ...]
    counts: dict[str, HandlerCounts]
    now: datetime

    @property
    def live_workers(self) -> list[WorkerView]:
        return [worker for worker in self.workers if worker.alive]


class OperatorClient:
    """The control plane of the database at ``url``. Constructing it connects to nothing.

    ``engine``: share an engine opened elsewhere (the attached console's fleet view, whose
    schema is already there); it is not disposed by :meth:`close` then.
    """

    def __init__(self, url: str, *, engine: AsyncEngine | None = None) -> None:
        self.engine = engine if engine is not None else create_engine(url)
        self.display_url = mask_url(self.engine.url)
        self._owned = engine is None
        self._opened = engine is not None

    async def close(self) -> None:
        if self._owned:
            await self.engine.dispose()

    async def _run(self, work: Callable[[AsyncConnection], Awaitable[T]], *, write: bool) -> T:
        async def call() -> T:
            if not self._opened:
                await ensure_schema(self.engine)
                self._opened = True
            if write:
                async with self.engine.begin() as connection:
                    return await work(connection)
            async with reader(self.engine).connect() as connection:
                return await work(connection)

        try:
            return await uncancelled(call)
        except OPEN_ERRORS as error:
            raise connection_error(error, self.engine) from None

    async def read(self) -> ControlReading:
        return await self._run(_read, write=False)

    async def change(
        self, change: Controls, by: str, *, pause_for: timedelta | None = None
    ) -> list[AuditEntry]:
        """Save ``change`` (a pause with ``pause_for`` ends that long after now on the
        database clock); the audit entries written."""

        async def save(connection: AsyncConnection) -> list[AuditEntry]:
            if pause_for is not None:
                ends = await plane.database_now(connection) + pause_for
                if change.pause is not None:
                    change.pause = _until(change.pause, ends)
                change.handler_pauses = {
                    name: _until(info, ends) for name, info in change.handler_pauses.items()
                }
            return await plane.save_change(connection, change, by)

        return await self._run(save, write=True)

    async def run_once(self, handler: str | None, by: str) -> int:
        """Queue a ``run_once`` command (of one handler, or all); its id."""

        async def send(connection: AsyncConnection) -> int:
            args = {"handler": handler} if handler else {}
            command = await fleet.insert_command(connection, "run_once", args)
            now = await plane.database_now(connection)
            target = f"handler {handler}" if handler else "every handler"
            await plane.add_audit(
                connection, [AuditEntry(now, by, "run_once", handler, None, None, target)]
            )
            return command

        return await self._run(send, write=True)

    async def command_taker(self, command_id: int) -> str | None:
        """The worker that took the command, if one did."""

        async def read(connection: AsyncConnection) -> str | None:
            taker = await connection.scalar(
                select(commands.c.taken_by).where(commands.c.id == command_id)
            )
            return str(taker) if taker is not None else None

        return await self._run(read, write=False)

    async def request_retry(self, handler: str, item_id: str, by: str) -> RetryStatus | None:
        """Forget the item's attempts and record a retry request that a worker carries out
        (now, or at its next start); ``None`` when the item has neither remembered attempts
        nor a failed result: nothing to retry."""

        async def request(connection: AsyncConnection) -> RetryStatus | None:
            key = (handler[:HANDLER_LENGTH], str(item_id)[:ITEM_ID_LENGTH])
            forgotten = await connection.execute(
                item_states.delete().where(
                    item_states.c.handler == key[0], item_states.c.item_id == key[1]
                )
            )
            if not forgotten.rowcount:
                failed = await connection.scalar(
                    select(results.c.id)
                    .where(
                        results.c.handler == key[0],
                        results.c.item_id == key[1],
                        results.c.status.in_(_FAILED),
                    )
                    .limit(1)
                )
                if failed is None:
                    return None
            return await plane.insert_retry(connection, handler, item_id, by)

        return await self._run(request, write=True)

    async def retry_status(self, request_id: int) -> RetryStatus | None:
        """The request, with its outcome read from the results if a worker other than the
        one that took it ran the item."""

        async def read(connection: AsyncConnection) -> RetryStatus | None:
            status = await plane.read_retry(connection, request_id)
            if status is None or status.final:
                return status
            ran = (
                await connection.execute(
                    select(results.c.status, results.c.error)
                    .where(
                        results.c.handler == status.handler[:HANDLER_LENGTH],
                        results.c.item_id == status.item_id[:ITEM_ID_LENGTH],
                        results.c.finished_at >= status.requested_at,
                        results.c.status != "skipped",
                    )
                    .order_by(results.c.id.desc())
                    .limit(1)
                )
            ).first()
            if ran is None or ran.status == "cancelled":
                return status
            state = "succeeded" if ran.status == "succeeded" else "failed"
            return replace(status, state=state, detail=redact(ran.error) if ran.error else None)

        return await self._run(read, write=False)

    async def known_handlers(self) -> set[str]:
        """Handler names the database has seen (results, remembered items, controls)."""

        async def read(connection: AsyncConnection) -> set[str]:
            names: set[str] = set()
            for column in (results.c.handler, item_states.c.handler, controls_table.c.name):
                names.update(await connection.scalars(select(column).distinct()))
            names.discard("")
            return names

        return await self._run(read, write=False)

    async def audit(self, limit: int = 50) -> list[AuditEntry]:
        """The latest ``limit`` audit entries, oldest first (what ``novaconsole audit`` shows)."""
        return await self._run(lambda c: plane.read_audit(c, limit), write=False)

    async def reset_breaker(self, handler: str, by: str) -> int:
        """Ask every live worker with ``handler``'s breaker open to close it (each does within
        a second or two), with an audit entry; how many workers were asked (0: not tripped)."""

        async def reset(connection: AsyncConnection) -> int:
            asked = await breakers.request_reset(connection, handler, by)
            if asked:
                now = await plane.database_now(connection)
                workers = f"{asked} worker{'' if asked == 1 else 's'}"
                entry = AuditEntry(now, by, "breaker_reset", handler, "tripped", "closed", workers)
                await plane.add_audit(connection, [entry])
            return asked

        return await self._run(reset, write=True)

    async def open_breakers(self) -> list[dict[str, Any]]:
        """The breakers open on live workers (handler, worker, reason, ...)."""
        return await self._run(lambda c: breakers.read_open(c, None), write=False)


def _until(info: PauseInfo, ends: datetime) -> PauseInfo:
    return PauseInfo(by=info.by, at=info.at, reason=info.reason, resumes_at=ends)


async def _read(connection: AsyncConnection) -> ControlReading:
    now = await plane.database_now(connection)
    stored = await plane.read_controls(connection)
    counts: dict[str, dict[str, Any]] = {}
    rows = await connection.execute(
        select(results.c.handler, results.c.status, func.count()).group_by(
            results.c.handler, results.c.status
        )
    )
    for handler, status, count in rows:
        entry = counts.setdefault(handler, {})
        key = "failed" if status in _FAILED else status
        if key in ("succeeded", "failed", "skipped"):
            entry[key] = entry.get(key, 0) + int(count)
    states = await connection.execute(
        select(item_states.c.handler, item_states.c.dead, func.count()).group_by(
            item_states.c.handler, item_states.c.dead
        )
    )
    for handler, dead, count in states:
        counts.setdefault(handler, {})["dead" if dead else "retrying"] = int(count)
    latest_failure = (
        select(func.max(results.c.id))
        .where(results.c.status.in_(_FAILED))
        .group_by(results.c.handler)
    )
    for handler, error in await connection.execute(
        select(results.c.handler, results.c.error).where(results.c.id.in_(latest_failure))
    ):
        counts.setdefault(handler, {})["last_error"] = redact(error) if error else None
    return ControlReading(
        controls=stored.effective(now),
        workers=tuple(await fleet.read_workers(connection)),
        counts={name: HandlerCounts(**values) for name, values in counts.items()},
        now=now,
    )
