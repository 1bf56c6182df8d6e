"""Log formats: JSON lines and human-readable text, with handler and item id, secrets masked."""

from __future__ import annotations

import io
import json
import logging

import pytest

from novaconsole.engine.handler import current_item_id, handler_logger
from novaconsole.logs import HumanFormatter, JsonFormatter, setup_logging


def record(message="hello %s", args=("world",), **extra):
    made = logging.LogRecord("novaconsole.engine", logging.WARNING, "x.py", 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_json_line_has_the_fields():
    line = JsonFormatter().format(record(handler="Ping", item_id=42, cycle=3))
    data = json.loads(line)
    assert data["level"] == "WARNING"
    assert data["logger"] == "novaconsole.engine"
    assert data["message"] == "hello world"
    assert (data["handler"], data["item_id"], data["cycle"]) == ("Ping", 42, 3)
    assert data["time"].endswith("+00:00")
    assert "\n" not in line


def test_json_exception_is_text():
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        import sys

        made = record(exc_info=sys.exc_info())
    data = json.loads(JsonFormatter().format(made))
    assert "ValueError: bad" in data["exc_info"]
    assert data["exc_info"].startswith("Traceback")


def test_json_item_ids_of_any_type():
    import uuid

    ident = uuid.uuid4()
    data = json.loads(JsonFormatter().format(record(handler="H", item_id=ident)))
    assert data["item_id"] == str(ident)


def test_human_line_shows_handler_and_item():
    formatter = HumanFormatter()
    made = record(handler="Ping", item_id=7)
    line = formatter.format(made)
    assert "WARNING" in line
    assert "[Ping item=7] hello world" in line
    assert made.getMessage() == "hello world"  # other handlers see the record unchanged


def test_secrets_masked_in_both_formats():
    made = record("connecting to %s", ("postgresql://u:hunter2@h/db",))
    assert "hunter2" not in JsonFormatter().format(made)
    assert "hunter2" not in HumanFormatter().format(made)


@pytest.fixture
def root_logging():
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield root
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_setup_logging_json_with_handler_logger(root_logging):
    stream = io.StringIO()
    setup_logging("json", "debug", stream=stream)
    setup_logging("json", "debug", stream=stream)  # replaces, never duplicates
    log = handler_logger("Ping")
    token = current_item_id.set("item-9")
    try:
        log.info("processing")
    finally:
        current_item_id.reset(token)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1
    assert lines[0]["handler"] == "Ping"
    assert lines[0]["item_id"] == "item-9"
    assert lines[0]["logger"] == "novaconsole.handlers.Ping"


def test_setup_logging_level_filters(root_logging):
    stream = io.StringIO()
    setup_logging("rich", "warning", stream=stream)
    logging.getLogger("novaconsole.engine").info("quiet")
    logging.getLogger("novaconsole.engine").warning("loud")
    text = stream.getvalue()
    assert "loud" in text
    assert "quiet" not in text
    assert len(text.splitlines()) == 1


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rich_on_a_terminal(root_logging):
    stream = Terminal()
    handler = setup_logging("rich", "info", stream=stream)
    assert type(handler).__name__ == "RichHandler"
    logging.getLogger("novaconsole.engine").info("hello", extra={"handler": "Ping", "item_id": 3})
    from rich.text import Text

    text = Text.from_ansi(stream.getvalue()).plain
    assert "[Ping item=3] hello" in text
    assert "INFO" in text


def test_driver_chatter_is_quiet(root_logging):
    stream = io.StringIO()
    setup_logging("json", "debug", stream=stream)
    logging.getLogger("httpx").info("HTTP Request: POST https://example.test")
    logging.getLogger("aiosqlite").debug("executing")
    logging.getLogger("novaconsole.engine").debug("cycle 1")
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["cycle 1"]


HOSTILE = "\x1b]0;pwned\x07\x1b]52;c;SGVsbG8=\x07\x1b[2J\r postgresql://app:secret@db/x \x9b2J"


def _hostile_record() -> logging.LogRecord:
    try:
        raise RuntimeError(HOSTILE)
    except RuntimeError:
        import sys

        return record(
            "item said %s",
            (HOSTILE,),
            handler="Ping",
            item_id=HOSTILE,
            note=HOSTILE,
            exc_info=sys.exc_info(),
        )


def _assert_safe(text: str) -> None:
    for byte in ("\x1b", "\x07", "\r", "\x9b"):
        assert byte not in text
    assert "secret" not in text


def test_json_lines_are_redacted_everywhere_a_handler_writes():
    line = JsonFormatter().format(_hostile_record())
    data = json.loads(line)  # decoded, as a log shipper would show it
    for key in ("message", "item_id", "note", "exc_info"):
        _assert_safe(data[key])
        assert r"\x1b]0;pwned" in data[key]
    _assert_safe(line)


def test_human_lines_are_redacted_everywhere_a_handler_writes():
    made = _hostile_record()
    line = HumanFormatter().format(made)
    _assert_safe(line)
    assert "[Ping item=\\x1b]0;pwned" in line
    assert "RuntimeError: \\x1b]0;pwned" in line  # the traceback too
    assert made.getMessage().startswith("item said \x1b")  # the record itself is unchanged


def test_ctx_log_lines_on_a_terminal_are_redacted(root_logging):
    stream = Terminal()
    setup_logging("rich", "info", stream=stream)
    token = current_item_id.set(HOSTILE)
    try:
        handler_logger("Ping").warning("fetched %s", HOSTILE)
    finally:
        current_item_id.reset(token)
    written = stream.getvalue()
    # Rich styles the line with its own CSI sequences; nothing else may reach the terminal.
    import re

    assert re.sub(r"\x1b\[[0-9;]*m", "", written).count("\x1b") == 0
    _assert_safe(re.sub(r"\x1b\[[0-9;]*m", "", written))
