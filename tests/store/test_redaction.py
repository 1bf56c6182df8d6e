"""Text a handler controlled is redacted where the store writes it and where it reads it back
(rows written before redaction existed may hold raw escapes or secrets)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from novaconsole.engine.outcomes import OutcomeStatus
from novaconsole.store import SqlStore, open_store
from novaconsole.store.fleet_view import FleetView
from novaconsole.store.queries import list_results
from tests.store.support import outcome, recent_results

pytestmark = pytest.mark.anyio

HOSTILE = "boom \x1b]52;c;cHduZWQ=\x07 postgresql://app:s3cret@db/x"
SHOWN = "boom \\x1b]52;c;cHduZWQ=\\x07 postgresql://app:***@db/x"


def _raw_row(path: Path, item_id: str, error: str) -> None:
    """A failed result written straight to the table, as an older novaconsole could."""
    with sqlite3.connect(path) as connection:
        connection.execute(
            "INSERT INTO novaconsole_results (handler, item_id, status, attempts, started_at, "
            "finished_at, duration, error, traceback, history) "
            "VALUES ('Ping', ?, 'failed', 1, 0, 1000000, 1.0, ?, ?, NULL)",
            (item_id, error, f"Traceback\n  {error}"),
        )


async def test_rows_written_raw_are_read_back_redacted(db_path: Path, db_url: str) -> None:
    store = open_store(db_url)
    await store.open()
    await store.close()
    _raw_row(db_path, "id-\x1b[2J", HOSTILE)

    (row,) = await list_results(db_url)
    assert (row["item_id"], row["error"]) == ("id-\\x1b[2J", SHOWN)
    assert row["traceback"] == f"Traceback\n  {SHOWN}"
    assert row["history"][0]["error"] == SHOWN

    reopened = open_store(db_url)
    await reopened.open()
    try:
        (stored,) = await recent_results(reopened)
    finally:
        await reopened.close()
    assert (stored.item_id, stored.error, stored.history[0].error) == ("id-\\x1b[2J", SHOWN, SHOWN)

    view = FleetView(db_url)
    await view.open()
    try:
        reading = await view.read(totals=True)
    finally:
        await view.close()
    assert [o.error for o in reading.outcomes] == [SHOWN]
    assert reading.handlers is not None and reading.handlers["Ping"].last_error == SHOWN


async def test_error_and_traceback_are_masked_when_written(db_path: Path, store: SqlStore) -> None:
    store.record([outcome(1, status=OutcomeStatus.FAILED, attempts=2, error=HOSTILE)])
    await store.flush()
    with sqlite3.connect(db_path) as connection:
        error, traceback, history = connection.execute(
            "SELECT error, traceback, history FROM novaconsole_results"
        ).fetchone()
    assert error == SHOWN
    assert "\x1b" not in traceback and "s3cret" not in traceback
    assert "\x1b" not in history and "s3cret" not in history
