"""The search line: ``/`` opens it under the pane it searches."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input


class SearchBar(Input):
    """One line of search text for the results or the log pane.

    Typing searches as you go (``Changed``); enter keeps the search and returns to the pane
    (``Submitted``); escape clears it (``Cancelled``).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Clear search", id="clear-search"),
    ]

    class Cancelled(Message):
        """The operator cleared the search (escape)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(placeholder="search…", id=id, compact=True)
        self.target = "results"
        """The pane searched: ``results`` or ``logs``."""

    def open(self, target: str, query: str) -> None:
        """Show the bar for ``target``, holding ``query``, with the cursor at its end."""
        self.target = target
        self.border_title = None
        self.placeholder = f"search {target}: " + (
            "item id, handler or error" if target == "results" else "any text"
        )
        self.value = query
        self.display = True
        self.focus()
        self.cursor_position = len(query)

    def action_cancel(self) -> None:
        self.post_message(self.Cancelled())
