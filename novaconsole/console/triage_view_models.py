"""Pure functions for the toolkit's screens (failure groups, a group's items, peek): data in,
rows and text out; no Textual."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from novaconsole.engine.peek import PeekResult
from novaconsole.redaction import redact
from novaconsole.triage import FailedItem, FailureGroup

GROUP_COLUMNS = ("Items", "Handler", "Error", "Last seen", "First seen", "Group")
ITEM_COLUMNS = ("Item", "Status", "Attempts", "Failed at", "Error")
PEEK_COLUMNS = ("Id", "Item")


def _when(moment: datetime, tz: tzinfo | None) -> str:
    return f"{moment.astimezone(tz):%Y-%m-%d %H:%M:%S}"


def _line(text: str | None, width: int) -> str:
    shown = " ".join(redact(text or "").split())
    return shown if len(shown) <= width else shown[: width - 1] + "…"


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    cells: tuple[str, ...]


def group_rows(groups: list[FailureGroup], tz: tzinfo | None = None) -> list[Row]:
    """One row per group, most items first (as given)."""
    return [
        Row(
            group.id,
            (
                str(group.count),
                group.handler,
                _line(group.title, 70),
                _when(group.last_seen, tz),
                _when(group.first_seen, tz),
                group.id,
            ),
        )
        for group in groups
    ]


def item_rows(items: list[FailedItem], tz: tzinfo | None = None) -> list[Row]:
    return [
        Row(
            item.item_id,
            (
                _line(item.item_id, 40),
                item.status,
                str(item.attempts),
                _when(item.finished_at, tz),
                _line(item.error, 70),
            ),
        )
        for item in items
    ]


def retry_question(group: FailureGroup, count: int) -> str:
    """``Retry 37 items of CatalogImport: SourceError: not UTF-8 text (bad byte at offset #)?``"""
    noun = "item" if count == 1 else "items"
    return f"Retry {count} {noun} of {group.handler}: {_line(group.title, 120)}?"


def group_summary(group: FailureGroup, tz: tzinfo | None = None) -> list[tuple[str, str]]:
    """(label, value) lines above a group's items."""
    return [
        ("Handler", group.handler),
        ("Error", _line(group.title, 200)),
        ("Items", str(group.count)),
        ("First seen", _when(group.first_seen, tz)),
        ("Last seen", _when(group.last_seen, tz)),
        ("Sample", f"{_line(group.sample_item_id, 60)}: {_line(group.sample_error, 120)}"),
    ]


def peek_rows(result: PeekResult) -> list[Row]:
    return [Row(f"{index}", (item.id, item.repr)) for index, item in enumerate(result.items)]


def peek_title(result: PeekResult) -> str:
    """``Jobs: fetch_next(10) would return 3 items (rolled back; nothing claimed)``."""
    count = len(result.items)
    how = "rolled back, nothing claimed or processed" if result.rolled_back else "no database"
    return (
        f"{result.handler}: fetch_next({result.asked}) would return "
        f"{count} item{'' if count == 1 else 's'} ({how})"
    )
