"""What operators set and what is kept of it: limits on controls, who paused and why, the
audit history and retry requests. Plain data, shared by the engine, the store and front ends.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

MAX_CONCURRENCY = 1000
"""The highest concurrency a control may set (a control row asking more is clamped to it)."""
MAX_BATCH_SIZE = 10_000
"""The largest batch a control may ask of a handler per fetch (more is clamped to it)."""
AUDIT_KEEP = 500
"""Audit entries kept (the oldest go first)."""
PAUSE_REMINDER = timedelta(minutes=5)
"""How often a headless worker says again that something is paused."""


def operator_id(kind: str) -> str:
    """Who makes a change from this machine: ``cli@ops1``, ``console@ops1``."""
    return f"{kind}@{socket.gethostname()}"


def check_concurrency(workers: int) -> int:
    """``workers`` if it is a concurrency a control may set; ``ValueError`` otherwise."""
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise ValueError(f"concurrency must be a whole number, got {workers!r}")
    return _in_range("concurrency", workers, MAX_CONCURRENCY)


def check_batch_size(size: int) -> int:
    """``size`` if it is a batch size a control may set; ``ValueError`` otherwise."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise ValueError(f"batch size must be a whole number, got {size!r}")
    return _in_range("batch size", size, MAX_BATCH_SIZE)


def _in_range(what: str, value: int, highest: int) -> int:
    if value < 1:
        raise ValueError(f"{what} must be at least 1, got {value}")
    if value > highest:
        raise ValueError(f"{what} must be at most {highest}, got {value}")
    return value


def clamp(value: Any, highest: int) -> int | None:
    """A stored control value as one the engine may obey: a whole number in 1..``highest``
    (clamped), or ``None`` when it is no number at all."""
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return min(max(number, 1), highest)


@dataclass(frozen=True, slots=True)
class PauseInfo:
    """Who paused (all, or one handler), when, why, and when it resumes by itself."""

    by: str | None = None
    at: datetime | None = None
    reason: str | None = None
    resumes_at: datetime | None = None
    """``None``: until resumed by hand. Compared with the database clock."""

    def expired(self, now: datetime) -> bool:
        return self.resumes_at is not None and self.resumes_at <= now

    def as_dict(self) -> dict[str, Any]:
        return {
            "paused_by": self.by,
            "paused_at": _iso(self.at),
            "pause_reason": self.reason,
            "resumes_at": _iso(self.resumes_at),
        }


def resume_time(until: datetime | timedelta | None, now: datetime) -> datetime | None:
    """An expiry given as a moment or as a duration from ``now``."""
    if until is None:
        return None
    if isinstance(until, timedelta):
        if until <= timedelta(0):
            raise ValueError(f"a pause must last a positive time, got {until}")
        return now + until
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    return until


def describe_pause(subject: str, info: PauseInfo | None, now: datetime) -> str:
    """``"PhysicalDeletion paused by cli@ops1 12 min ago: db maintenance; resumes at 14:00"``
    (times in local time; ``subject``: a handler's name, or "everything")."""
    if info is None:
        return f"{subject} paused"
    text = f"{subject} paused"
    if info.by:
        text += f" by {info.by}"
    if info.at is not None:
        text += f" {ago(now - info.at)}"
    if info.reason:
        text += f": {info.reason}"
    if info.resumes_at is not None:
        text += f"; resumes at {clock(info.resumes_at, now)}"
    return text


def ago(elapsed: timedelta) -> str:
    seconds = max(elapsed.total_seconds(), 0.0)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} days ago"


def clock(moment: datetime, now: datetime) -> str:
    """``14:00`` today (local time), ``14:00:05`` when seconds matter, else a date too."""
    local, today = moment.astimezone(), now.astimezone()
    shown = local.strftime("%H:%M:%S" if local.second else "%H:%M")
    return shown if local.date() == today.date() else f"{local:%Y-%m-%d} {shown}"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change of a control: who, when, what, old and new value."""

    at: datetime
    by: str
    what: str
    """``pause``, ``resume``, ``batch_size``, ``concurrency``, ``run_once`` or ``retry``."""
    handler: str | None = None
    old: str | None = None
    new: str | None = None
    detail: str | None = None
    """A pause's reason and expiry, a retried item's id, a command's arguments."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "by": self.by,
            "what": self.what,
            "handler": self.handler,
            "old": self.old,
            "new": self.new,
            "detail": self.detail,
        }

    def line(self) -> str:
        """``14:02:11 cli@ops1 batch_size of Ping: 10 → 20``."""
        target = f" of {self.handler}" if self.handler else ""
        change = ""
        if self.old is not None or self.new is not None:
            old = self.old if self.old is not None else "as configured"
            change = f": {old} → {self.new or '-'}"
        detail = f" ({self.detail})" if self.detail else ""
        when = f"{self.at.astimezone():%Y-%m-%d %H:%M:%S}"
        return f"{when} {self.by} {self.what}{target}{change}{detail}"


RETRY_STATES = ("requested", "running", "succeeded", "failed", "not_offered")
"""A retry request's life: ``requested`` (saved, or taken by a worker that reopened the item at
its source), ``running`` (fetched again, in hand), then ``succeeded``/``failed`` (ran again) or
``not_offered`` (its source no longer returns it)."""
RETRY_FINAL = frozenset({"succeeded", "failed", "not_offered"})
NOT_OFFERED_AFTER = 2
"""Fetches after a retry request that must miss the item before it is reported not offered."""


@dataclass(frozen=True, slots=True)
class RetryStatus:
    """What became of one retry request."""

    handler: str
    item_id: str
    state: str
    requested_by: str
    requested_at: datetime
    id: int | None = None
    detail: str | None = None
    taken_by: str | None = None
    updated_at: datetime | None = None

    @property
    def final(self) -> bool:
        return self.state in RETRY_FINAL

    def message(self) -> str:
        """What an operator is told: "retry requested", "ran again: succeeded", ..."""
        if self.state == "requested":
            text = "retry requested"
        elif self.state == "running":
            text = "fetched again, running"
        elif self.state == "not_offered":
            text = (
                f"not offered again by fetch_next after {NOT_OFFERED_AFTER} polls: "
                "its source no longer returns it"
            )
        else:
            text = f"ran again: {self.state}"
        return f"{text} ({self.detail})" if self.detail else text

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "handler": self.handler,
            "item_id": self.item_id,
            "state": self.state,
            "message": self.message(),
            "detail": self.detail,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at.isoformat(),
            "taken_by": self.taken_by,
            "updated_at": _iso(self.updated_at),
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
