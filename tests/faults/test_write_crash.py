"""An item that kills its worker process (``os._exit``, a segfault) is parked after
``max_attempts`` crashes with the reason "crashed the worker N times", and every other item
of its batch succeeds (issue 11 point 2). The worker is restarted in a loop, as a supervisor
would."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.faults.write_support import Worker, done, executions, make_source, query

pytestmark = pytest.mark.slow

ROWS = 300
POISON = 13
MAX_ATTEMPTS = 3  # the worker's RetryPolicy


@pytest.mark.parametrize("mode", ["exit", "segfault"])
def test_a_poison_item_is_parked_after_max_attempts_crashes(tmp_path: Path, mode: str) -> None:
    db = tmp_path / "drain.db"
    make_source(db, ROWS)
    crashes = 0
    while True:
        worker = Worker(db, mode)
        if worker.wait_for("drained"):
            break
        assert worker.process.returncode in (1, -signal.SIGSEGV), worker.errors()
        crashes += 1
        assert crashes <= MAX_ATTEMPTS + 1, f"still crashing after {crashes} restarts"
    assert worker.stop() == 0, worker.errors()

    assert crashes == MAX_ATTEMPTS + 1, "the first crash is a suspicion, the others count"
    assert done(db) == set(range(ROWS)) - {POISON}
    rows = query(
        db,  # a dead item its source keeps returning is also recorded as skipped (point 9)
        "SELECT item_id, status, error FROM novaconsole_results WHERE status != 'skipped'",
    )
    by_item = {int(str(item)): (status, error) for item, status, error in rows}
    assert len(rows) == ROWS, "one result per item"
    assert by_item.pop(POISON) == ("failed", f"crashed the worker {MAX_ATTEMPTS} times")
    assert {status for status, _ in by_item.values()} == {"succeeded"}
    assert not [line for line in worker.lines if line.startswith("on_failure")]
    assert executions(db)[POISON] == MAX_ATTEMPTS + 1
    assert query(db, "SELECT count(*) FROM novaconsole_started") == [(0,)], "marks left behind"
