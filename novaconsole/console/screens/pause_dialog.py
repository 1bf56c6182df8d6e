"""The small dialog ``p`` and ``space`` open: an optional reason and an optional duration."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Static

from novaconsole.console.steering import parse_duration


@dataclass(frozen=True, slots=True)
class PauseRequest:
    """What the operator typed: both optional."""

    reason: str | None = None
    until: timedelta | None = None


class PauseDialog(ModalScreen[PauseRequest | None]):
    """Asks why and for how long; Enter pauses (both may be left empty), escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="pause-cancel"),
    ]

    DEFAULT_CSS = """
    PauseDialog { align: center middle; }
    PauseDialog > #pause-body {
        width: 90%; max-width: 72; height: auto; padding: 0 2;
        border: thick $warning; background: $surface;
    }
    PauseDialog Label { margin-top: 1; }
    PauseDialog Input { border: tall $border-blurred; height: 3; }
    PauseDialog #pause-error { color: $text-error; height: auto; }
    PauseDialog #pause-hint { color: $text-muted; margin-top: 1; }
    """

    def __init__(self, subject: str) -> None:
        super().__init__()
        self.subject = subject

    def compose(self) -> ComposeResult:
        with Vertical(id="pause-body") as body:
            body.border_title = f"Pause {self.subject}"
            yield Label("Reason (optional)")
            yield Input(placeholder="db maintenance", id="pause-reason", max_length=200)
            yield Label("For how long (optional: 30m, 1h30m, 01:30:00)")
            yield Input(placeholder="until resumed by hand", id="pause-for")
            yield Static("", id="pause-error", markup=False)
            yield Static("enter: pause · escape: cancel", id="pause-hint")
        yield Footer()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        reason = self.query_one("#pause-reason", Input).value.strip() or None
        try:
            until = parse_duration(self.query_one("#pause-for", Input).value)
        except ValueError as error:
            self.query_one("#pause-error", Static).update(str(error))
            self.query_one("#pause-for", Input).focus()
            return
        self.dismiss(PauseRequest(reason, until))

    def action_cancel(self) -> None:
        self.dismiss(None)
