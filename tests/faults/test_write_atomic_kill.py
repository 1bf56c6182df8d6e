"""``kill -9`` at any moment leaves no item done at its source without its result (issue
11 point 5): an item's ``ctx.write()`` statements and its outcome row commit together.

A real worker process drains a SQLite table through ``ctx.write()`` and is killed with
SIGKILL several times mid-run, then restarted until the table is drained.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.write_support import Worker, done, executions, make_source, results, wait_until

pytestmark = pytest.mark.slow

ROWS = 12_000
KILLS = 5


def assert_done_iff_recorded(db: Path) -> None:
    recorded = results(db)
    succeeded = {item for (item, status), _ in recorded.items() if status == "succeeded"}
    finished = done(db)
    assert finished - succeeded == set(), "done at the source without a result"
    assert succeeded - finished == set(), "a result for an item whose writes are not committed"
    doubled = {key: count for key, count in recorded.items() if count > 1}
    assert not doubled, f"results recorded more than once: {doubled}"
    assert {status for _, status in recorded} <= {"succeeded"}


def test_kill_9_never_leaves_an_item_done_without_its_result(tmp_path: Path) -> None:
    db = tmp_path / "drain.db"
    make_source(db, ROWS)
    in_flight: set[int] = set()
    for kill in range(1, KILLS + 1):
        worker = Worker(db)
        worker.wait_for("ready")
        target = ROWS * kill // (KILLS + 1)
        wait_until(lambda t=target: len(done(db)) >= t, f"{target} rows done", worker)
        worker.kill()
        finished = done(db)
        assert len(finished) < ROWS, "the kill came after the drain: nothing was tested"
        in_flight |= set(executions(db)) - finished
        assert_done_iff_recorded(db)

    last = Worker(db)
    assert last.wait_for("drained"), last.errors()
    assert last.stop() == 0, last.errors()

    assert done(db) == set(range(ROWS))
    assert_done_iff_recorded(db)
    twice = {item for item, count in executions(db).items() if count > 1}
    assert twice <= in_flight, f"ran twice without being in flight at a kill: {twice - in_flight}"
