"""Outcomes on their way to the database: the bounded buffer and the row format.

Buffer policy: :meth:`OutcomeBuffer.add` never blocks the engine. Reaching ``flush_at``
buffered outcomes asks the writer to flush at once instead of at its next tick. Past half of
``capacity`` the store stops accepting (``SqlStore.accepting``) and the engine starts no new
item until the writer catches up, so the buffer holds at most that plus the items in flight.
Only if that bound were broken would further outcomes be dropped: counted in
:attr:`OutcomeBuffer.dropped` and logged as an error (once per episode, with the total when
writing resumes). Item states and controls are never dropped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from novaconsole.engine.outcomes import Attempt, ItemOutcome, OutcomeStatus
from novaconsole.store.models import HANDLER_LENGTH, ITEM_ID_LENGTH, sqlite_time

log = logging.getLogger("novaconsole.store")


class OutcomeBuffer:
    """Outcomes recorded but not yet written, oldest first."""

    def __init__(
        self, capacity: int = 50_000, flush_at: int = 1000, wake: Callable[[], None] | None = None
    ) -> None:
        if capacity < 1 or flush_at < 1:
            raise ValueError("capacity and flush_at must be at least 1")
        self.capacity = capacity
        self.flush_at = flush_at
        self.wake = wake
        self.dropped = 0
        self._items: list[ItemOutcome] = []
        self._dropped_in_episode = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, outcomes: Sequence[ItemOutcome]) -> None:
        """Buffer ``outcomes`` (see the module docstring for what happens when full)."""
        items = self._items
        before = len(items)
        room = self.capacity - before
        if len(outcomes) <= room:
            items.extend(outcomes)
        else:
            lost = len(outcomes) - max(room, 0)
            items.extend(outcomes[: max(room, 0)])
            if not self._dropped_in_episode:
                log.error(
                    "outcome buffer full (%d waiting): the database is not keeping up; "
                    "dropping new outcomes until it does",
                    len(items),
                )
            self._dropped_in_episode += lost
            self.dropped += lost
        if before < self.flush_at <= len(items) and self.wake is not None:
            self.wake()

    def take(self, limit: int) -> list[ItemOutcome]:
        """Remove and return up to ``limit`` of the oldest outcomes."""
        if len(self._items) <= limit:
            batch, self._items = self._items, []
        else:
            batch = self._items[:limit]
            del self._items[:limit]
        return batch

    def put_back(self, batch: list[ItemOutcome]) -> None:
        """Return a batch that could not be written to the front of the buffer."""
        self._items[:0] = batch

    def written(self) -> None:
        """A write succeeded: end an episode of drops, if any, with its total."""
        if self._dropped_in_episode and len(self._items) < self.capacity:
            log.error(
                "%d outcomes were dropped while the database was not keeping up",
                self._dropped_in_episode,
            )
            self._dropped_in_episode = 0

    def peek(self) -> list[ItemOutcome]:
        """The buffered outcomes, oldest first (a copy)."""
        return list(self._items)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def outcome_row(outcome: ItemOutcome, worker_id: str | None = None) -> dict[str, Any]:
    """The ``novaconsole_results`` row of an outcome (recorded by ``worker_id``)."""
    history = outcome.history
    return {
        "handler": outcome.handler[:HANDLER_LENGTH],
        "item_id": str(outcome.item_id)[:ITEM_ID_LENGTH],
        "status": outcome.status.value,
        "attempts": outcome.attempts,
        "started_at": outcome.started_at,
        "finished_at": outcome.finished_at,
        "duration": outcome.duration,
        "error": outcome.error,
        "traceback": outcome.traceback,
        "history": None if _told_by_row(outcome) else [_attempt_json(a) for a in history],
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

SQLITE_INSERT = (
    f"INSERT INTO novaconsole_results ({', '.join(ROW_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ROW_COLUMNS)})"
)
"""The insert of :func:`driver_row` tuples for SQLite's executemany."""


def driver_row(outcome: ItemOutcome, sqlite: bool, worker_id: str | None = None) -> tuple[Any, ...]:
    """The result row of an outcome as the driver takes it (columns: :data:`ROW_COLUMNS`):
    the values SQLAlchemy would bind, without its per-row processing, which costs more than
    the rest of recording. Timestamps are integers on SQLite (see ``UtcDateTime``)."""
    started, finished = outcome.started_at, outcome.finished_at
    return (
        outcome.handler[:HANDLER_LENGTH],
        str(outcome.item_id)[:ITEM_ID_LENGTH],
        outcome.status.value,
        outcome.attempts,
        sqlite_time(started) if sqlite else _aware(started),
        sqlite_time(finished) if sqlite else _aware(finished),
        outcome.duration,
        outcome.error,
        outcome.traceback,
        None if _told_by_row(outcome) else json.dumps([_attempt_json(a) for a in outcome.history]),
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


def _attempt_json(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "started_at": _aware(attempt.started_at).isoformat(),
        "duration": attempt.duration,
        "error": attempt.error,
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
                error=row["error"],
                timed_out=row["status"] == OutcomeStatus.TIMED_OUT.value,
            ),
        )
    return tuple(
        Attempt(
            number=int(entry["number"]),
            started_at=_aware(datetime.fromisoformat(entry["started_at"])),
            duration=float(entry["duration"]),
            error=entry.get("error"),
            timed_out=bool(entry.get("timed_out", False)),
        )
        for entry in value
    )


def row_outcome(row: Mapping[Any, Any]) -> ItemOutcome:
    """An :class:`ItemOutcome` read back from a result row (``item_id`` is a str)."""
    return ItemOutcome(
        handler=row["handler"],
        item_id=row["item_id"],
        status=OutcomeStatus(row["status"]),
        attempts=row["attempts"],
        duration=row["duration"],
        error=row["error"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        traceback=row["traceback"],
        history=history_of(row),
    )


def row_dict(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A result row as plain JSON-ready data (timestamps as ISO 8601 strings)."""
    return {
        "handler": row["handler"],
        "item_id": row["item_id"],
        "status": row["status"],
        "attempts": row["attempts"],
        "duration": row["duration"],
        "error": row["error"],
        "started_at": row["started_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat(),
        "traceback": row["traceback"],
        "history": [_attempt_json(attempt) for attempt in history_of(row)],
        "worker_id": row.get("worker_id"),
    }
