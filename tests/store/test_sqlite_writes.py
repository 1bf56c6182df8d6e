"""The writer's rows to SQLite's driver, many rows per statement: every row written once,
in chunks the driver's statement cache keeps, marks removed through the primary key."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from novaconsole.engine.outcomes import OutcomeStatus
from novaconsole.store import SqlStore, sqlite_writes
from novaconsole.store.queries import list_results
from novaconsole.store.sqlite_writes import RowsStatement
from novaconsole.store.started import SQLITE_UPSERT, sqlite_deletes
from tests.factories import outcome

pytestmark = pytest.mark.anyio

PAIRS = RowsStatement("INSERT INTO t (a, b) VALUES ", "(?, ?)")


@pytest.mark.parametrize("count", [0, 1, 2, 3, 255, 256, 257, 1000, 1023])
def test_chunks_take_every_row_once_in_power_of_two_statements(count: int) -> None:
    rows = [(n, f"v{n}") for n in range(count)]
    chunks = list(PAIRS.chunks(rows))

    flat = [value for _, parameters in chunks for value in parameters]
    assert flat == [value for row in rows for value in row]
    sizes = [sql.count("(?, ?)") for sql, _ in chunks]
    assert sum(sizes) == count
    assert all(size & (size - 1) == 0 and size <= 256 for size in sizes), sizes
    assert len({sql for sql, _ in chunks}) <= 9  # 256, 128, ... 1: the statement cache holds them


def test_chunks_stay_under_sqlites_parameter_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_writes, "_VARIABLES", 999)  # SQLite before 3.32
    wide = RowsStatement("INSERT INTO t VALUES ", f"({', '.join('?' * 11)})", lead=("x",))
    chunks = list(wide.chunks([tuple(range(11))] * 300))
    assert max(len(parameters) for _, parameters in chunks) <= 999
    assert sum(len(parameters) - 1 for _, parameters in chunks) == 300 * 11


def test_the_upsert_and_the_deletes_run_on_sqlite(tmp_path: Path) -> None:
    database = sqlite3.connect(tmp_path / "marks.db")
    database.execute(
        "CREATE TABLE novaconsole_started (handler TEXT, item_id TEXT, run_id TEXT, "
        "alone INTEGER, crashes INTEGER, PRIMARY KEY (handler, item_id))"
    )
    marks = [(handler, str(n), "run", 0, 0) for handler in ("A", "B") for n in range(300)]
    for sql, parameters in SQLITE_UPSERT.chunks(marks):
        database.execute(sql, parameters)
    for sql, parameters in SQLITE_UPSERT.chunks([("A", "1", "run", 1, 2)]):  # an update
        database.execute(sql, parameters)
    assert database.execute(
        "SELECT alone, crashes FROM novaconsole_started WHERE item_id = '1' AND handler = 'A'"
    ).fetchone() == (1, 2)

    finished = [("A", str(n)) for n in range(0, 300, 2)] + [("B", "7"), ("C", "1")]
    deletes = sqlite_deletes(finished)
    for statement, rows in deletes:
        for sql, parameters in statement.chunks(rows):
            plan = database.execute(f"EXPLAIN QUERY PLAN {sql}", parameters).fetchall()
            # The primary key, not a scan of every mark.
            assert not [step for *_, step in plan if step.startswith("SCAN")], plan
            database.execute(sql, parameters)

    left = set(database.execute("SELECT handler, item_id FROM novaconsole_started"))
    assert len(left) == 600 - 150 - 1
    assert not left & set(finished)


async def test_a_batch_of_more_rows_than_one_statement_takes_is_written_whole(
    store: SqlStore, db_url: str, db_path: Path
) -> None:
    await store.mark_started("Ping", {str(n): 0 for n in range(1, 701)})
    store.record(
        [
            outcome(n, status=OutcomeStatus.FAILED if n % 7 == 0 else OutcomeStatus.SUCCEEDED)
            for n in range(1, 701)
        ]
    )
    await store.flush()

    rows = await list_results(db_url, limit=1000)
    assert sorted(int(r["item_id"]) for r in rows) == list(range(1, 701))
    assert sum(r["status"] == "failed" for r in rows) == 100
    with sqlite3.connect(db_path) as connection:
        assert connection.execute("SELECT count(*) FROM novaconsole_started").fetchone() == (0,)
