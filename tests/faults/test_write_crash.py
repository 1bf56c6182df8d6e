"""An item that kills its worker process (``os._exit``, a segfault) is parked after
``max_attempts`` crashes with the reason "crashed the worker N times", and every other item
of its batch succeeds (issue 11 point 2). The worker is restarted in a loop, as a supervisor
would. On PostgreSQL the store is shared (claims): a batch's start marks are read and written
in the statement of their own that admission runs, and a dead worker's claims free up after
its lease."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.faults.write_support import (
    Worker,
    executions,
    make_pg_source,
    make_source,
    pg_query,
    query,
)
from tests.postgres import throwaway_database

pytestmark = pytest.mark.slow

ROWS = 300
POISON = 13
MAX_ATTEMPTS = 3  # the worker's RetryPolicy

Query = Callable[[str], list[tuple[object, ...]]]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for a test that is not async itself."""
    database = throwaway_database("novaconsole_crash")
    loop = asyncio.new_event_loop()
    try:
        yield loop.run_until_complete(database.__aenter__())
        loop.run_until_complete(database.__aexit__(None, None, None))
    finally:
        loop.close()


@pytest.mark.parametrize(
    ("store", "mode"),
    [
        ("sqlite", "exit"),
        ("sqlite", "segfault"),
        pytest.param("postgresql", "exit", marks=pytest.mark.postgres),
    ],
)
def test_a_poison_item_is_parked_after_max_attempts_crashes(
    tmp_path: Path, request: pytest.FixtureRequest, store: str, mode: str
) -> None:
    db = tmp_path / "drain.db"
    url = ""
    if store == "postgresql":
        url = request.getfixturevalue("pg_url")
        make_pg_source(url, ROWS)
        sql: Query = partial(pg_query, url)
    else:
        make_source(db, ROWS)
        sql = partial(query, db)
    crashes = 0
    while True:
        worker = Worker(db, mode, url)
        if worker.wait_for("drained"):
            break
        assert worker.process.returncode in (1, -signal.SIGSEGV), worker.errors()
        crashes += 1
        assert crashes <= MAX_ATTEMPTS + 1, f"still crashing after {crashes} restarts"
    assert worker.stop() == 0, worker.errors()

    assert crashes == MAX_ATTEMPTS + 1, "the first crash is a suspicion, the others count"
    done = {int(str(row[0])) for row in sql("SELECT id FROM source WHERE done = 1")}
    assert done == set(range(ROWS)) - {POISON}
    rows = sql(  # a dead item its source keeps returning is also recorded as skipped (point 9)
        "SELECT item_id, status, error FROM novaconsole_results WHERE status != 'skipped'"
    )
    by_item = {int(str(item)): (status, error) for item, status, error in rows}
    assert len(rows) == ROWS, "one result per item"
    assert by_item.pop(POISON) == ("failed", f"crashed the worker {MAX_ATTEMPTS} times")
    assert {status for status, _ in by_item.values()} == {"succeeded"}
    assert not [line for line in worker.lines if line.startswith("on_failure")]
    assert executions(db)[POISON] == MAX_ATTEMPTS + 1
    assert sql("SELECT count(*) FROM novaconsole_started") == [(0,)], "marks left behind"
