"""Hosting: the service and the app in one loop; logs to the pane, nothing to the terminal."""

from __future__ import annotations

import logging
import subprocess
import sys

import anyio
import pytest

from novaconsole.console import NovaConsole, capture_logs, serve_console
from novaconsole.console.widgets.log_pane import LogPane, LogSink
from tests.console.support import Source, build_service, poll_until

pytestmark = pytest.mark.anyio


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_serve_console_runs_both_sends_logs_to_the_pane_only_and_returns_0() -> None:
    terminal = Recorder()
    root = logging.getLogger()
    root.addHandler(terminal)
    source = Source([1, 2])
    service = build_service({"A": source})
    app = NovaConsole(service, refresh_interval=0.05)
    try:
        async with anyio.create_task_group() as group:
            codes: list[int] = []

            async def serve() -> None:
                codes.append(await serve_console(service, app, headless=True))

            group.start_soon(serve)
            await poll_until(lambda: app.is_running and service.is_running)
            report = await service.run_once()
            assert report.succeeded == 2
            log = app.query_one(LogPane)
            await poll_until(lambda: any("did 2" in line for line in log.lines))
            await app.run_action("quit")
        assert codes == [0]
        assert service.snapshot().state == "stopped"
        assert not terminal.records, [r.getMessage() for r in terminal.records]
        logging.getLogger("novaconsole.engine").warning("after the console")
        assert [r.getMessage() for r in terminal.records] == ["after the console"]
    finally:
        root.removeHandler(terminal)


def test_capture_logs_restores_handlers_and_level() -> None:
    root = logging.getLogger()
    before_handlers, before_level = list(root.handlers), root.level
    sink = LogSink()
    with capture_logs(sink, logging.DEBUG):
        assert root.handlers == [sink]
        logging.getLogger("novaconsole.handlers.X").debug("seen")
    assert root.handlers == before_handlers
    assert root.level == before_level
    assert [r.getMessage() for r in sink.take()] == ["seen"]


@pytest.mark.slow  # a fresh interpreter (tests/test_layering.py checks the same quickly)
def test_the_console_module_is_not_needed_headless() -> None:
    """The engine never imports Textual: importing the service leaves it out."""
    code = "import sys, novaconsole.engine.service; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_serve_console_raises_a_service_that_cannot_start_before_drawing() -> None:
    service = build_service({"A": Source([])})

    async def broken_open(*args: object) -> None:
        raise OSError("disk on fire")

    service.store.open = broken_open  # type: ignore[method-assign]
    app = NovaConsole(service, refresh_interval=None)
    with pytest.raises(BaseException) as raised:
        await serve_console(service, app, headless=True)
    error = raised.value
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, OSError) and "disk on fire" in str(error)
    assert app._driver is None, "the app never started drawing"
