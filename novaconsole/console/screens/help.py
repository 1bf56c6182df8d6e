"""The help screen: every key of the console and what the command palette adds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich import box
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

FOCUS_NOTE = (
    "tab / shift+tab move between the handlers, results and log panes; the focused pane has "
    "a bright border, and its keys (enter, /, z, c) act on it."
)

PALETTE_EXTRAS = (
    "Pause handler X / Resume handler X",
    "Batch size of X up / down",
    "Show results of X",
    "Retry X item N (failed results in the window; followed until it ran again)",
    "Peek X (what its fetch_next would return now, rolled back)",
    "Failure groups (failed items grouped; retry a group)",
    "Stats (items/s and latency over 10 minutes)",
    "Show handlers: all / ingestion / internal / export",
    "Show results: all / failed only / selected handler",
)


class HelpScreen(ModalScreen[None]):
    """Keys (from the console's own bindings, so it cannot drift) and palette commands."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="close-help"),
        Binding("question_mark", "close", "Close", show=False, id="close-help-key"),
    ]

    def __init__(self, keys: Sequence[tuple[str, str, str]]) -> None:
        super().__init__()
        self._keys = keys

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body") as body:
            body.border_title = "novaconsole · help"
            yield Static(self._table(), id="help-keys")
            yield Static(Text(FOCUS_NOTE), id="help-focus")
            yield Static("Also in the command palette (ctrl+p), by name:", classes="help-heading")
            yield Static(Text("\n".join(f"  {line}" for line in PALETTE_EXTRAS)), id="help-extras")
            yield Static(
                Text(
                    "Batch sizes move in steps of about 10 %. A value marked * differs from "
                    "config.toml; run-time changes are remembered in the database."
                ),
                id="help-notes",
            )
        yield Footer()

    def _table(self) -> Table:
        # A rich table wraps its last column to the width: nothing is ever cut.
        table = Table(box=box.SIMPLE_HEAD, expand=True, pad_edge=False, show_edge=False)
        table.add_column("Key", no_wrap=True, style="bold")
        table.add_column("Action", max_width=22)
        table.add_column("What it does", ratio=1, overflow="fold")
        for key, action, explanation in self._keys:
            table.add_row(key, action, explanation)
        return table

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()

    def action_close(self) -> None:
        self.dismiss(None)
