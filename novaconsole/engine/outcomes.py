"""What happened to an item: statuses, attempts, final outcomes and cycle reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from novaconsole.redaction import redact

ItemId = Any
"""A work item's id: str, int or UUID in practice; the store keeps ``str(item_id)``."""


def shown_id(item_id: ItemId) -> ItemId:
    """An item id safe to log or show: int and UUID as they are, anything else redacted."""
    if type(item_id) is int or isinstance(item_id, UUID):
        return item_id
    return redact(item_id if isinstance(item_id, str) else repr(item_id))


class OutcomeStatus(StrEnum):
    """Final status of one item in one cycle."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @classmethod
    def failures(cls) -> frozenset[OutcomeStatus]:
        """Failed or timed out: the item's own fault, counted as failed."""
        return _FAILURES

    @classmethod
    def unsuccessful(cls) -> frozenset[OutcomeStatus]:
        """Failed, timed out or cancelled: a run-once with any of these did not go well."""
        return _UNSUCCESSFUL

    @classmethod
    def choices(cls) -> tuple[str, ...]:
        """Every status's value, in order (the CLI's ``--status`` choices)."""
        return tuple(status.value for status in cls)

    @property
    def is_failure(self) -> bool:
        """Failed or timed out (see :meth:`failures`)."""
        return self in _FAILURES


_FAILURES = frozenset({OutcomeStatus.FAILED, OutcomeStatus.TIMED_OUT})
_UNSUCCESSFUL = _FAILURES | {OutcomeStatus.CANCELLED}


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at processing an item."""

    number: int
    started_at: datetime
    duration: float
    error: str | None = None
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """The final outcome of one item: one per item in a cycle report.

    ``attempts`` counts every try, including those made before a restart; ``history`` holds the
    tries this process saw. ``duration`` is the time spent processing (seconds, all tries).
    """

    handler: str
    item_id: ItemId
    status: OutcomeStatus
    attempts: int
    duration: float
    error: str | None
    started_at: datetime
    finished_at: datetime
    traceback: str | None = None
    history: tuple[Attempt, ...] = ()
    wait: float = 0.0
    """Seconds the item spent waiting in the queue before its first try."""
    token: int | None = None
    """Fencing token of the worker's claim: the store records the outcome only if current."""

    @property
    def ok(self) -> bool:
        return self.status is OutcomeStatus.SUCCEEDED


@dataclass(slots=True)
class CycleReport:
    """What one cycle (``run_once()``) did: one outcome per fetched item, retries included."""

    cycle: int
    started_at: datetime
    finished_at: datetime | None = None
    outcomes: list[ItemOutcome] = field(default_factory=list)
    fetched: dict[str, int] = field(default_factory=dict)
    fetch_errors: dict[str, str] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        if self.finished_at is None:
            return 0.0
        return (self.finished_at - self.started_at).total_seconds()

    def count(self, status: OutcomeStatus) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status is status)

    @property
    def succeeded(self) -> int:
        return self.count(OutcomeStatus.SUCCEEDED)

    @property
    def failed(self) -> int:
        """Items whose last try failed or timed out."""
        return sum(1 for outcome in self.outcomes if outcome.status in _FAILURES)

    @property
    def ok(self) -> bool:
        """True when no item failed, timed out or was cancelled and no fetch failed."""
        return not self.fetch_errors and not any(o.status in _UNSUCCESSFUL for o in self.outcomes)

    def by_handler(self, handler: str) -> Sequence[ItemOutcome]:
        return [outcome for outcome in self.outcomes if outcome.handler == handler]
