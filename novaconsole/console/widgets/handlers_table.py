"""The handlers pane: one keyed row per handler, updated cell by cell."""

from __future__ import annotations

from collections.abc import Sequence
from time import monotonic
from typing import ClassVar

from rich.text import Text
from textual.widgets import DataTable

from novaconsole.console.view_models import HANDLER_COLUMNS, HandlerRow

_STATE_COLUMN = 1
_BATCH_COLUMN = 2


class HandlersTable(DataTable[Text]):
    """Handlers with state, batch size, counts and last error; the cursor selects a handler.

    :meth:`show` compares each row with what is on screen and calls ``update_cell`` only for
    cells that changed: a DataTable repaints everything on any change, so an unchanged
    refresh must touch nothing, and counts that move on every refresh of a busy service are
    repainted only once per ``count_interval``.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "handlers-table--success",
        "handlers-table--warning",
        "handlers-table--error",
        "handlers-table--muted",
        "handlers-table--changed",
    }

    def __init__(self, *, count_interval: float = 1.0, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.count_interval = count_interval
        """Counts, last run and last error are repainted at most this often (seconds); a
        change of state or batch size shows at once."""
        self._shown: dict[str, HandlerRow] = {}
        self._last_update = float("-inf")

    def on_mount(self) -> None:
        for key, label, width in HANDLER_COLUMNS:
            self.add_column(label, key=key, width=width)
        self.watch(self.app, "theme", self._watch_theme, init=False)

    @property
    def selected_handler(self) -> str | None:
        """The name of the handler under the cursor, if any."""
        if not self.row_count:
            return None
        row_key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return row_key.value

    def select_handler(self, name: str) -> None:
        """Move the cursor to ``name``'s row (if shown)."""
        if name in self._shown:
            self.move_cursor(row=self.get_row_index(name))

    def show(self, rows: Sequence[HandlerRow]) -> None:
        """Make the table show ``rows`` (in order), touching only what changed."""
        names = [row.name for row in rows]
        if list(self._shown) != names:
            self._rebuild(rows)
            return
        changed = [row for row in rows if self._shown[row.name] != row]
        if not changed:
            return
        now = monotonic()
        if now - self._last_update < self.count_interval and not any(
            self._shown[row.name].controls != row.controls for row in changed
        ):
            return  # only counts moved: they wait for the next interval
        self._last_update = now
        for row in changed:
            before = self._shown[row.name]
            for index, (key, _, width) in enumerate(HANDLER_COLUMNS):
                if before.cells[index] != row.cells[index] or (
                    index == _STATE_COLUMN and before.tone != row.tone
                ):
                    # Fixed-width columns never need measuring; the others grow to fit.
                    self.update_cell(
                        row.name, key, self._cell(row, index), update_width=width is None
                    )
            self._shown[row.name] = row

    def _rebuild(self, rows: Sequence[HandlerRow]) -> None:
        """Replace every row: only when the set of handlers shown changes (a purpose filter)."""
        selected = self.selected_handler
        self.clear()
        self._shown = {}
        for row in rows:
            self.add_row(*(self._cell(row, i) for i in range(len(row.cells))), key=row.name)
            self._shown[row.name] = row
        if selected is not None:
            self.select_handler(selected)

    def _cell(self, row: HandlerRow, index: int) -> Text:
        value = row.cells[index]
        if index == _STATE_COLUMN:
            return Text(value, style=self.get_component_rich_style(f"handlers-table--{row.tone}"))
        if index == _BATCH_COLUMN and value.endswith("*"):
            return Text(value, style=self.get_component_rich_style("handlers-table--changed"))
        return Text(value)

    def _watch_theme(self) -> None:
        # Component styles are recomputed after the new theme's CSS is applied.
        self.call_after_refresh(self._recolour)

    def _recolour(self) -> None:
        for row in self._shown.values():
            for index in (_STATE_COLUMN, _BATCH_COLUMN):
                self.update_cell(row.name, HANDLER_COLUMNS[index][0], self._cell(row, index))
