"""The fleet pane: the workers sharing the database, shown only when there are others."""

from __future__ import annotations

from textual.widgets import Static


class FleetPane(Static):
    """One line per worker (see ``view_models.fleet_rows``); hidden while this worker is alone.

    Its height follows the number of lines, so a layout pass happens only when a worker
    appears or goes; line contents are replaced without one.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self._rows: tuple[str, ...] | None = None

    @property
    def rows(self) -> tuple[str, ...]:
        """The lines shown last."""
        return self._rows or ()

    def show(self, visible: bool, rows: tuple[str, ...]) -> None:
        """Display ``rows`` (when ``visible``); does nothing when nothing changed."""
        if self.display != visible:
            self.display = visible
        if not visible or rows == self._rows:
            return
        resized = self._rows is None or len(rows) != len(self._rows)
        self._rows = rows
        if resized:
            self.styles.height = max(len(rows), 1) + 2
        self.update("\n".join(rows) or "no worker has beaten yet", layout=resized)
