"""The store's side of failure triage: each item's latest outcome, when it is a failure, read
from the results table (grouped by :mod:`novaconsole.triage`)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from novaconsole.engine.outcomes import OutcomeStatus
from novaconsole.redaction import redact
from novaconsole.store.models import results
from novaconsole.store.queries import reading
from novaconsole.triage import FailedItem, FailedRow, FailureGroup, group_failures, members_of

_FAILED = tuple(status.value for status in OutcomeStatus.failures())


async def failed_rows(connection: AsyncConnection, handler: str | None = None) -> list[FailedRow]:
    """Every item whose latest kept outcome is a failure (failed or timed out), redacted."""
    latest = select(func.max(results.c.id)).group_by(results.c.handler, results.c.item_id)
    if handler is not None:
        latest = latest.where(results.c.handler == handler)
    query = select(
        results.c.handler,
        results.c.item_id,
        results.c.status,
        results.c.attempts,
        results.c.finished_at,
        results.c.error,
        results.c.traceback,
    ).where(results.c.id.in_(latest.scalar_subquery()), results.c.status.in_(_FAILED))
    rows = await connection.execute(query)
    return [
        FailedRow(
            FailedItem(
                handler=row.handler,
                item_id=row.item_id,
                status=row.status,
                attempts=row.attempts,
                finished_at=row.finished_at,
                error=redact(row.error) if row.error else None,
            ),
            redact(row.traceback) if row.traceback else None,
        )
        for row in rows
    ]


async def failure_groups(url: str, handler: str | None = None) -> list[FailureGroup]:
    """``novaconsole failures``: the groups in the database at ``url``, most items first."""
    async with reading(url) as connection:
        if connection is None:
            return []
        return group_failures(await failed_rows(connection, handler), handler)


async def group_members(url: str, group: str) -> tuple[FailureGroup | None, list[FailedItem]]:
    """The group with id ``group`` and its items (``None`` and nothing if there is none)."""
    async with reading(url) as connection:
        if connection is None:
            return None, []
        rows = await failed_rows(connection)
    found = next((g for g in group_failures(rows) if g.id == group), None)
    return found, members_of(rows, group) if found else []
