"""The log pane: records from the engine and the handlers, written in batches."""

from __future__ import annotations

import logging
import textwrap
from collections import deque
from collections.abc import Sequence
from datetime import tzinfo
from typing import ClassVar

from rich.highlighter import Highlighter
from rich.text import Text
from textual.widgets import Log

from novaconsole.console.view_models import log_lines

_LEVEL_CLASSES = {
    "DEBUG": "log-pane--debug",
    "INFO": "log-pane--info",
    "WARNING": "log-pane--warning",
    "ERROR": "log-pane--error",
    "CRITICAL": "log-pane--error",
}


class LogSink(logging.Handler):
    """A logging handler that keeps the newest records in a bounded buffer for the log pane.

    ``emit`` only appends (safe from any thread); formatting happens when the pane flushes.
    """

    def __init__(self, capacity: int = 2000, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._records: deque[logging.LogRecord] = deque(maxlen=capacity)

    def emit(self, record: logging.LogRecord) -> None:
        self._records.append(record)

    def take(self) -> list[logging.LogRecord]:
        """Every buffered record, oldest first; the buffer is left empty."""
        records: list[logging.LogRecord] = []
        while self._records:
            try:
                records.append(self._records.popleft())
            except IndexError:
                break
        return records


CONTINUATION = "  ↳ "
"""How a wrapped log line continues on the next row."""


def wrap_line(line: str, width: int) -> list[str]:
    """``line`` cut into rows of at most ``width`` cells, continuations marked."""
    if width <= len(CONTINUATION) + 8 or len(line) <= width:
        return [line]
    return textwrap.wrap(
        line,
        width,
        subsequent_indent=CONTINUATION,
        break_on_hyphens=False,
        replace_whitespace=False,
        drop_whitespace=True,
    ) or [line]


class _LevelHighlighter(Highlighter):
    """Colours the level word of each line, and what the search looks for."""

    def __init__(self, pane: LogPane) -> None:
        self._pane = pane

    def highlight(self, text: Text) -> None:
        plain = text.plain
        query = self._pane.search_text
        if query:
            folded, needle = plain.casefold(), query.casefold()
            style = self._pane.get_component_rich_style("log-pane--match", partial=True)
            start = folded.find(needle)
            while start >= 0:
                text.stylize(style, start, start + len(needle))
                start = folded.find(needle, start + len(needle))
        # Lines start "HH:MM:SS LEVEL   ...": the level is the second word.
        start = plain.find(" ") + 1
        end = plain.find(" ", start)
        if start <= 0 or end <= start:
            return
        name = _LEVEL_CLASSES.get(plain[start:end])
        if name is not None:
            style = self._pane.get_component_rich_style(name, partial=True)
            text.stylize(style, start, end)
            if name in ("log-pane--warning", "log-pane--error"):
                text.stylize(style, end)


class LogPane(Log):
    """A bounded ``Log`` whose lines carry time, level, logger, handler and item id.

    Lines longer than the pane wrap (re-wrapped on resize), so nothing scrolls sideways.
    :meth:`search` finds a text and scrolls to it; while a search is active new lines do
    not move the view.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {*_LEVEL_CLASSES.values(), "log-pane--match"}

    def __init__(
        self, *, max_lines: int = 1000, tz: tzinfo | None = None, id: str | None = None
    ) -> None:
        super().__init__(max_lines=max_lines, highlight=True, auto_scroll=True, id=id)
        self.highlighter = _LevelHighlighter(self)
        self._tz = tz
        self._raw: deque[str] = deque(maxlen=max_lines)
        self._wrap_width = 0
        self._following = True  # at the tail as of the last scroll; see watch_scroll_y
        self.search_text = ""
        """The text being searched for ("" when no search is active)."""
        self.match_line: int | None = None
        """The row of the current match, if any."""

    def write_records(self, records: Sequence[logging.LogRecord]) -> None:
        """Append records as one batch (only the newest ``max_lines`` can be shown anyway)."""
        if not records:
            return
        limit = self.max_lines or len(records)
        texts = [line.text for line in log_lines(records[-limit:], self._tz)]
        self._raw.extend(texts)
        # Log.write_lines follows only if the view is at the end *now*, which a shrink of the
        # pane (the narrow layout applies after the first one) undoes without any scroll.
        self.write_lines(self._wrapped(texts), scroll_end=False)
        self._follow_tail()

    def _follow_tail(self) -> None:
        if self._following and self.auto_scroll and not self.search_text:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # Only a scroll changes whether the pane follows; a resize or a write does not.
        self._following = round(new_value) >= self.max_scroll_y

    def _wrapped(self, texts: Sequence[str]) -> list[str]:
        width = self._wrap_width
        if width <= 0:
            return list(texts)
        rows: list[str] = []
        for text in texts:
            rows.extend(wrap_line(text, width))
        return rows

    def on_resize(self) -> None:
        width = self.scrollable_content_region.width
        if width != self._wrap_width:
            self._wrap_width = width
            if self._raw:
                self.clear()
                self.write_lines(self._wrapped(self._raw), scroll_end=False)
        self._follow_tail()

    def search(self, query: str, direction: int = 1) -> int | None:
        """Scroll to the next (``direction`` 1) or previous (-1) row holding ``query``
        (case-insensitive), from the current match; None when nothing matches."""
        if query != self.search_text:
            self.search_text = query
            self.match_line = None
            self.auto_scroll = not query
            self.refresh_lines(0, self.line_count)  # the highlighter marks other text now
        if not query:
            return None
        lines = self.lines
        count = len(lines)
        if not count:
            return None
        needle = query.casefold()
        start = self.match_line
        if start is None:
            start = count - 1 if direction > 0 else 0
        for step in range(1, count + 1):
            index = (start + step * direction) % count
            if needle in lines[index].casefold():
                self.match_line = index
                self.scroll_to(y=max(0, index - 1), animate=False, immediate=True)
                return index
        return None

    def match_count(self) -> int:
        """Rows holding the current query."""
        if not self.search_text:
            return 0
        needle = self.search_text.casefold()
        return sum(1 for line in self.lines if needle in line.casefold())
