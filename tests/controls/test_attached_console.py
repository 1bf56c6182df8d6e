"""The attached console (``novaconsole attach``) steers through the same control plane as the
CLI: every key is audited as console@host, a pause carries the dialog's reason and expiry, and
what came of each change is said. Against a real headless worker on a SQLite file, and two
PostgreSQL workers."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from novaconsole import RetryPolicy
from novaconsole.builder import BackgroundProcessing
from novaconsole.console import NovaConsole
from novaconsole.console.attached import CONSOLE, AttachedFleet
from novaconsole.console.commands import handler_commands
from novaconsole.console.runner import notify_fleet
from novaconsole.console.screens.audit import AuditScreen
from novaconsole.console.screens.failures import FailureGroupsScreen
from novaconsole.console.screens.pause_dialog import PauseDialog
from novaconsole.console.screens.peek import PeekScreen
from novaconsole.console.widgets.log_pane import LogSink
from novaconsole.engine.events import BreakerClosed, BreakerTripped, RetryProgress
from novaconsole.settings import load_settings
from novaconsole.status import CONTROL_KEYS, HANDLER_CONTROL_KEYS, from_snapshot
from novaconsole.store import open_store
from novaconsole.store.database import create_engine
from novaconsole.store.operator import OperatorClient
from tests.controls.conftest import Project
from tests.engine.support import next_event
from tests.engine.support import processing as processing_for_tests
from tests.engine.test_breaker import Feed
from tests.fleet.conftest import Fleet
from tests.postgres import throwaway_database

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def _until(check: Callable[[], Any], what: str, within: float = 60.0) -> Any:
    """Wait for something another process makes happen (no event reaches this one)."""
    try:
        with anyio.fail_after(within):
            while not (value := check()):  # noqa: ASYNC110
                await anyio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"no {what} within {within}s")
    return value


async def _until_async(check: Callable[[], Any], what: str, within: float = 60.0) -> Any:
    try:
        with anyio.fail_after(within):
            while not (value := await check()):  # noqa: ASYNC110
                await anyio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"no {what} within {within}s")
    return value


def _controls(status: dict[str, Any]) -> dict[str, Any]:
    return {
        **{key: status[key] for key in CONTROL_KEYS},
        "handlers": {
            name: {key: view[key] for key in HANDLER_CONTROL_KEYS}
            for name, view in status["handlers"].items()
        },
    }


def _registrations(project: Project, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(project.root)
    monkeypatch.syspath_prepend(str(project.root))
    settings = load_settings(project.root / "config.toml")
    return settings, BackgroundProcessing.from_settings(settings).registrations


def _record_notifications(app: NovaConsole) -> list[str]:
    """Every notification the app shows from now on (they vanish from the screen after a
    few seconds, sooner than a loaded machine runs a CLI command)."""
    said: list[str] = []
    show = app.notify

    def notify(message: str, **options: Any) -> None:
        said.append(message)
        show(message, **options)

    app.notify = notify  # type: ignore[method-assign]
    return said


async def test_every_key_of_the_attached_console_is_audited_and_reported(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, registrations = _registrations(project, monkeypatch)
    project.add(1, 2, 3)
    worker, log = project.start("--no-ui")  # a real headless worker, default SQLite file
    try:
        await _until(lambda: project.files("failed") == {2}, "item 2 to fail")
        fleet = AttachedFleet(settings.database.url, registrations, 4)
        app = NovaConsole(fleet, log_sink=LogSink())
        said = _record_notifications(app)
        fleet.notify = partial(notify_fleet, app)  # as `novaconsole attach` does
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(lambda: any(w.alive for w in fleet.snapshot().workers), "the worker")

            # p: the dialog asks why and for how long; the pause carries both.
            await pilot.press("p")
            await _until(lambda: isinstance(app.screen, PauseDialog), "the pause dialog")
            await pilot.press(*"db maintenance", "tab", *"30m", "enter")
            status = await _until_async(
                lambda: _status_if(project, lambda s: s["paused"]), "the pause in the database"
            )
            pause = status["pause"]
            assert (pause["paused_by"], pause["pause_reason"]) == (CONSOLE, "db maintenance")
            assert pause["resumes_at"] is not None
            await _until(
                lambda: any("paused everything (db maintenance; until" in m for m in said),
                "the console to say the pause was saved",
            )
            assert any("the running worker follows" in m for m in said)
            # The worker obeys and says so in its log, with who and why.
            await _until(
                lambda: f"everything paused by {CONSOLE}" in log.read_text(), "the worker's log"
            )
            # The attached console shows what `status --json` shows.
            await _until(
                lambda: _controls(from_snapshot(fleet.snapshot())) == _controls(status),
                "the console and status --json to agree",
            )

            # A: the audit screen holds what `audit --json` prints.
            await pilot.press("A")
            await _until(lambda: isinstance(app.screen, AuditScreen), "the audit screen")
            screen = app.screen
            assert isinstance(screen, AuditScreen)
            printed = await project.json("audit")
            assert [entry.as_dict() for entry in screen.entries] == printed
            assert (printed[-1]["by"], printed[-1]["what"]) == (CONSOLE, "pause")
            assert printed[-1]["detail"].startswith("db maintenance; until ")
            await pilot.press("escape")
            await _until(lambda: not isinstance(app.screen, AuditScreen), "the main screen")

            # e: the failure groups are those of `failures --json`.
            await pilot.press("e")
            await _until(lambda: isinstance(app.screen, FailureGroupsScreen), "the groups")
            assert isinstance(app.screen, FailureGroupsScreen)
            groups = await project.json("failures")
            assert [g.as_dict() for g in app.screen.groups] == groups
            assert [(g["handler"], g["count"]) for g in groups] == [("Files", 1)]
            await pilot.press("escape")
            await _until(lambda: not isinstance(app.screen, FailureGroupsScreen), "main screen")

            # d: peek while paused shows what `peek --json` shows; nothing is taken.
            project.add(4, 5)
            await pilot.press("d")
            await _until(lambda: isinstance(app.screen, PeekScreen), "the peek")
            assert isinstance(app.screen, PeekScreen) and app.screen.result is not None
            assert app.screen.result.as_dict() == await project.json("peek", "Files")
            assert [item.id for item in app.screen.result.items] == ["4", "5"]
            assert project.files("pending") == {4, 5}
            await pilot.press("escape")
            await _until(lambda: not isinstance(app.screen, PeekScreen), "the main screen")

            # p again resumes; + / ] change batch size and concurrency; all audited.
            await pilot.press("p")
            await _until_async(
                lambda: _status_if(project, lambda s: s["state"] == "running"), "the resume"
            )
            await pilot.press("plus", "right_square_bracket")
            status = await _until_async(
                lambda: _status_if(
                    project,
                    lambda s: s["concurrency"] == 5 and s["handlers"]["Files"]["batch_size"] == 11,
                ),
                "batch size 11 and concurrency 5 in the database",
            )
            await _until(
                lambda: _controls(from_snapshot(fleet.snapshot())) == _controls(status),
                "the console and status --json to agree",
            )

            # r: the run-once command is taken by the worker, and the console says by which.
            await pilot.press("r")
            await _until(lambda: any("taken by worker" in m for m in said), "the run-once report")

            # Retry item 2: requested, then followed until it ran again.
            app.retry_item("Files", "2")
            await _until(lambda: project.files("done") == {1, 2, 3, 4, 5}, "item 2 to run again")
            await _until(
                lambda: any("ran again: succeeded" in m for m in said),
                "the console to say the retry ran again",
            )

            entries = await project.json("audit")
            mine = [(e["what"], e["handler"], e["old"], e["new"]) for e in entries]
            assert mine[-6:] == [
                ("pause", None, "running", "paused"),
                ("resume", None, "paused", "running"),
                ("batch_size", "Files", None, "11"),
                ("concurrency", None, None, "5"),
                ("run_once", None, None, None),
                ("retry", "Files", None, None),
            ]
            assert {e["by"] for e in entries[-6:]} == {CONSOLE}
    finally:
        worker.terminate()
        await anyio.to_thread.run_sync(worker.wait, 30)


async def _status_if(project: Project, wanted: Callable[[dict[str, Any]], bool]) -> Any:
    status = await project.json("status")
    return status if wanted(status) else None


async def test_a_refused_or_failed_change_is_said_and_not_shown_as_done(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, registrations = _registrations(project, monkeypatch)
    said: list[tuple[str, str]] = []
    fleet = AttachedFleet(
        settings.database.url,
        registrations,
        4,
        notify=lambda message, severity: said.append((severity, message)),
    )
    async with fleet.running():
        with pytest.raises(ValueError, match="at most 10000"):
            fleet.set_batch_size("Files", 10_001)
        with pytest.raises(ValueError, match="positive"):
            fleet.pause(until=timedelta(0))
        with pytest.raises(KeyError, match="no handler named 'Nope'"):
            fleet.pause_handler("Nope", reason="x")
        assert said == [] and not fleet.snapshot().paused  # nothing changed, nothing said
        with pytest.raises(RuntimeError, match="no live worker"):
            await fleet.run_once()
        # Nothing to retry: said as such (None), nothing audited.
        assert await fleet.request_retry("Files", "404") is None
        # With no worker running, a change is saved for the next start, and said so.
        fleet.pause_handler("Files", reason="disk full", until=timedelta(hours=1))
        await _until(lambda: said, "the console to say what came of the pause")
        assert said == [
            (
                "information",
                "paused Files (disk full; until "
                + said[0][1].split("until ", 1)[1].split(")")[0]
                + ") · no worker is running: saved, applied at the next start",
            )
        ]
        # Another process holds the database's write lock longer than the busy timeout: the
        # resume is said to have failed, and the next read shows the pause as it really is.
        locker = sqlite3.connect(project.root / "novaconsole.db", isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            fleet.resume_handler("Files")
            assert not fleet.snapshot().handlers["Files"].paused  # shown at once
            await _until(lambda: len(said) == 2, "the console to say the resume failed")
            assert said[1][0] == "error" and said[1][1].startswith("not saved: ")
            await _until(
                lambda: fleet.snapshot().handlers["Files"].paused, "the pause to show again"
            )
        finally:
            locker.rollback()
            locker.close()
    client = OperatorClient(settings.database.url)
    try:
        audited = [(e.by, e.what, e.handler) for e in await client.audit()]
    finally:
        await client.close()
    assert audited == [(CONSOLE, "pause", "Files")]


async def test_a_tripped_breaker_shows_on_the_attached_console_and_its_palette_resets_it(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'n.db'}"
    feed = Feed()
    processing = processing_for_tests(
        poll_interval=0.01,
        max_concurrency=1,
        retry=RetryPolicy(max_attempts=1),
        breaker_cooldown=600,
    ).add_handler(feed.handler(), name="A", max_items_per_cycle=2, breaker_threshold=2)
    worker = processing.build(url, store=open_store(url, shared=True))
    events = worker.events()
    fleet = AttachedFleet(url, processing.registrations, 1)
    async with worker.running(), fleet.running():
        await next_event(events, lambda e: isinstance(e, BreakerTripped), within=30)
        await _until(lambda: fleet.snapshot().handlers["A"].tripped, "the breaker on the console")
        view = fleet.snapshot().handlers["A"]
        assert view.state == "tripped" and view.breaker_reason
        assert view.breaker_reason.startswith("breaker: 2 failures in a row: RuntimeError")
        app = NovaConsole(fleet, log_sink=LogSink(), refresh_interval=None)
        async with app.run_test(size=(120, 40)) as pilot:
            said = _record_notifications(app)
            fleet.notify = partial(notify_fleet, app)
            app.refresh_view()
            await pilot.pause()
            feed.failing = False
            commands = {c.title: c for c in handler_commands(app)}
            commands["Reset breaker of A"].callback()
            closed = await next_event(events, lambda e: isinstance(e, BreakerClosed), within=30)
            assert isinstance(closed, BreakerClosed) and closed.why == f"reset by {CONSOLE}"
            await _until(
                lambda: "A: breaker reset requested on 1 worker" in said, "the console to say so"
            )
            await _until(lambda: not fleet.snapshot().handlers["A"].tripped, "the breaker closed")
            app.refresh_view()
            assert "Reset breaker of A" not in {c.title for c in handler_commands(app)}
        entries = await fleet.audit()
        assert [(e.by, e.what, e.handler, e.detail) for e in entries] == [
            (CONSOLE, "breaker_reset", "A", "1 worker")
        ]


# ---------------------------------------------------------------------- PostgreSQL


@pytest.fixture
async def pg_fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    """A throwaway PostgreSQL database on 127.0.0.1:5432 and the workers started on it."""
    async with throwaway_database("attached") as url:
        engine = create_engine(url)
        fleet = Fleet(url=url, engine=engine, folder=tmp_path)
        try:
            yield fleet
        finally:
            await fleet.stop()
            await engine.dispose()


async def test_a_console_pause_for_2s_reaches_two_postgres_workers_and_ends_by_itself(
    pg_fleet: Fleet,
) -> None:
    await pg_fleet.setup()
    started = pg_fleet.start(2, "--poll", "0.05", "--lease", "3")
    await pg_fleet.ready(started, within=60)
    registrations = BackgroundProcessing().add_handler(Idle, name="Fleet").registrations
    fleet = AttachedFleet(pg_fleet.url, registrations, 4)
    events = fleet.events()

    async def states() -> list[str]:
        rows = await pg_fleet.rows("SELECT state FROM novaconsole_workers ORDER BY worker_id")
        return [row.state for row in rows]

    async with fleet.running():
        await _until(lambda: sum(w.alive for w in fleet.snapshot().workers) == 2, "two workers")
        fleet.pause(reason="failover drill", until=timedelta(seconds=2), by=CONSOLE)
        assert fleet.snapshot().pause is not None  # shown at once
        await pg_fleet.until(
            lambda: _all(states, "paused"), 60, "both workers to report themselves paused"
        )
        await pg_fleet.until(
            lambda: _all(states, "running"), 60, "both workers to resume by themselves"
        )
        await _until(lambda: not fleet.snapshot().paused, "the console to show the resume")
        entries = await fleet.audit()
        assert [(e.what, e.by == CONSOLE) for e in entries] == [("pause", True), ("resume", False)]
        assert entries[0].detail and entries[0].detail.startswith("failover drill; until ")
        assert entries[1].by in {w.worker_id for w in started}  # the worker that resumed it
        assert entries[1].detail == f"pause set by {CONSOLE} expired"

        # Run once goes to exactly one of them.
        report = await fleet.run_once()
        taken = await pg_fleet.until(
            lambda: pg_fleet.scalar(
                "SELECT taken_by FROM novaconsole_commands WHERE id = :id", id=report.cycle
            ),
            60,
            "a worker to take the run-once command",
        )
        assert taken in {w.worker_id for w in started}
        assert not [e for e in events.drain() if isinstance(e, RetryProgress)]


class Idle:
    async def fetch_next(self, max_items: int) -> list[Any]:
        return []

    async def process(self, item: Any) -> None:
        return None


async def _all(states: Callable[[], Any], state: str) -> bool:
    found = await states()
    return len(found) == 2 and all(s == state for s in found)
