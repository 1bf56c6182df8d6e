"""The one-line summary at the top of the console."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from novaconsole.console.view_models import StatusView, fit

_STATE_STYLES = {
    "running": "bold $text-success",
    "paused": "bold $text-warning",
    "draining": "bold reverse $text-warning",
    "starting": "bold $text-primary",
    "stopped": "bold $text-muted",
}


class StatusBar(Static):
    """Service state (coloured), cycle number, next poll, concurrency, worker and database.

    The database, the last field, is shortened to what the width leaves for it.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self._view: StatusView | None = None

    def show(self, view: StatusView) -> None:
        """Display ``view``; does nothing when it is what is already shown."""
        if view == self._view:
            return
        self._view = view
        self.set_class(view.state == "paused", "-paused")
        self.set_class(view.state == "draining", "-draining")
        self.update(self._content(view), layout=False)

    def on_resize(self) -> None:
        if self._view is not None:
            self.update(self._content(self._view), layout=False)

    def _content(self, view: StatusView) -> Content:
        state_style = _STATE_STYLES.get(view.state, "bold")
        pieces = [Content.styled(f" {view.label.upper()} ", state_style)]
        room = self.content_region.width - pieces[0].cell_length
        fields = view.fields
        for index, (name, value) in enumerate(fields):
            label = f"  {name} "
            if index == len(fields) - 1:
                value = fit(value, max(0, room - len(label))).rstrip()
            pieces.append(Content.styled(label, "$text-muted"))
            pieces.append(Content(value))
            room -= len(label) + len(value)
        return Content("").join(pieces)
