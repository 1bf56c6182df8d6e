"""The results pane: newest outcomes first, in a Line-API view with a per-row strip cache."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import tzinfo
from typing import ClassVar

from rich.segment import Segment
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from novaconsole.console.view_models import (
    RESULT_HEADERS,
    ResultFilter,
    filter_title,
    fit,
    result_columns,
    result_matches,
    result_row,
)
from novaconsole.engine.outcomes import ItemOutcome

_Entry = tuple[int, ItemOutcome]
"""(sequence number, outcome): the number keys the strip cache and never repeats."""


class ResultsView(ScrollView, can_focus=True):
    """A bounded window of outcomes, newest first, with a sticky header and a row cursor.

    Rows are rendered once per (row, width, highlight) and cached as strips, so adding a
    batch of outcomes or scrolling costs only the rows that become visible.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select", "Detail", id="result-detail"),
        Binding("up", "cursor_up", "Up", show=False, id="results-up"),
        Binding("down", "cursor_down", "Down", show=False, id="results-down"),
        Binding("pageup", "page_up", "Page up", show=False, id="results-page-up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="results-page-down"),
        Binding("home", "first", "Newest", show=False, id="results-newest"),
        Binding("end", "last", "Oldest", show=False, id="results-oldest"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "results-view--header",
        "results-view--cursor",
        "results-view--cursor-blurred",
        "results-view--succeeded",
        "results-view--failed",
        "results-view--timed_out",
        "results-view--skipped",
        "results-view--cancelled",
        "results-view--error",
        "results-view--muted",
        "results-view--empty",
    }

    cursor: reactive[int] = reactive(0, always_update=False, repaint=False)
    """Index of the highlighted row in the filtered rows (0: the newest)."""

    class ResultSelected(Message):
        """The operator chose a result (enter or double click)."""

        def __init__(self, outcome: ItemOutcome) -> None:
            super().__init__()
            self.outcome = outcome

    def __init__(
        self, *, max_rows: int = 2000, tz: tzinfo | None = None, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.max_rows = max_rows
        self._tz = tz
        self._all: deque[_Entry] = deque(maxlen=max_rows)
        self._visible: list[_Entry] = []
        self._sequence = 0
        self._mode = ResultFilter.ALL
        self._handler: str | None = None
        self._query = ""
        self._frozen = False
        self._held = 0
        self._strips: LRUCache[tuple[int, int, int], Strip] = LRUCache(1024)

    # ---------------------------------------------------------------- data

    @property
    def mode(self) -> ResultFilter:
        return self._mode

    @property
    def filter_handler(self) -> str | None:
        return self._handler

    @property
    def search_text(self) -> str:
        """The search text rows must hold (item id, handler or error); "" for none."""
        return self._query

    @property
    def frozen(self) -> bool:
        """New results are held back (counted in the title) so the view stays still."""
        return self._frozen

    @property
    def held(self) -> int:
        """Results that arrived while frozen and would show under the filter."""
        return self._held

    @property
    def rows(self) -> list[ItemOutcome]:
        """The outcomes shown under the current filter, newest first."""
        return [outcome for _, outcome in self._visible]

    @property
    def outcomes(self) -> list[ItemOutcome]:
        """Every outcome in the window, newest first, whatever the filter."""
        return [outcome for _, outcome in self._all]

    @property
    def selected(self) -> ItemOutcome | None:
        """The outcome under the cursor."""
        if 0 <= self.cursor < len(self._visible):
            return self._visible[self.cursor][1]
        return None

    def add(self, outcomes: Iterable[ItemOutcome]) -> None:
        """Add outcomes (oldest first, as they happened); the oldest beyond the window go."""
        batch = list(outcomes)
        if not batch:
            return
        # Only the newest max_rows can be shown; the others still take a number.
        start = self._sequence + len(batch) - min(len(batch), self.max_rows)
        new: list[_Entry] = [
            (start + offset + 1, outcome) for offset, outcome in enumerate(batch[-self.max_rows :])
        ]
        self._sequence += len(batch)
        new.reverse()
        self._all.extendleft(reversed(new))
        if self._mode is ResultFilter.ALL and not self._query:
            added = new  # nothing to filter out: at 10,000 outcomes/s this loop shows
        else:
            added = [e for e in new if result_matches(e[1], self._mode, self._handler, self._query)]
        if self._frozen:
            self._held += len(added)
            return
        oldest_kept = self._all[-1][0]
        following = self.cursor == 0 and self.scroll_y == 0
        visible = added + self._visible
        while visible and visible[-1][0] < oldest_kept:
            visible.pop()
        self._visible = visible
        self._update_size()
        if not following and added:
            # Keep the operator's place: the row under the cursor stays under it.
            self.set_reactive(ResultsView.cursor, min(self.cursor + len(added), len(visible) - 1))
            self.scroll_to(y=self.scroll_y + len(added), animate=False, immediate=True)
        self.refresh()

    def set_filter(
        self, mode: ResultFilter, handler: str | None = None, query: str | None = None
    ) -> None:
        """Show only what ``mode`` keeps (``handler``: the selected handler for that mode) and
        what holds ``query`` (None: the search stays as it is)."""
        self._mode = mode
        self._handler = handler
        if query is not None:
            self._query = query
        self._reselect(keep_place=False)

    def set_query(self, query: str) -> None:
        """Search: show only rows holding ``query`` (item id, handler or error)."""
        self.set_filter(self._mode, self._handler, query)

    def freeze(self, frozen: bool) -> None:
        """Hold new results back (``True``) or show them again, the cursor on the same row."""
        if frozen == self._frozen:
            return
        self._frozen = frozen
        self._held = 0
        if not frozen:
            self._reselect(keep_place=True)

    def _reselect(self, *, keep_place: bool) -> None:
        selected = self.selected
        self._visible = [
            e for e in self._all if result_matches(e[1], self._mode, self._handler, self._query)
        ]
        cursor = 0
        if keep_place and selected is not None and (self.cursor or self.scroll_y):
            cursor = next((i for i, e in enumerate(self._visible) if e[1] is selected), 0)
        self._update_size()
        self.set_reactive(ResultsView.cursor, cursor)
        if cursor:
            self._scroll_cursor_into_view()
        else:
            self.scroll_to(y=0, animate=False, immediate=True)
        self.refresh()

    @property
    def title(self) -> str:
        """The pane title: filter, counts, and what waits while frozen."""
        shown = len(self._visible)
        total = len(self._all)
        counts = f"{shown:,}" if shown == total and not self._frozen else f"{shown:,} of {total:,}"
        title = f"{filter_title(self._mode, self._handler, self._query)} ({counts})"
        if self._frozen:
            title += f" · frozen, {self._held:,} new" if self._held else " · frozen"
        return title

    def _update_size(self) -> None:
        self.virtual_size = Size(self.scrollable_content_region.width, len(self._visible) + 1)

    # ---------------------------------------------------------------- rendering

    def on_resize(self) -> None:
        self._update_size()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        if y == 0:
            return self._header(width)
        index = int(self.scroll_y) + y - 1
        if index >= len(self._visible):
            if index == 0:
                return self._empty(width)
            return Strip.blank(width, self.rich_style)
        sequence, outcome = self._visible[index]
        highlight = 0 if index != self.cursor else (1 if self.has_focus else 2)
        key = (sequence, width, highlight)
        strip = self._strips.get(key)
        if strip is None:
            strip = self._render_row(outcome, width, highlight)
            self._strips[key] = strip
        return strip

    def _header(self, width: int) -> Strip:
        columns = result_columns(width).widths()
        text = " ".join(fit(h, w) for h, w in zip(RESULT_HEADERS, columns, strict=True) if w)
        style = self.rich_style + self.get_component_rich_style("results-view--header")
        return Strip([Segment(fit(text, width), style)], width)

    def _empty(self, width: int) -> Strip:
        message = "no results yet" if not self._all else "no results match this filter"
        style = self.rich_style + self.get_component_rich_style("results-view--empty")
        return Strip([Segment(fit(f"  {message}", width), style)], width)

    def _render_row(self, outcome: ItemOutcome, width: int, highlight: int) -> Strip:
        # Segments built directly (no Text/console render): this runs for every new row.
        row = result_row(outcome, self._tz)
        columns = result_columns(width).widths()
        base = self.rich_style
        if highlight:
            name = "results-view--cursor" if highlight == 1 else "results-view--cursor-blurred"
            base = base + self.get_component_rich_style(name)
        status = base + self.get_component_rich_style(
            f"results-view--{row.status.value}", partial=True
        )
        muted = base + self.get_component_rich_style("results-view--muted", partial=True)
        error = base + self.get_component_rich_style("results-view--error", partial=True)
        styles = (status, muted, base, base, base, base, error)
        segments: list[Segment] = []
        for index, (value, column_width) in enumerate(zip(row.cells, columns, strict=True)):
            if not column_width:
                continue
            if segments:
                segments.append(Segment(" ", base))
            segments.append(Segment(fit(value, column_width), styles[index]))
        return Strip(segments).extend_cell_length(width, base).crop(0, width)

    # ---------------------------------------------------------------- cursor

    def watch_cursor(self, old: int, new: int) -> None:
        self._scroll_cursor_into_view()
        self.refresh()

    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _scroll_cursor_into_view(self) -> None:
        page = self._page()
        top = int(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + page:
            self.scroll_to(y=self.cursor - page + 1, animate=False, immediate=True)

    def move(self, delta: int) -> None:
        """Move the cursor ``delta`` rows (negative: up, towards the newest)."""
        self._move(delta)

    def _move(self, delta: int) -> None:
        if self._visible:
            self.cursor = max(0, min(len(self._visible) - 1, self.cursor + delta))

    def action_cursor_up(self) -> None:
        self._move(-1)

    def action_cursor_down(self) -> None:
        self._move(1)

    def action_page_up(self) -> None:
        self._move(-self._page())

    def action_page_down(self) -> None:
        self._move(self._page())

    def action_first(self) -> None:
        self._move(-len(self._visible))

    def action_last(self) -> None:
        self._move(len(self._visible))

    def action_select(self) -> None:
        if (outcome := self.selected) is not None:
            self.post_message(self.ResultSelected(outcome))

    def on_click(self, event: events.Click) -> None:
        if event.y < 1:
            return
        index = int(self.scroll_y) + event.y - 1
        if index < len(self._visible):
            self.cursor = index
            if event.chain >= 2:
                self.action_select()
