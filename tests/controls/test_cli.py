"""The CLI twins of the console's actions, run as a user would, against a service hosted here,
a headless worker in another process (default SQLite file, not shared), a stopped system, and
two PostgreSQL workers."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from novaconsole.builder import BackgroundProcessing
from novaconsole.engine.service import ProcessingService
from novaconsole.settings import load_settings
from novaconsole.status import CONTROL_KEYS, HANDLER_CONTROL_KEYS, from_snapshot
from tests.controls.conftest import Project
from tests.fleet.conftest import Fleet
from tests.postgres import throwaway_database

# Every test runs the real `novaconsole` command, some with workers: seconds each.
pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def _until(check: Callable[[], Any], what: str, within: float = 20.0) -> Any:
    """Wait for something another process makes happen (no event reaches this one)."""
    with anyio.fail_after(within):
        while not (value := check()):  # noqa: ASYNC110
            await anyio.sleep(0.05)
    return value


def _controls(status: dict[str, Any]) -> dict[str, Any]:
    return {
        **{key: status[key] for key in CONTROL_KEYS},
        "handlers": {
            name: {key: view[key] for key in HANDLER_CONTROL_KEYS}
            for name, view in status["handlers"].items()
        },
    }


async def _agree(status: dict[str, Any], service: ProcessingService) -> None:
    """The CLI's status and the service's snapshot agree on every control (once the service
    followed the database, within a second)."""
    shown = _controls(status)
    try:
        await _until(lambda: _controls(from_snapshot(service.snapshot())) == shown, "", 10)
    except TimeoutError:
        assert _controls(from_snapshot(service.snapshot())) == shown


def _hosted(project: Project, monkeypatch: pytest.MonkeyPatch) -> ProcessingService:
    monkeypatch.chdir(project.root)
    monkeypatch.syspath_prepend(str(project.root))
    settings = load_settings(project.root / "config.toml")
    builder = BackgroundProcessing.from_settings(settings)
    return builder.build(database_url=settings.database.url)


async def test_every_command_prints_json_that_matches_the_snapshot(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _hosted(project, monkeypatch)
    project.add(1, 2, 3)
    async with service.running():
        await _until(lambda: project.files("failed") == {2}, "item 2 to fail")
        await _until(lambda: project.files("done") == {1, 3}, "items 1 and 3 to be done")

        status = await project.json("status")
        assert status["state"] == "running"
        assert [w["worker_id"] for w in status["workers"] if w["alive"]] == [service.worker_id]
        await _agree(status, service)

        paused = await project.json("pause", "Files", "--reason", "db maintenance", "--for", "1h")
        assert [(c["what"], c["handler"], c["new"]) for c in paused["changed"]] == [
            ("pause", "Files", "paused")
        ]
        pause = paused["status"]["handlers"]["Files"]["pause"]
        assert pause["pause_reason"] == "db maintenance"
        assert pause["paused_by"].startswith("cli@") and pause["resumes_at"]
        await _agree(paused["status"], service)
        view = service.snapshot().handlers["Files"]
        assert view.pause is not None and view.pause.reason == "db maintenance"

        for command in (
            ("resume", "Files"),
            ("batch-size", "Files", "7"),
            ("concurrency", "3"),
            ("pause", "--reason", "deploy"),
            ("resume",),
        ):
            changed = await project.json(*command)
            assert changed["changed"], command
            await _agree(changed["status"], service)
        snapshot = service.snapshot()
        assert (snapshot.concurrency, snapshot.handlers["Files"].batch_size) == (3, 7)

        ran = await project.json("run-once", "Files")
        assert ran["taken_by"] == service.worker_id

        retried = await project.json("retry", "Files", "2")
        assert (retried["state"], retried["message"]) == ("succeeded", "ran again: succeeded")
        assert project.files("done") == {1, 2, 3}
        status = await project.json("status")
        assert status["handlers"]["Files"]["succeeded"] == 3

        audit = await project.json("audit")
        assert [(e["what"], e["handler"]) for e in audit] == [
            ("pause", "Files"),
            ("resume", "Files"),
            ("batch_size", "Files"),
            ("concurrency", None),
            ("pause", None),
            ("resume", None),
            ("run_once", "Files"),
            ("retry", "Files"),
        ]
        assert all(e["by"].startswith("cli@") for e in audit)
        assert [e.what for e in await service.audit()] == [e["what"] for e in audit]


async def test_mistakes_are_one_line_and_exit_2(project: Project) -> None:
    for args, says in (
        (("pause", "Nope"), "no handler named 'Nope' (registered: Files)"),
        (("batch-size", "Files", "0"), "batch size must be at least 1, got 0"),
        (("concurrency", "100000"), "concurrency must be at most 1000, got 100000"),
        (("retry", "Files", "9"), "Files 9: no failed result or attempts remembered"),
        (("run-once",), "no worker is running to run a cycle"),
    ):
        err = await project.cli(*args, code=2)
        assert len(err.strip().splitlines()) == 1, err
        assert says in err
    err = await project.cli("pause", "--for", "soon", code=2)
    assert "--for" in err and "Traceback" not in err


async def test_a_change_made_while_nothing_runs_is_applied_at_the_next_start(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = await project.cli("batch-size", "Files", "4")
    assert "batch size of Files: as configured → 4" in out
    assert "no worker is running: saved, applied at the next start" in out
    project.add(1)
    await project.cli("pause", "--reason", "maintenance")
    out = await project.cli("retry", "Files", "1", code=2)  # never failed: nothing to retry
    service = _hosted(project, monkeypatch)
    async with service.running():
        snapshot = service.snapshot()
        assert snapshot.handlers["Files"].batch_size == 4
        assert snapshot.paused and snapshot.pause is not None
        assert snapshot.pause.reason == "maintenance"
        assert project.files("pending") == {1}


async def test_a_headless_worker_on_the_default_sqlite_file_takes_commands_from_another_terminal(
    project: Project,
) -> None:
    await project.cli("pause", "Files", "--reason", "db maintenance")
    project.add(1, 2)
    worker, log = project.start("--no-ui", "--log-format", "json")
    try:
        said = await _until(
            lambda: [
                json.loads(line)["message"]
                for line in log.read_text().splitlines()
                if line.startswith("{")
            ],
            "the worker to log",
        )
        await _until(lambda: "resume with" in log.read_text(), "the worker to say it is paused")
        said = [json.loads(line)["message"] for line in log.read_text().splitlines()]
        assert any(
            m.startswith("Files paused by cli@") and m.endswith("db maintenance") for m in said
        ), said
        assert project.files("pending") == {1, 2}  # paused: nothing ran

        out = await project.cli("resume", "Files")
        assert "1 running worker follow within a second" in out
        await _until(lambda: project.files("failed") == {2}, "item 2 to fail")

        out = await project.cli("retry", "Files", "2")
        assert out.splitlines()[0] == "Files 2: retry requested"
        assert out.splitlines()[-1] == "Files 2: ran again: succeeded"
        assert project.files("done") == {1, 2}

        out = await project.cli("run-once", "Files")
        assert "run once (Files): taken by worker" in out
    finally:
        worker.send_signal(signal.SIGTERM)
        await anyio.to_thread.run_sync(worker.wait, 20)
    assert worker.returncode == 0, log.read_text()[-2000:]


async def test_a_pause_for_2s_resumes_by_itself_on_two_postgresql_workers(
    tmp_path: Path,
) -> None:
    from novaconsole.store.database import create_engine

    async with throwaway_database("controls") as url:
        engine = create_engine(url)
        fleet = Fleet(url=url, engine=engine, folder=tmp_path)
        try:
            await fleet.setup()
            workers = fleet.start(2, "--poll", "0.05", "--lease", "3")
            await fleet.ready(workers)
            done = await anyio.run_process(
                [
                    sys.executable,
                    "-m",
                    "novaconsole",
                    "pause",
                    "--for",
                    "2s",
                    "--db",
                    url,
                    "--reason",
                    "failover",
                    "--json",
                ],
                cwd=tmp_path,
                check=False,
            )
            assert done.returncode == 0, done.stderr.decode()
            status = json.loads(done.stdout)
            assert status["status"]["pause"]["pause_reason"] == "failover"
            assert len([w for w in status["status"]["workers"] if w["alive"]]) == 2

            async def both(text: str) -> bool:
                return all(text in worker.output() for worker in workers)

            await fleet.until(lambda: both("everything paused by cli@"), 10, "both to pause")
            await fleet.add_items(range(1, 21))
            await fleet.until(lambda: both("everything resumed"), 20, "both to resume")
            await fleet.until(
                lambda: fleet.scalar("SELECT count(*) = 20 FROM fleet_items WHERE done"),
                30,
                "every item to be done",
            )
            resumed = await fleet.rows(
                "SELECT by, detail FROM novaconsole_audit WHERE what = 'resume'"
            )
            first_run = await fleet.scalar("SELECT min(started) FROM fleet_runs")
        finally:
            await fleet.stop()
            await engine.dispose()
    assert len(resumed) == 1  # the expiry is carried out once for the fleet
    assert resumed[0].by in {worker.worker_id for worker in workers}
    assert resumed[0].detail.startswith("pause set by cli@")
    resumes_at = status["status"]["pause"]["resumes_at"]
    from datetime import datetime

    assert first_run >= datetime.fromisoformat(resumes_at).timestamp() - 0.5  # clock slack
    for worker in workers:
        assert worker.process.returncode == 0
