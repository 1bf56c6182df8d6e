"""The handlers pane: one keyed row per handler, updated cell by cell."""

from __future__ import annotations

from collections.abc import Sequence
from time import monotonic
from typing import ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from novaconsole.console.view_models import (
    HANDLER_COLUMNS,
    WHY_LINES,
    HandlerRow,
    fit,
    handler_columns,
    note_lines,
)

_INDEX = {key: index for index, (key, _, _) in enumerate(HANDLER_COLUMNS)}
_NOTE = _INDEX["last_error"]


class HandlersTable(DataTable[Text]):
    """Handlers with state, counts, batch size and last error; the cursor selects a handler.

    The columns are those that fit the width (``view_models.handler_columns``), chosen again
    on resize; nothing scrolls sideways. A handler paused or tripped with a why puts that
    column before the counts, and its row takes up to ``WHY_LINES`` lines to say it.
    :meth:`show` compares each row with what is on screen and calls ``update_cell`` only for
    cells that changed: a DataTable repaints everything on any change, so an unchanged
    refresh must touch nothing, and counts that move on every refresh of a busy service are
    repainted only once per ``count_interval``.

    | Key | Does |
    | --- | --- |
    | enter | show only this handler's results (``RowSelected``) |
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Its results", id="handler-results"),
    ]

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
        self._columns: tuple[tuple[str, str, int], ...] = ()
        self._heights: tuple[int, ...] = ()
        self._last_update = float("-inf")

    def on_mount(self) -> None:
        self.watch(self.app, "theme", self._watch_theme, init=False)

    @property
    def column_keys(self) -> tuple[str, ...]:
        """The keys of the columns shown now (see ``HANDLER_COLUMNS``)."""
        return tuple(key for key, _, _ in self._columns)

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
        if list(self._shown) != names or (self._columns, self._heights) != self._layout(rows):
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
            for key, _, width in self._columns:
                index = _INDEX[key]
                if before.cells[index] != row.cells[index] or (
                    key in ("state", "last_error") and before.tone != row.tone
                ):
                    self.update_cell(row.name, key, self._cell(row, key, width))
            self._shown[row.name] = row

    def on_resize(self) -> None:
        rows = list(self._shown.values())
        if rows and (self._columns, self._heights) != self._layout(rows):
            self._rebuild(rows)

    def _layout(
        self, rows: Sequence[HandlerRow]
    ) -> tuple[tuple[tuple[str, str, int], ...], tuple[int, ...]]:
        """The columns that fit, and each row's height (a why may take more than one line)."""
        name_width = max((len(row.name) for row in rows), default=7)
        why_width = max((cell_len(row.cells[_NOTE]) for row in rows if row.why), default=0)
        columns = handler_columns(self.scrollable_content_region.width, name_width, why_width)
        note_width = next((width for key, _, width in columns if key == "last_error"), 0)
        heights = tuple(
            len(note_lines(row.cells[_NOTE], note_width)) if row.why and note_width else 1
            for row in rows
        )
        return columns, heights

    def _rebuild(self, rows: Sequence[HandlerRow]) -> None:
        """Replace every row and column: only when the handlers shown change (a purpose
        filter) or the width admits other columns."""
        selected = self.selected_handler
        self.clear(columns=True)
        self._columns, self._heights = self._layout(rows)
        for key, header, width in self._columns:
            self.add_column(header, key=key, width=width)
        self._shown = {}
        for row, height in zip(rows, self._heights, strict=True):
            cells = [self._cell(row, key, width) for key, _, width in self._columns]
            self.add_row(*cells, key=row.name, height=height)
            self._shown[row.name] = row
        if selected is not None:
            self.select_handler(selected)

    def _cell(self, row: HandlerRow, key: str, width: int) -> Text:
        value = row.cells[_INDEX[key]]
        if key == "state":
            return Text(value, style=self.get_component_rich_style(f"handlers-table--{row.tone}"))
        if key == "batch" and value.endswith("*"):
            return Text(value, style=self.get_component_rich_style("handlers-table--changed"))
        if key == "last_error" and row.why:
            style = self.get_component_rich_style(f"handlers-table--{row.tone}")
            return Text("\n".join(note_lines(value, width, WHY_LINES)), style=style)
        if key == "last_error" and row.state == "failing":
            style = self.get_component_rich_style("handlers-table--error")
            return Text(fit(value, width).rstrip(), style=style)
        return Text(fit(value, width).rstrip() if cell_len(value) > width else value)

    def _watch_theme(self) -> None:
        # Component styles are recomputed after the new theme's CSS is applied.
        self.call_after_refresh(self._recolour)

    def _recolour(self) -> None:
        for row in self._shown.values():
            for key, _, width in self._columns:
                if key in ("state", "batch", "last_error"):
                    self.update_cell(row.name, key, self._cell(row, key, width))
