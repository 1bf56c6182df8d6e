"""Failure triage: failed items grouped by handler, exception type and a normalised message.

Two failures belong together when they differ only in the values a message carries: numbers,
ids, UUIDs, hex and quoted values are replaced by placeholders (:func:`normalise`). A group's
id is a short hash of handler, type and normalised message, so it is the same in every call,
on every machine, while the group has failures. Plain functions and data: the store fills
them from its results table.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from novaconsole.redaction import redact

if TYPE_CHECKING:
    from novaconsole.engine.outcomes import ItemOutcome

MESSAGE_LENGTH = 200
"""A normalised message is cut to this many characters (longer ones group by their start)."""

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Quoted values first: what they hold (numbers, words) is data, not the message's shape.
    (re.compile(r"'(?:[^'\\]|\\.)*'"), "'…'"),
    (re.compile(r'"(?:[^"\\]|\\.)*"'), '"…"'),
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\b"
        ),
        "<uuid>",
    ),
    (re.compile(r"\b0[xX][0-9a-fA-F]+\b"), "<hex>"),
    # A run of 8+ hex digits with at least one digit and one letter (hashes, object ids).
    (re.compile(r"\b(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"), "<hex>"),
    # Numbers on their own (42, -1.5, 12:30:01, 2026-12-01, 30s), not a word's (UTF-8, v2).
    (re.compile(r"(?<![\w.\-])[-+]?\d+(?:[-.,:/]\d+)*"), "#"),
    # Ids glued to a word (item-4021, order12345): runs of three digits or more.
    (re.compile(r"\d{3,}"), "#"),
    (re.compile(r"\s+"), " "),
)


def normalise(message: str) -> str:
    """``message`` with its values replaced: ``'...'``/``"..."`` quoted values, ``<uuid>``,
    ``<hex>`` (``0x1f``, long hex runs) and ``#`` (numbers; inside a word such as
    ``item-4021`` from three digits on, so that ``UTF-8`` stays); whitespace collapsed, cut
    to :data:`MESSAGE_LENGTH`."""
    text = message
    for pattern, placeholder in _RULES:
        text = pattern.sub(placeholder, text)
    text = text.strip()
    return text if len(text) <= MESSAGE_LENGTH else text[: MESSAGE_LENGTH - 1] + "…"


_TYPE = re.compile(r"^([A-Za-z_][\w.]*): (.*)$", re.DOTALL)


def split_error(error: str | None) -> tuple[str, str]:
    """``("SourceError", "not UTF-8 text")`` from a stored error ``"SourceError: not UTF-8
    text"``; an error without a type prefix is ``("", error)``."""
    if not error:
        return "", ""
    match = _TYPE.match(error)
    if match is None:
        if re.fullmatch(r"[A-Za-z_][\w.]*", error):
            return error, ""  # an exception raised without a message
        return "", error
    return match[1], match[2]


def group_id(handler: str, error_type: str, message: str) -> str:
    """The group's id: 10 hex digits of a hash of the three (stable across calls)."""
    key = "\x00".join((handler, error_type, message)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(key).hexdigest()[:10]


def group_key(handler: str, error: str | None) -> tuple[str, str, str]:
    """(handler, exception type, normalised message) of a stored error."""
    error_type, message = split_error(error)
    return handler, error_type, normalise(message)


@dataclass(frozen=True, slots=True)
class FailureGroup:
    """Failed items alike: same handler, exception type and normalised message."""

    id: str
    handler: str
    error_type: str
    message: str
    """The normalised message."""
    count: int
    """Items whose latest outcome is this failure."""
    first_seen: datetime
    last_seen: datetime
    sample_item_id: str
    """The item that failed last."""
    sample_error: str | None
    sample_traceback: str | None

    @property
    def title(self) -> str:
        """``SourceError: not UTF-8 text (bad byte at offset #)``."""
        if self.error_type and self.message:
            return f"{self.error_type}: {self.message}"
        return self.error_type or self.message or "(no error text)"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "handler": self.handler,
            "error_type": self.error_type,
            "message": self.message,
            "count": self.count,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "sample_item_id": redact(self.sample_item_id),
            "sample_error": self.sample_error,
            "sample_traceback": self.sample_traceback,
        }


@dataclass(frozen=True, slots=True)
class FailedItem:
    """One item of a group: its latest failed outcome."""

    handler: str
    item_id: str
    """As stored (what a retry needs); show it through ``redact()``."""
    status: str
    attempts: int
    finished_at: datetime
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "handler": self.handler,
            "item_id": redact(self.item_id),
            "status": self.status,
            "attempts": self.attempts,
            "finished_at": self.finished_at.isoformat(),
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class FailedRow:
    """An item's latest outcome, a failure, as a store reads it (traceback included)."""

    item: FailedItem
    traceback: str | None


def group_failures(rows: Iterable[FailedRow], handler: str | None = None) -> list[FailureGroup]:
    """Groups of ``rows`` (each item's latest outcome, a failure), most items first."""
    members: dict[tuple[str, str, str], list[FailedRow]] = {}
    for row in rows:
        if handler is not None and row.item.handler != handler:
            continue
        members.setdefault(group_key(row.item.handler, row.item.error), []).append(row)
    groups = []
    for (name, error_type, message), found in members.items():
        latest = max(found, key=lambda r: r.item.finished_at)
        groups.append(
            FailureGroup(
                id=group_id(name, error_type, message),
                handler=name,
                error_type=error_type,
                message=message,
                count=len(found),
                first_seen=min(r.item.finished_at for r in found),
                last_seen=latest.item.finished_at,
                sample_item_id=latest.item.item_id,
                sample_error=latest.item.error,
                sample_traceback=latest.traceback,
            )
        )
    groups.sort(key=lambda g: (-g.count, g.handler, g.title))
    return groups


def rows_from_outcomes(outcomes: Iterable[ItemOutcome]) -> list[FailedRow]:
    """Each item's latest outcome among ``outcomes`` (oldest first), when it is a failure: the
    rows of a service without a database."""
    latest: dict[tuple[str, str], ItemOutcome] = {}
    for outcome in outcomes:
        if outcome.status.value != "skipped":
            latest[(outcome.handler, str(outcome.item_id))] = outcome
    return [
        FailedRow(
            FailedItem(
                handler=outcome.handler,
                item_id=key[1],
                status=outcome.status.value,
                attempts=outcome.attempts,
                finished_at=outcome.finished_at,
                error=redact(outcome.error) if outcome.error else None,
            ),
            redact(outcome.traceback) if outcome.traceback else None,
        )
        for key, outcome in latest.items()
        if outcome.status.is_failure
    ]


def members_of(rows: Iterable[FailedRow], group: str) -> list[FailedItem]:
    """The items of the group with id ``group``, latest failure first."""
    found = [
        row.item for row in rows if group_id(*group_key(row.item.handler, row.item.error)) == group
    ]
    found.sort(key=lambda item: item.finished_at, reverse=True)
    return found
