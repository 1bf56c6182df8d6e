"""Logging for the command line: human-readable (Rich) or one JSON object per line.

Records that carry ``handler`` / ``item_id`` (the engine's item records and ``ctx.log``) show
them in both formats. Every line is redacted (:func:`~novaconsole.redaction.redact`): a handler
controls its messages, extra fields and exceptions, so secrets are masked and terminal control
characters neutralised in all of them.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from novaconsole.redaction import redact

LogFormat = Literal["rich", "json"]

_HANDLER_NAME = "novaconsole"
"""Our root handler's name: calling :func:`setup_logging` again replaces it."""

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def _context(record: logging.LogRecord) -> str:
    parts = []
    handler = getattr(record, "handler", None)
    if handler is not None:
        parts.append(str(handler))
    item_id = getattr(record, "item_id", None)
    if item_id is not None:
        parts.append(f"item={item_id}")
    return f"[{' '.join(parts)}] " if parts else ""


class HumanFormatter(logging.Formatter):
    """``[Handler item=42] message``, preceded by time, level and logger unless Rich shows them."""

    def __init__(self, *, bare: bool = False) -> None:
        super().__init__(
            "%(message)s" if bare else "%(asctime)s %(levelname)-7s %(name)s: %(message)s",
            datefmt="%H:%M:%S",
        )

    def formatMessage(self, record: logging.LogRecord) -> str:
        shown = logging.makeLogRecord(vars(record))  # other handlers keep the original
        shown.message = _context(record) + record.message
        return super().formatMessage(shown)

    def format(self, record: logging.LogRecord) -> str:
        # The whole line, context, message, exception and stack alike (newlines are kept).
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, handler, item_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and value is not None:
                shown = value if isinstance(value, int | float | bool) else redact(str(value))
                data[redact(key)] = shown
        if record.exc_info:
            data["exc_info"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            data["exc_info"] = redact(record.exc_text)
        if record.stack_info:
            data["stack_info"] = redact(record.stack_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r}")
    return value


def setup_logging(
    fmt: LogFormat = "rich", level: str | int = "INFO", *, stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record at ``level`` or above to ``stream`` (stderr) in ``fmt``.

    Rich is used when the stream is a terminal; a pipe gets the same fields as plain lines,
    one record per line, so that they are never wrapped.
    """
    stream = stream if stream is not None else sys.stderr
    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
    elif stream.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(
            console=Console(file=stream),
            show_path=False,
            markup=False,
            rich_tracebacks=False,
            log_time_format="%H:%M:%S",
        )
        handler.setFormatter(HumanFormatter(bare=True))
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(HumanFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    handler.set_name(_HANDLER_NAME)
    root.addHandler(handler)
    root.setLevel(_level(level))
    # Driver chatter would drown the engine's own debug records.
    for noisy in ("aiosqlite", "asyncio", "sqlalchemy.engine", "asyncpg", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return handler
