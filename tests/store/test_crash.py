"""``kill -9`` in the middle of a busy run leaves a sound database with what was flushed."""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from novaconsole.store.queries import list_results

WORKER = Path(__file__).with_name("busy_worker.py")
REPO = Path(__file__).resolve().parents[2]


def _wait_for_line(process: subprocess.Popen[str], expected: str, within: float) -> None:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], within)
    if not ready:
        pytest.fail(f"the worker printed nothing within {within}s")
    line = process.stdout.readline().strip()
    if line != expected:
        process.kill()
        _, errors = process.communicate(timeout=5)
        pytest.fail(f"the worker printed {line!r}, not {expected!r}:\n{errors}")


@pytest.mark.slow
def test_kill_9_during_a_busy_run_leaves_the_database_intact(tmp_path: Path) -> None:
    db_path = tmp_path / "busy.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, str(WORKER), str(db_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    try:
        _wait_for_line(process, "flowing", within=30)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
    assert process.returncode == -signal.SIGKILL

    with sqlite3.connect(db_path) as connection:
        integrity = connection.execute("PRAGMA integrity_check").fetchall()
        results = connection.execute("SELECT count(*) FROM novaconsole_results").fetchone()[0]
        written = connection.execute("SELECT count(*) FROM written").fetchone()[0]

    assert integrity == [("ok",)]
    assert results >= 2000
    assert written > 0
    rows = anyio.run(lambda: list_results(f"sqlite+aiosqlite:///{db_path}", limit=5))
    assert len(rows) == 5
