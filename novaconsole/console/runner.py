"""Running the console: the service and the app in one event loop, logs in the log pane."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from novaconsole.console.app import ConsoleService, HostableService, NovaConsole
from novaconsole.console.widgets.log_pane import LogSink

if TYPE_CHECKING:
    from novaconsole.engine.service import ProcessingService
    from novaconsole.settings import Settings

_CAPTURED = ("", "novaconsole")
"""Loggers whose handlers are swapped for the sink: the root and the package's own."""


@contextmanager
def capture_logs(sink: logging.Handler, level: int = logging.INFO) -> Iterator[None]:
    """Send every log record to ``sink`` and nothing to the terminal, until the block ends.

    The root logger's and the ``novaconsole`` logger's handlers are set aside (and put back
    afterwards); the root level becomes ``level`` so the engine's info records show.
    """
    saved: list[tuple[logging.Logger, list[logging.Handler], int]] = []
    for name in _CAPTURED:
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.level))
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
    root = logging.getLogger()
    root.addHandler(sink)
    root.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(sink)
        for logger, handlers, old_level in saved:
            for handler in handlers:
                logger.addHandler(handler)
            logger.setLevel(old_level)


HostedService = HostableService
"""A console service that runs for the duration of a block (the name ``novaconsole.web`` uses)."""


async def serve_console(
    service: ConsoleService,
    app: NovaConsole,
    *,
    log_level: int = logging.INFO,
    headless: bool = False,
) -> int:
    """Run ``app`` in the current event loop, logs in its pane, until it exits.

    ``app`` hosts ``service`` (its ``app.service``) unless someone else runs it already. If
    the hosted service could not start, or failed while running, its error is raised here
    once the terminal is restored (the command line turns a ``ConfigError`` into one line).
    """
    if app.service is not service:
        raise ValueError("serve_console: the app shows another service")
    app.print_host_error = False
    with capture_logs(app.log_sink, log_level):
        await app.run_async(headless=headless)
    if app.host_error is not None:
        raise app.host_error
    return app.return_code or 0


def run_console(
    service: ProcessingService,
    settings: Settings | None = None,
    *,
    log_level: int = logging.INFO,
) -> int:
    """Open the console on ``service`` (the ``novaconsole`` command) and return the exit code.

    Logs go to the log pane while it runs; quitting drains the service; the terminal is
    left as it was found.
    """
    from novaconsole.observability import instrumented

    app = NovaConsole(service, log_sink=LogSink(), config=_config_path(settings))
    if settings is not None:
        app.sub_title = settings.source_label

    async def instrumented_console() -> int:
        async with instrumented(service, settings):  # metrics and traces, as configured
            return await serve_console(service, app, log_level=log_level)

    return anyio.run(instrumented_console)


def run_attached(settings: Settings, *, log_level: int = logging.INFO) -> int:
    """Open the console on the fleet sharing the configured database, hosting no service
    (``novaconsole attach``); the keys steer every worker. Returns the exit code."""
    from novaconsole.builder import BackgroundProcessing
    from novaconsole.console.attached import AttachedFleet

    processing = BackgroundProcessing.from_settings(settings)
    fleet = AttachedFleet(
        settings.database.url,
        processing.registrations,
        settings.processing.max_concurrency,
        fetch_timeout=settings.processing.fetch_timeout.total_seconds(),
    )
    app = NovaConsole(fleet, log_sink=LogSink(), config=_config_path(settings))
    app.sub_title = f"attached: {settings.source_label}"
    fleet.notify = partial(notify_fleet, app)
    return anyio.run(partial(serve_console, fleet, app, log_level=log_level))


def notify_fleet(app: NovaConsole, message: str, severity: str) -> None:
    """What came of a change the attached console sent to the fleet, as a notification."""
    level: Any = severity if severity in ("information", "warning", "error") else "information"
    app.notify(message, title="Fleet", severity=level, timeout=6 if level == "error" else 4)


def _config_path(settings: Settings | None) -> str | None:
    """The config file the console names when no handler is registered."""
    return None if settings is None else settings.source_label
