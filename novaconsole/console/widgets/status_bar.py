"""The one-line summary at the top of the console."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from novaconsole.console.view_models import StatusView

_STATE_STYLES = {
    "running": "bold $text-success",
    "paused": "bold $text-warning",
    "draining": "bold reverse $text-warning",
    "starting": "bold $text-primary",
    "stopped": "bold $text-muted",
}


class StatusBar(Static):
    """Service state (coloured), then as many fields as the width holds, by priority: why
    everything is paused and until when, paused handlers, the filter, next poll,
    concurrency, who paused, the fleet, cycle, worker and database (see
    :meth:`StatusView.fit`); a long reason or database is shortened with an ellipsis. The
    whole text stays in :attr:`StatusView.pause` (and in the tooltip)."""

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
        self.tooltip = view.pause or None
        self.update(self._content(view), layout=False)

    def on_resize(self) -> None:
        if self._view is not None:
            self.update(self._content(self._view), layout=False)

    def _content(self, view: StatusView) -> Content:
        state_style = _STATE_STYLES.get(view.state, "bold")
        pieces = [Content.styled(f" {view.label.upper()} ", state_style)]
        room = self.content_region.width - pieces[0].cell_length
        for name, value in view.fit(room):
            pieces.append(Content.styled(f"  {name} " if name else "  ", "$text-muted"))
            pieces.append(Content(value))
        return Content("").join(pieces)
