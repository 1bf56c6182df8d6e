"""Failure groups as a running service sees them: from its store's results when it has a
database, else from the outcomes it keeps in memory (see :mod:`novaconsole.triage`)."""

from __future__ import annotations

from novaconsole.engine.core import EngineCore
from novaconsole.triage import (
    FailedItem,
    FailedRow,
    FailureGroup,
    group_failures,
    members_of,
    rows_from_outcomes,
)


async def failed_rows(core: EngineCore, handler: str | None = None) -> list[FailedRow]:
    read = getattr(core.store, "failed_rows", None)
    if read is not None:
        rows: list[FailedRow] = await read(handler)
        return rows
    kept = getattr(core.store, "outcomes", None)
    return rows_from_outcomes(kept if kept is not None else core.recent)


async def failure_groups(core: EngineCore, handler: str | None = None) -> list[FailureGroup]:
    if handler is not None:
        core.runtime(handler)
    return group_failures(await failed_rows(core, handler), handler)


async def failure_group(
    core: EngineCore, group: str
) -> tuple[FailureGroup | None, list[FailedItem]]:
    rows = await failed_rows(core)
    found = next((g for g in group_failures(rows) if g.id == group), None)
    return found, members_of(rows, group) if found else []
