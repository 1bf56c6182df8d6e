"""``novaconsole demo``: seeding, the flaky web server, and the handlers running on the seed."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import anyio
import pytest
from anyio.streams.text import TextReceiveStream
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from novaconsole import ConfigError, ItemOutcome, OutcomeStatus
from novaconsole.demo import (
    MARKER,
    DemoWebServer,
    DemoWorld,
    build_service,
    demo_settings,
    prepare_directory,
    run_demo,
)
from novaconsole.examples.domain import CatalogueEntry, Notification, StagingBatch, Track

pytestmark = pytest.mark.anyio


@pytest.mark.slow
async def test_the_seeded_demo_succeeds_fails_and_recovers(tmp_path: Path) -> None:
    paths, reused = prepare_directory(tmp_path / "demo")
    assert not reused
    # failure_rate=1: every webhook key and batch URL fails at first; a quarter always fail.
    with DemoWebServer(paths.batches, failure_rate=1.0, salt="test") as web:
        world = DemoWorld(paths, web.url, random.Random(7))
        await world.open()
        try:
            await world.seed()
            # No breaker: five notifications failing for good in a row would trip it, and
            # the rest would wait for its trial, past the cycles below (as once in CI in the
            # same setting, tests/controls/test_examples.py).
            settings = demo_settings(
                paths, web.webhook_url, retry_base_delay=0.01, breaker_threshold=0
            )
            service = build_service(settings)
            outcomes: list[ItemOutcome] = []
            async with service.running(poll=False):
                for _ in range(12):  # cycles until the seeded backlog is done
                    report = await service.run_once()
                    if not report.outcomes:
                        break
                    outcomes += report.outcomes
            async with AsyncSession(world.engine) as session:
                tracks = await session.scalar(select(func.count()).select_from(Track))
                batches = Counter((await session.scalars(select(StagingBatch.status))).all())
                entries = await session.scalar(select(func.count()).select_from(CatalogueEntry))
                notes = Counter((await session.scalars(select(Notification.status))).all())
        finally:
            await world.close()

    by = Counter((o.handler, o.status) for o in outcomes)
    # Tracks: 11 due now are deleted (one whose audio was already gone); 4 due later and 12
    # active remain.
    assert by["PhysicalDeletion", OutcomeStatus.SUCCEEDED] == 11
    assert tracks == 16
    # Batches: four files and two URLs; the unreadable file fails after every attempt.
    unreadable = [o for o in outcomes if o.handler == "CatalogImport" and o.item_id == 5]
    assert [(o.status, o.attempts) for o in unreadable] == [(OutcomeStatus.FAILED, 3)]
    assert by["CatalogImport", OutcomeStatus.SUCCEEDED] >= 4
    assert batches["completed"] == by["CatalogImport", OutcomeStatus.SUCCEEDED]
    assert batches["failed"] == by["CatalogImport", OutcomeStatus.FAILED]
    assert entries is not None and entries > 0
    url_batches = [o for o in outcomes if o.handler == "CatalogImport" and o.item_id in (6, 7)]
    assert all(o.attempts >= 2 for o in url_batches)  # every URL failed at least once
    # Notifications: all 40 reach an end; recoveries succeeded on a later attempt.
    exported = [o for o in outcomes if o.handler == "NotificationExport"]
    assert len(exported) == 40
    recovered = [o for o in exported if o.ok and o.attempts > 1]
    gave_up = [o for o in exported if o.status is OutcomeStatus.FAILED]
    assert recovered and gave_up
    assert all(o.attempts == 3 for o in gave_up)
    assert notes == {"sent": len(recovered), "failed": len(gave_up)}
    assert web.stats.delivered == {str(o.item_id) for o in recovered}


async def test_fates_are_deterministic_and_follow_the_failure_rate(tmp_path: Path) -> None:
    never = DemoWebServer(tmp_path, failure_rate=0.0, salt="s")
    assert {never.fate(f"k{n}") for n in range(200)} == {"ok"}
    some = DemoWebServer(tmp_path, failure_rate=0.4, salt="s")
    fates = Counter(some.fate(f"k{n}") for n in range(2000))
    assert 0.35 < (fates["flaky"] + fates["broken"]) / 2000 < 0.45
    assert 0.07 < fates["broken"] / 2000 < 0.13
    expected = {"ok": [True] * 3, "flaky": [False, True, True], "broken": [False] * 3}
    for key in ("k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"):
        assert [some.answer(key) for _ in range(3)] == expected[some.fate(key)]
    assert set(fates) == {"ok", "flaky", "broken"}


def test_a_foreign_non_empty_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty and holds no novaconsole demo"):
        prepare_directory(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    with pytest.raises(ConfigError, match="is a file"):
        prepare_directory(tmp_path / "notes.txt")


async def test_a_demo_directory_is_reused_and_topped_up(tmp_path: Path) -> None:
    first, reused = prepare_directory(tmp_path / "demo")
    assert not reused and (first.root / MARKER).is_file()
    world = DemoWorld(first, None, random.Random(1))
    await world.open()
    await world.seed()
    await world.close()

    again, reused = prepare_directory(tmp_path / "demo")
    assert reused and again == first
    world = DemoWorld(again, None, random.Random(2))
    await world.open()
    await world.seed()
    async with AsyncSession(world.engine) as session:
        assert await session.scalar(select(func.count()).select_from(Track)) == 2 * 27
        assert await session.scalar(select(func.count()).select_from(StagingBatch)) == 2 * 5
    await world.close()


@pytest.mark.parametrize(
    ("rate", "failure_rate", "problem"),
    [(-1.0, 0.1, "--rate"), (1.0, 1.5, "--failure-rate")],
)
def test_bad_flags_are_config_errors(
    tmp_path: Path, rate: float, failure_rate: float, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        run_demo(directory=tmp_path, rate=rate, failure_rate=failure_rate, no_ui=True, db=None)


async def test_without_httpx_notifications_go_to_a_file(tmp_path: Path) -> None:
    paths, _ = prepare_directory(tmp_path / "demo")
    world = DemoWorld(paths, None, random.Random(7))
    await world.open()
    try:
        await world.seed()
        service = build_service(demo_settings(paths, None))
        async with service.running(poll=False):
            report = await service.run_once()
    finally:
        await world.close()
    exported = [o for o in report.outcomes if o.handler == "NotificationExport"]
    assert exported and all(o.ok for o in exported)
    assert len(paths.outbox.read_text().splitlines()) == len(exported)


WITHOUT_HTTPX = (
    "import sys; sys.modules['httpx'] = None; sys.argv[0] = 'novaconsole'; "
    "from novaconsole.cli import main; main()"
)
"""``python -c`` source running the command as if httpx were not installed (a plain install)."""


@pytest.mark.slow
@pytest.mark.parametrize("httpx", ["installed", "missing"])
async def test_demo_headless_end_to_end(tmp_path: Path, httpx: str) -> None:
    """The real command: wait for each handler's first result and a retry, then SIGINT."""
    start = [sys.executable, "-m", "novaconsole"]
    if httpx == "missing":
        start = [sys.executable, "-c", WITHOUT_HTTPX]
    command = [
        *start, "demo", "--no-ui", "--dir", str(tmp_path / "d"),
        "--rate", "10", "--failure-rate", "0.5",
    ]  # fmt: skip
    wanted = {
        "Physically deleted track": False,
        "imported:": False,
        "Delivered": False,
        "retrying in": False,
    }
    if httpx == "missing":
        wanted["httpx is not installed"] = False
    output: list[str] = []
    with anyio.fail_after(30):
        async with await anyio.open_process(
            command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        ) as process:
            assert process.stdout is not None
            async for chunk in TextReceiveStream(process.stdout):
                output.append(chunk)
                text = "".join(output)
                for needle in wanted:
                    wanted[needle] = wanted[needle] or needle in text
                if all(wanted.values()):
                    break
            process.send_signal(signal.SIGINT)
            async for chunk in TextReceiveStream(process.stdout):
                output.append(chunk)
            code = await process.wait()
    text = "".join(output)
    assert all(wanted.values()), text[-2000:]
    assert code == 0, text[-2000:]
    assert "novaconsole summary" in text and "demo web server:" in text


def test_the_demo_ignores_environment_meant_for_the_users_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOVACONSOLE_STORE__KEEP_RESULTS_COUNT", "abc")
    monkeypatch.setenv("NOVACONSOLE_HANDLERS__0__ENABLED", "false")
    paths, _ = prepare_directory(tmp_path / "demo")
    settings = demo_settings(paths, "http://127.0.0.1:9/webhook")
    assert [h.enabled for h in settings.handlers] == [True, True, True]
    assert settings.database.url == paths.database_url
