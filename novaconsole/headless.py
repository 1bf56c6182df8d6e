"""The ``--no-ui`` runner: the service with logs, signals, a summary and an exit status.

Nothing here (or in what it imports) may import Textual: servers, cron and CI run this path.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import anyio.abc

from novaconsole.engine.events import Event, EventsDropped, ItemFinished
from novaconsole.engine.loop_watchdog import running_watchdog
from novaconsole.engine.outcomes import ItemOutcome, OutcomeStatus
from novaconsole.observability import instrumented
from novaconsole.pause_notice import remind_paused
from novaconsole.redaction import redact

if TYPE_CHECKING:
    from novaconsole.engine.events import EventSubscription
    from novaconsole.engine.outcomes import CycleReport
    from novaconsole.engine.service import ProcessingService
    from novaconsole.settings import Settings

log = logging.getLogger("novaconsole.headless")

STATUSES = tuple(OutcomeStatus)

STUCK = 1.0
"""Seconds the event loop must have been blocked for a second signal to end the process at once
(``os._exit``) rather than through the loop, which cannot run it."""


class Tally:
    """Final outcomes counted per handler and status."""

    def __init__(self, handlers: Iterable[str] = ()) -> None:
        self.counts: dict[str, Counter[OutcomeStatus]] = {name: Counter() for name in handlers}
        self.lost = 0
        """Events this reader missed because it fell behind (counts are then incomplete)."""

    def add(self, outcome: ItemOutcome) -> None:
        self.counts.setdefault(outcome.handler, Counter())[outcome.status] += 1

    def take(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, ItemFinished):
                self.add(event.outcome)
            elif isinstance(event, EventsDropped):
                self.lost += event.count

    async def follow(self, subscription: EventSubscription) -> None:
        """Count as events arrive (so the subscription's buffer never fills); until cancelled."""
        while not subscription.closed:
            await subscription.wait()
            self.take(subscription.drain())


async def run_headless(
    service: ProcessingService,
    *,
    once: bool,
    out: TextIO | None = None,
    settings: Settings | None = None,
) -> int:
    """Run ``service`` without a screen; print a summary to ``out`` (stdout); the exit status.

    ``settings``: its ``[metrics]`` and ``[tracing]`` (see :mod:`novaconsole.observability`).
    ``once``: one cycle (``run_once()``), then 0 if it went well and 1 if any item failed,
    timed out or was cancelled or any fetch failed; a signal stops the cycle (drained) with
    128 + its number. Otherwise: until SIGINT or SIGTERM, then drain and 0. Either way a
    second signal during the drain is a force quit: what is still in flight is cancelled
    (recorded ``cancelled``) and the status is 128 + that signal's number (130, 143).
    """
    out = out if out is not None else sys.stdout
    signals = _Signals(service)
    if not once:
        tally = await _until_signalled(service, settings, signals)
        print_summary(tally, out)
        return 128 + signals.forced if signals.forced else 0
    report = await _one_cycle(service, settings, signals)
    if report is None:
        return 128 + (signals.forced or signals.first)
    tally = Tally(r.name for r in service.registrations)
    for outcome in report.outcomes:
        tally.add(outcome)
    print_summary(tally, out, fetched=report.fetched, fetch_errors=report.fetch_errors)
    items = len(report.outcomes)
    status = "ok" if report.ok else "FAILED"
    out.write(
        f"one cycle: {items} item{'' if items == 1 else 's'} in {report.duration:.2f} s, {status}\n"
    )
    return 0 if report.ok else 1


class _Signals:
    """SIGINT and SIGTERM: the first asks for a drain (``stop`` is set), a second one during
    the drain cancels what is left (``service.cancel_drain()``)."""

    def __init__(self, service: ProcessingService) -> None:
        self.service = service
        self.stop = anyio.Event()
        self.first = 0
        self.forced = 0

    @asynccontextmanager
    async def listening(self, what: str) -> AsyncIterator[None]:
        """Listen for the whole block (the service's start and drain included)."""
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
            async with anyio.create_task_group() as group:
                group.start_soon(self._listen, received, what)
                try:
                    with self._unless_blocked():
                        yield
                finally:
                    group.cancel_scope.cancel()

    @contextmanager
    def _unless_blocked(self) -> Iterator[None]:
        """Also count the signals where Python delivers them, in the main thread, between two
        bytecodes: even while a handler blocks the event loop (``time.sleep`` in an ``async
        def``), when the loop cannot hear them. A second one then ends the process at once.
        The loop still gets every signal (through the wakeup fd, as before)."""
        delivered = 0
        previous: dict[int, Any] = {}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            nonlocal delivered
            delivered += 1
            if delivered >= 2:
                _exit_if_blocked(signum, frame)
            chained = previous.get(signum)
            if callable(chained):
                chained(signum, frame)

        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
        try:
            yield
        finally:
            for number, handler in previous.items():
                if signal.getsignal(number) is on_signal:
                    signal.signal(number, handler)

    async def _listen(self, received: AsyncIterator[int], what: str) -> None:
        async for signum in received:
            name = signal.Signals(signum).name
            if not self.first:
                self.first = signum
                log.info("%s received: %s", name, what)
                self.stop.set()
            elif not self.forced:
                self.forced = signum
                log.warning("%s received again: force quit, cancelling what is left", name)
                self.service.cancel_drain()


def _exit_if_blocked(signum: int, frame: FrameType | None) -> None:
    """In a signal handler: if the event loop has been blocked for :data:`STUCK` seconds, log
    one line naming what blocks it and end the process now, status 128 + ``signum``."""
    watchdog = running_watchdog()
    if watchdog is None or watchdog.blocked_for() < STUCK:
        return  # the loop runs: it hears the signal itself (a force quit through the drain)
    doing = watchdog.culprit_of(frame)
    log.error(
        "%s received again while the event loop has been blocked for %.1f s%s: exiting at "
        "once; the items in flight are not recorded and run again after a restart (their "
        "start is on record: each is then a crash suspect, run alone)",
        signal.Signals(signum).name,
        watchdog.blocked_for(),
        f" by {doing}" if doing else "",
    )
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(128 + signum)


async def _one_cycle(
    service: ProcessingService, settings: Settings | None, signals: _Signals
) -> CycleReport | None:
    """The cycle's report, or ``None`` when a signal cut it short."""
    report: CycleReport | None = None
    # poll=False: only run_once() fetches, so its report holds every item of the cycle.
    async with (
        signals.listening("stopping the cycle"),
        instrumented(service, settings),
        service.running(poll=False),
        anyio.create_task_group() as group,
    ):

        async def stop_on_signal() -> None:
            await signals.stop.wait()
            group.cancel_scope.cancel()

        group.start_soon(stop_on_signal)
        _warn_if_idle(service)
        report = await service.run_once()
        group.cancel_scope.cancel()
    # Leaving running() drained what the cycle still had in flight.
    return None if signals.first else report


async def _until_signalled(
    service: ProcessingService, settings: Settings | None, signals: _Signals
) -> Tally:
    tally = Tally(r.name for r in service.registrations)
    subscription = service.events()
    # The receiver is open before the service starts, so an early SIGTERM still drains.
    async with (
        signals.listening("draining"),
        instrumented(service, settings),
        service.running(),
        anyio.create_task_group() as group,
    ):
        group.start_soon(tally.follow, subscription)
        await group.start(watch_database_file, service)
        _warn_if_idle(service)
        gc.freeze()  # what start-up made lives to the end: full collections skip it
        log.info(
            "running headless with %d handlers (database %s); stop with Ctrl+C or SIGTERM",
            len(service.registrations),
            service.database_display,
        )
        group.start_soon(remind_paused, service)
        await signals.stop.wait()
        group.cancel_scope.cancel()
    # Leaving running() drained the service; count what finished while it did.
    tally.take(subscription.drain())
    subscription.close()
    return tally


DATABASE_CHECK_INTERVAL = 2.0
"""Seconds between two checks that the SQLite file is still the one the service opened."""


async def watch_database_file(
    service: ProcessingService,
    interval: float = DATABASE_CHECK_INTERVAL,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Warn once if the service's SQLite file is deleted or replaced while it runs.

    SQLite keeps writing to the open (now nameless) file without an error, and everything
    written is lost when the process exits; so the path's inode is compared with the one
    seen when the watch started (``task_status.started()``: from then on). Returns at once
    for other databases. Start it once the service runs (its store has made the file).
    """
    from novaconsole.store.database import sqlite_file

    engine = getattr(service.store, "engine", None)
    path = sqlite_file(engine) if engine is not None else None
    if path is None:
        task_status.started()
        return

    def identity() -> tuple[int, int] | None:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        return stat.st_dev, stat.st_ino

    first = identity()
    task_status.started()
    while True:
        now = identity()
        if now != first or now is None:
            log.warning(
                "the database file %s was %s while running: what is recorded from now on is "
                "lost when this process exits; stop it (Ctrl+C) and start it again",
                path,
                "deleted" if now is None else "replaced",
            )
            return
        await anyio.sleep(interval)


def _warn_if_idle(service: ProcessingService) -> None:
    if not service.registrations:
        log.warning("no handlers are registered (no [[handlers]] in the config?): nothing to do")


def print_summary(
    tally: Tally,
    out: TextIO,
    *,
    fetched: dict[str, int] | None = None,
    fetch_errors: dict[str, str] | None = None,
) -> None:
    """A table: one row per handler, one column per final status (and items fetched)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="novaconsole summary", title_justify="left")
    table.add_column("handler")
    if fetched is not None:
        table.add_column("fetched", justify="right")
    for status in STATUSES:
        table.add_column(status.value.replace("_", " "), justify="right")
    for name, counts in tally.counts.items():
        row = [name]
        if fetched is not None:
            row.append(
                "error" if fetch_errors and name in fetch_errors else str(fetched.get(name, 0))
            )
        row.extend(str(counts[status]) for status in STATUSES)
        table.add_row(*row)
    console = Console(file=out, width=max(100, Console(file=out).width))
    console.print(table)
    for name, error in (fetch_errors or {}).items():
        line = redact(f"fetch from {name} failed: {error}")
        console.print(line, markup=False, highlight=False)
    if tally.lost:
        console.print(f"({tally.lost} events were missed: the counts above are incomplete)")
