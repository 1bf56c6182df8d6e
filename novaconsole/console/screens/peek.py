"""What a handler's fetch_next would return now: the ids and a one-line repr of each item
(fetched in a transaction that was rolled back; nothing claimed or processed)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

from novaconsole.console.triage_view_models import PEEK_COLUMNS, peek_rows, peek_title
from novaconsole.engine.peek import PeekResult


class PeekScreen(ModalScreen[None]):
    """A peek's items, or the one line saying why the fetch failed."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="close-peek"),
    ]

    DEFAULT_CSS = """
    PeekScreen { align: center middle; }
    PeekScreen > #peek-body {
        width: 90%; height: auto; max-height: 90%; padding: 0 1;
        border: thick $primary; background: $surface;
    }
    PeekScreen #peek-title { margin-bottom: 1; }
    PeekScreen #peek-error { color: $text-error; }
    PeekScreen #peek-items { height: auto; max-height: 30; }
    """

    def __init__(self, handler: str, result: PeekResult | None, error: str | None = None) -> None:
        super().__init__()
        self.handler = handler
        self.result = result
        self.error = error

    def compose(self) -> ComposeResult:
        with Vertical(id="peek-body") as body:
            body.border_title = f"Peek · {self.handler}"
            if self.result is None:
                yield Static(Text(f"fetch_next failed: {self.error}"), id="peek-error")
            else:
                yield Static(Text(peek_title(self.result)), id="peek-title")
                yield DataTable[Text](id="peek-items", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        if self.result is None:
            return
        table: DataTable[Text] = self.query_one("#peek-items", DataTable)
        table.add_columns(*PEEK_COLUMNS)
        for row in peek_rows(self.result):
            table.add_row(*(Text(cell) for cell in row.cells), key=row.key)
        if not self.result.items:
            table.display = False
        else:
            table.focus()

    def action_close(self) -> None:
        self.dismiss(None)
