"""The detail of one result: error, traceback and every attempt."""

from __future__ import annotations

from datetime import tzinfo
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

from novaconsole.console.view_models import attempt_rows, detail_fields
from novaconsole.engine.outcomes import ItemOutcome, OutcomeStatus


class ResultDetailScreen(ModalScreen[bool]):
    """Everything known about one outcome. Dismissed with ``True`` when a retry was asked for."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="close-detail"),
        Binding("t", "retry", "Retry item", id="retry-item"),
    ]

    def __init__(self, outcome: ItemOutcome, tz: tzinfo | None = None) -> None:
        super().__init__()
        self.outcome = outcome
        self._tz = tz

    def compose(self) -> ComposeResult:
        outcome = self.outcome
        with VerticalScroll(id="detail-body") as body:
            body.border_title = f"{outcome.handler} · item {outcome.item_id}"
            yield Static(self._summary(), id="detail-summary")
            if outcome.error:
                yield Static("Error", classes="detail-heading")
                yield Static(Text(outcome.error), id="detail-error")
            yield Static("Attempts", classes="detail-heading")
            yield DataTable[str](id="detail-attempts", cursor_type="none", show_cursor=False)
            if outcome.traceback:
                yield Static("Traceback", classes="detail-heading")
                yield Static(Text(outcome.traceback.rstrip()), id="detail-traceback")
        yield Footer()

    def on_mount(self) -> None:
        table: DataTable[Text] = self.query_one("#detail-attempts", DataTable)
        table.add_columns("#", "Started", "Duration", "Result")
        rows = attempt_rows(self.outcome, self._tz)
        for row in rows:
            table.add_row(Text(row.number), Text(row.started), Text(row.duration), Text(row.result))
        if not rows:
            table.display = False
        self.query_one("#detail-body").focus()

    def _summary(self) -> Content:
        lines: list[Content] = []
        for label, value in detail_fields(self.outcome, self._tz):
            value_style = f"$text-{_tone(self.outcome.status)}" if label == "Status" else ""
            lines.append(Content.assemble((f"{label:<16}", "$text-muted"), (value, value_style)))
        return Content("\n").join(lines)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "retry":
            if getattr(self.app, "read_only", False):
                return False
            return self.outcome.status in (OutcomeStatus.FAILED, OutcomeStatus.TIMED_OUT)
        return True

    def action_close(self) -> None:
        self.dismiss(False)

    def action_retry(self) -> None:
        self.dismiss(True)


def _tone(status: OutcomeStatus) -> str:
    if status is OutcomeStatus.SUCCEEDED:
        return "success"
    if status in (OutcomeStatus.SKIPPED, OutcomeStatus.CANCELLED):
        return "warning"
    return "error"
