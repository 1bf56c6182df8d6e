"""Another process holds the SQLite file's write lock for longer than the busy timeout while
the service works: nothing is lost, every item ends done at its source with one result."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from novaconsole.store.database import BUSY_TIMEOUT_MS
from tests.faults.process_support import LedgerProject, exited, ledger, running, until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # real processes

__all__ = ["ledger"]  # the fixture

ITEMS = 1500
LOCKER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
"""


def lock(ledger: LedgerProject, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the write lock of the project's database for ``seconds``."""
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(ledger.db), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert locker.stdout is not None
    assert locker.stdout.readline().strip() == "locked"
    return locker


@pytest.mark.parametrize(
    "seconds",
    [
        pytest.param(2 * BUSY_TIMEOUT_MS / 1000, id="twice-the-busy-timeout"),
        pytest.param(30, id="30s", marks=pytest.mark.slow),
    ],
)
async def test_a_long_write_lock_loses_nothing(ledger: LedgerProject, seconds: float) -> None:
    ledger.setup(ITEMS, processing="max_concurrency = 8", options="delay = 0.01")
    run = ledger.start()
    await running(run, "some items done", lambda: len(ledger.done()) >= 100)
    locker = lock(ledger, seconds)
    try:
        done_when_locked = len(ledger.done())
        await until(lambda: locker.poll() is not None, "the lock to be released", seconds + 60)
        assert locker.returncode == 0
    finally:
        locker.kill()
        locker.wait()
    assert done_when_locked < ITEMS, "the lock came too late to test anything"
    await running(run, "every item done", lambda: len(ledger.done()) == ITEMS)
    run.process.send_signal(signal.SIGTERM)
    assert await exited(run) == 0, run.output()

    results = ledger.results()
    assert {status for _, status in results} == {"succeeded"}, run.output()
    assert sorted(int(item_id) for item_id, _ in results) == list(range(1, ITEMS + 1))
