"""The toolkit's CLI as a user runs it: failures, retry --group, peek and breaker reset on a
real SQLite file, with a stopped system and with a headless worker in another process."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from tests.controls.conftest import Project, make_project

# Every test runs the real `novaconsole` command, some with a worker: seconds each.
pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def until(check: Callable[[], bool], within: float = 30.0) -> None:
    """Another process changes the files: look again until ``check`` holds."""
    with anyio.fail_after(within):
        while not check():  # noqa: ASYNC110
            await anyio.sleep(0.1)


async def stop(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGINT)
    with anyio.fail_after(30):
        await anyio.to_thread.run_sync(worker.wait)


@pytest.fixture
def failing(tmp_path: Path) -> Project:
    return make_project(tmp_path, fail_once=(1, 2, 3))


async def test_failures_group_and_retry_group_on_a_stopped_system(failing: Project) -> None:
    failing.add(1, 2, 3, 4)
    await failing.cli("--no-ui", "--once", code=1)
    groups = await failing.json("failures")
    assert [(g["handler"], g["error_type"], g["message"], g["count"]) for g in groups] == [
        ("Files", "RuntimeError", "item # broke", 3)
    ]
    group = groups[0]["id"]
    assert (await failing.json("failures", "--handler", "Files")) == groups
    table = await failing.cli("failures")
    assert group in table and "RuntimeError: item # broke" in table

    # Not a terminal and no --yes: refused in one line.
    refused = await failing.cli("retry", "--group", group, code=2)
    assert refused.strip() == (
        "novaconsole: not retrying 3 items without --yes: stdin is not a terminal"
    )
    assert (await failing.cli("retry", "--group", "nope", "--yes", code=2)).strip() == (
        "novaconsole: no failure group 'nope' (see `novaconsole failures`)"
    )
    assert "not both" in await failing.cli("retry", "Files", "1", "--group", group, code=2)
    assert "needs HANDLER ITEM_ID" in await failing.cli("retry", code=2)

    done = await failing.json("retry", "--group", group, "--yes")
    assert done["group"]["id"] == group and not done["workers_running"]
    assert sorted(r["item_id"] for r in done["requested"]) == ["1", "2", "3"]
    assert {r["state"] for r in done["requested"]} == {"requested"}
    # The next start carries the requests out: reopened at the source, run again, succeeded.
    worker, _ = failing.start("--no-ui")
    try:
        await until(lambda: failing.files("done") == {1, 2, 3, 4})
    finally:
        await stop(worker)
    assert await failing.json("failures") == []


async def test_peek_shows_what_fetch_would_return_and_changes_nothing(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    project.add(5, 6, 7)
    peeked = await project.json("peek", "Files", "--limit", "2")
    assert peeked == {
        "handler": "Files",
        "asked": 2,
        "rolled_back": True,
        "items": [{"id": "5", "repr": "Item(id=5)"}, {"id": "6", "repr": "Item(id=6)"}],
    }
    text = await project.cli("peek", "Files")
    assert text.splitlines() == [
        "Files: fetch_next(10) would return 3 items (rolled back, nothing claimed or processed)",
        "  5  Item(id=5)",
        "  6  Item(id=6)",
        "  7  Item(id=7)",
    ]
    assert project.files("pending") == {5, 6, 7} and project.files("done") == set()
    assert "no handler named 'Nope'" in await project.cli("peek", "Nope", code=2)
    assert "--limit must be at least 1" in await project.cli(
        "peek", "Files", "--limit", "0", code=2
    )


async def test_breaker_reset_reaches_a_headless_worker_from_another_terminal(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path, fail_once=(1, 2))
    config = project.root / "config.toml"
    config.write_text(
        config.read_text().replace(
            "[retry]", "breaker_threshold = 2\nbreaker_cooldown = 600\n\n[retry]"
        )
    )
    refused = await project.cli("breaker", "reset", "Files", code=2)
    assert refused.strip() == (
        "novaconsole: Files: its circuit breaker is not tripped on any running worker"
    )
    project.add(1, 2)
    worker, log = project.start("--no-ui")
    try:
        with anyio.fail_after(30):
            while True:  # the worker writes its open breaker within a sync
                status = await project.json("status")
                if status["handlers"]["Files"]["state"] == "tripped":
                    break
                await anyio.sleep(0.2)
        assert status["handlers"]["Files"]["breaker"].startswith(
            "breaker: 2 failures in a row: RuntimeError: item"
        )
        handlers = await project.json("handlers")
        assert handlers[0]["tripped"] is True
        project.add(3)
        out = await project.cli("breaker", "reset", "Files")
        assert out.splitlines() == [
            "Files: breaker reset requested on 1 worker",
            "Files: breaker closed",
        ]
        await until(lambda: 3 in project.files("done"))  # fetching again after the reset
        audit = await project.json("audit")
        assert (audit[-1]["what"], audit[-1]["handler"], audit[-1]["detail"]) == (
            "breaker_reset",
            "Files",
            "1 worker",
        )
        assert (await project.json("status"))["handlers"]["Files"]["state"] != "tripped"
    finally:
        await stop(worker)
    assert "Files tripped (breaker: 2 failures in a row" in log.read_text()
    assert "Files breaker closed: reset by cli@" in log.read_text()
