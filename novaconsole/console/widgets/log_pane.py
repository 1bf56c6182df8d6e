"""The log pane: records from the engine and the handlers, written in batches."""

from __future__ import annotations

import logging
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


class _LevelHighlighter(Highlighter):
    """Colours the level word of each line with the pane's component styles."""

    def __init__(self, pane: LogPane) -> None:
        self._pane = pane

    def highlight(self, text: Text) -> None:
        # Lines start "HH:MM:SS LEVEL   ...": the level is the second word.
        plain = text.plain
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
    """A bounded ``Log`` whose lines carry time, level, logger, handler and item id."""

    COMPONENT_CLASSES: ClassVar[set[str]] = set(_LEVEL_CLASSES.values())

    def __init__(
        self, *, max_lines: int = 1000, tz: tzinfo | None = None, id: str | None = None
    ) -> None:
        super().__init__(max_lines=max_lines, highlight=True, auto_scroll=True, id=id)
        self.highlighter = _LevelHighlighter(self)
        self._tz = tz

    def write_records(self, records: Sequence[logging.LogRecord]) -> None:
        """Append records as one batch (only the newest ``max_lines`` can be shown anyway)."""
        if not records:
            return
        limit = self.max_lines or len(records)
        lines = log_lines(records[-limit:], self._tz)
        self.write_lines([line.text for line in lines])
