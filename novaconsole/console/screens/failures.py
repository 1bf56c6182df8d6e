"""Failure triage: failed items grouped by handler, exception and normalised message (most
items first); a group opens its items; ``t`` retries a whole group after a confirm."""

from __future__ import annotations

from datetime import tzinfo
from typing import ClassVar, Protocol

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from novaconsole.console.triage_view_models import (
    GROUP_COLUMNS,
    ITEM_COLUMNS,
    group_rows,
    group_summary,
    item_rows,
)
from novaconsole.triage import FailedItem, FailureGroup


class TriageActions(Protocol):
    """What the screens ask of the app (``NovaConsole``)."""

    def open_failure_group(self, group: FailureGroup) -> None: ...
    def retry_failure_group(self, group: FailureGroup) -> None: ...


_CSS = """
#failures-body, #group-body { border: round $primary; padding: 0 1; }
#failures-summary, #group-summary { margin-bottom: 1; }
#group-traceback { color: $text-muted; margin-top: 1; }
"""


class FailureGroupsScreen(Screen[None]):
    """The groups, most items first. ``enter`` opens a group, ``t`` retries it."""

    DEFAULT_CSS = _CSS

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back", id="close-failures"),
        Binding("enter", "open_group", "Items", id="open-group", show=False),
        Binding("t", "retry_group", "Retry group", id="retry-group"),
    ]

    def __init__(
        self, groups: list[FailureGroup], actions: TriageActions, tz: tzinfo | None = None
    ) -> None:
        super().__init__()
        self.groups = groups
        self._by_id = {group.id: group for group in groups}
        self._actions = actions
        self._tz = tz

    def compose(self) -> ComposeResult:
        with Vertical(id="failures-body") as body:
            body.border_title = "Failure groups"
            total = sum(group.count for group in self.groups)
            yield Static(
                Text(
                    f"{total} failed items in {len(self.groups)} groups · enter: items · "
                    "t: retry a group"
                    if self.groups
                    else "No failed items."
                ),
                id="failures-summary",
            )
            yield DataTable[Text](id="failure-groups", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table: DataTable[Text] = self.query_one("#failure-groups", DataTable)
        table.add_columns(*GROUP_COLUMNS)
        for row in group_rows(self.groups, self._tz):
            table.add_row(*(Text(cell) for cell in row.cells), key=row.key)
        table.focus()

    @property
    def selected(self) -> FailureGroup | None:
        table: DataTable[Text] = self.query_one("#failure-groups", DataTable)
        if not self.groups or table.cursor_row < 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self._by_id.get(key or "")

    @on(DataTable.RowSelected, "#failure-groups")
    def _row_selected(self) -> None:
        self.action_open_group()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "retry_group":
            return bool(self.groups) and not getattr(self.app, "read_only", False)
        return True

    def action_open_group(self) -> None:
        if (group := self.selected) is not None:
            self._actions.open_failure_group(group)

    def action_retry_group(self) -> None:
        if (group := self.selected) is not None:
            self._actions.retry_failure_group(group)

    def action_close(self) -> None:
        self.dismiss(None)


class FailureItemsScreen(Screen[None]):
    """One group's items, latest failure first; ``t`` retries them all."""

    DEFAULT_CSS = _CSS

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back", id="close-group"),
        Binding("t", "retry_group", "Retry group", id="retry-group-items"),
    ]

    def __init__(
        self,
        group: FailureGroup,
        items: list[FailedItem],
        actions: TriageActions,
        tz: tzinfo | None = None,
    ) -> None:
        super().__init__()
        self.group = group
        self.items = items
        self._actions = actions
        self._tz = tz

    def compose(self) -> ComposeResult:
        with Vertical(id="group-body") as body:
            body.border_title = f"{self.group.handler} · group {self.group.id}"
            lines = [
                Content.assemble((f"{label:<12}", "$text-muted"), value)
                for label, value in group_summary(self.group, self._tz)
            ]
            yield Static(Content("\n").join(lines), id="group-summary")
            yield DataTable[Text](id="group-items", cursor_type="row")
            if self.group.sample_traceback:
                yield Static(
                    Text(self.group.sample_traceback.rstrip().splitlines()[-1]),
                    id="group-traceback",
                )
        yield Footer()

    def on_mount(self) -> None:
        table: DataTable[Text] = self.query_one("#group-items", DataTable)
        table.add_columns(*ITEM_COLUMNS)
        for row in item_rows(self.items, self._tz):
            table.add_row(*(Text(cell) for cell in row.cells), key=row.key)
        table.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "retry_group":
            return bool(self.items) and not getattr(self.app, "read_only", False)
        return True

    def action_retry_group(self) -> None:
        self._actions.retry_failure_group(self.group)

    def action_close(self) -> None:
        self.dismiss(None)
