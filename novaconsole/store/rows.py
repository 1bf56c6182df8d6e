"""The ``novaconsole_results`` row format: outcomes to rows and rows back to outcomes.

Text a handler controls (error, traceback, item id, the errors of earlier attempts) is
redacted (:func:`novaconsole.redaction.redact`) both ways: masked where outcomes are written,
as a second line of defence, and again where rows are read back, since a row written by an
older novaconsole may hold raw escapes or secrets.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from novaconsole.engine.outcomes import Attempt, ItemOutcome, OutcomeStatus
from novaconsole.redaction import redact
from novaconsole.store.models import sqlite_time, stored_key
from novaconsole.store.sqlite_writes import RowsStatement


def redact_optional(text: str | None) -> str | None:
    """:func:`~novaconsole.redaction.redact` of a nullable column's text."""
    return None if text is None else redact(text)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def outcome_row(outcome: ItemOutcome, worker_id: str | None = None) -> dict[str, Any]:
    """The ``novaconsole_results`` row of an outcome (recorded by ``worker_id``)."""
    handler, item_id = stored_key(outcome.handler, outcome.item_id)
    return {
        "handler": handler,
        "item_id": item_id,
        "status": outcome.status.value,
        "attempts": outcome.attempts,
        "started_at": outcome.started_at,
        "finished_at": outcome.finished_at,
        "duration": outcome.duration,
        "error": redact_optional(outcome.error),
        "traceback": redact_optional(outcome.traceback),
        "history": None if _told_by_row(outcome) else _history_json(outcome),
        "worker_id": worker_id,
    }


ROW_COLUMNS = (
    "handler",
    "item_id",
    "status",
    "attempts",
    "started_at",
    "finished_at",
    "duration",
    "error",
    "traceback",
    "history",
    "worker_id",
)
"""The columns of :func:`driver_row` tuples, in order."""

SQLITE_INSERT = RowsStatement(
    f"INSERT INTO novaconsole_results ({', '.join(ROW_COLUMNS)}) VALUES ",
    f"({', '.join('?' for _ in ROW_COLUMNS)})",
)
"""The insert of :func:`driver_row` tuples on SQLite."""


def driver_row(outcome: ItemOutcome, sqlite: bool, worker_id: str | None = None) -> tuple[Any, ...]:
    """The result row of an outcome as the driver takes it (columns: :data:`ROW_COLUMNS`):
    the values SQLAlchemy would bind, without its per-row processing, which costs more than
    the rest of recording. Timestamps are integers on SQLite (see ``UtcDateTime``)."""
    started, finished = outcome.started_at, outcome.finished_at
    handler, item_id = stored_key(outcome.handler, outcome.item_id)
    return (
        handler,
        item_id,
        outcome.status.value,
        outcome.attempts,
        sqlite_time(started) if sqlite else _aware(started),
        sqlite_time(finished) if sqlite else _aware(finished),
        outcome.duration,
        redact_optional(outcome.error),
        redact_optional(outcome.traceback),
        None if _told_by_row(outcome) else json.dumps(_history_json(outcome)),
        worker_id,
    )


def _told_by_row(outcome: ItemOutcome) -> bool:
    """True when the history is one attempt that the row's own columns describe exactly
    (most outcomes): it is then stored as NULL, which saves encoding JSON for every row."""
    if len(outcome.history) != 1:
        return False
    (attempt,) = outcome.history
    return (
        attempt.number == 1
        and attempt.started_at == outcome.started_at
        and attempt.duration == outcome.duration
        and attempt.error == outcome.error
        and attempt.timed_out == (outcome.status is OutcomeStatus.TIMED_OUT)
    )


def _history_json(outcome: ItemOutcome) -> list[dict[str, Any]]:
    return [_attempt_json(attempt) for attempt in outcome.history]


def _attempt_json(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "started_at": _aware(attempt.started_at).isoformat(),
        "duration": attempt.duration,
        "error": redact_optional(attempt.error),
        "timed_out": attempt.timed_out,
    }


def history_of(row: Mapping[Any, Any]) -> tuple[Attempt, ...]:
    """The attempts of a result row (NULL: the one attempt the row describes)."""
    value = row["history"]
    if value is None:
        return (
            Attempt(
                number=1,
                started_at=row["started_at"],
                duration=row["duration"],
                error=redact_optional(row["error"]),
                timed_out=row["status"] == OutcomeStatus.TIMED_OUT.value,
            ),
        )
    return tuple(
        Attempt(
            number=int(entry["number"]),
            started_at=_aware(datetime.fromisoformat(entry["started_at"])),
            duration=float(entry["duration"]),
            error=redact_optional(entry.get("error")),
            timed_out=bool(entry.get("timed_out", False)),
        )
        for entry in value
    )


def row_outcome(row: Mapping[Any, Any]) -> ItemOutcome:
    """An :class:`ItemOutcome` read back from a result row (``item_id`` is a str); text a
    handler controlled comes back redacted."""
    return ItemOutcome(
        handler=row["handler"],
        item_id=redact(row["item_id"]),
        status=OutcomeStatus(row["status"]),
        attempts=row["attempts"],
        duration=row["duration"],
        error=redact_optional(row["error"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        traceback=redact_optional(row["traceback"]),
        history=history_of(row),
    )


def row_dict(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A result row as plain JSON-ready data (timestamps as ISO 8601 strings; text a handler
    controlled redacted)."""
    return {
        "handler": row["handler"],
        "item_id": redact(row["item_id"]),
        "status": row["status"],
        "attempts": row["attempts"],
        "duration": row["duration"],
        "error": redact_optional(row["error"]),
        "started_at": row["started_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat(),
        "traceback": redact_optional(row["traceback"]),
        "history": [_attempt_json(attempt) for attempt in history_of(row)],
        "worker_id": row.get("worker_id"),
    }
