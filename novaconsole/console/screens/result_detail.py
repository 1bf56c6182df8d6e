"""The detail of one result: error, traceback and every attempt."""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo
from typing import ClassVar

from rich import box
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from novaconsole.console.view_models import attempt_rows, detail_fields
from novaconsole.engine.outcomes import ItemOutcome, OutcomeStatus


class ResultDetailScreen(ModalScreen[bool]):
    """Everything known about one outcome. Dismissed with ``True`` when a retry was asked for."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="close-detail"),
        Binding("t", "retry", "Retry item", id="retry-item"),
        Binding("c", "copy_id", "Copy id", id="copy-detail-id"),
        Binding("y", "copy_traceback", "Copy traceback", id="copy-traceback"),
    ]

    def __init__(
        self,
        outcome: ItemOutcome,
        tz: tzinfo | None = None,
        *,
        copy: Callable[[str, str], None] | None = None,
    ) -> None:
        """``copy(text, what)`` puts text on the clipboard (default: the app's clipboard)."""
        super().__init__()
        self.outcome = outcome
        self._tz = tz
        self._copy = copy

    def compose(self) -> ComposeResult:
        outcome = self.outcome
        with VerticalScroll(id="detail-body") as body:
            body.border_title = f"{outcome.handler} · item {outcome.item_id}"
            yield Static(self._summary(), id="detail-summary")
            if outcome.error:
                yield Static("Error", classes="detail-heading")
                yield Static(Text(outcome.error), id="detail-error")
            yield Static("Attempts", classes="detail-heading")
            yield Static(self._attempts(), id="detail-attempts")
            if outcome.traceback:
                yield Static("Traceback", classes="detail-heading")
                yield Static(Text(outcome.traceback.rstrip()), id="detail-traceback")
        yield Footer()

    def _attempts(self) -> Table:
        # A rich table folds long results to the width instead of scrolling sideways.
        table = Table(box=box.SIMPLE_HEAD, expand=True, pad_edge=False, show_edge=False)
        table.add_column("#", no_wrap=True)
        table.add_column("Started", no_wrap=True)
        table.add_column("Duration", no_wrap=True)
        table.add_column("Result", ratio=1, overflow="fold")
        for row in attempt_rows(self.outcome, self._tz):
            table.add_row(row.number, row.started, row.duration, row.result)
        return table

    def on_mount(self) -> None:
        if not self.outcome.history:
            self.query_one("#detail-attempts").display = False
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
        if action == "copy_traceback":
            return bool(self.outcome.traceback or self.outcome.error) or None
        return True

    def _put(self, text: str, what: str) -> None:
        if self._copy is not None:
            self._copy(text, what)
        else:
            self.app.copy_to_clipboard(text)
            self.notify(f"Copied {what}", title="Clipboard", timeout=3)

    def action_copy_id(self) -> None:
        self._put(str(self.outcome.item_id), "item id")

    def action_copy_traceback(self) -> None:
        outcome = self.outcome
        self._put(outcome.traceback or outcome.error or "", "traceback")

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
