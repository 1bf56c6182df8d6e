"""SqlStore on a real SQLite file: what the engine writes survives a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from sqlalchemy import text

from novaconsole.engine.outcomes import OutcomeStatus
from novaconsole.engine.persistence import Controls, ItemState
from novaconsole.store import SqlStore, open_store, sql_store, sqlite_writes
from novaconsole.store.models import results
from novaconsole.store.queries import forget_item, handler_totals, list_results
from novaconsole.store.rows import outcome_row
from tests.store.support import outcome, recent_results

pytestmark = pytest.mark.anyio


async def test_outcomes_are_readable_after_a_restart(db_url: str) -> None:
    store = open_store(db_url)
    await store.open()
    store.record([outcome(1), outcome("b-2", status=OutcomeStatus.FAILED, attempts=3, error="x")])
    store.record([outcome(3, handler="Export", status=OutcomeStatus.SKIPPED)])
    await store.close()

    rows = await list_results(db_url)

    assert [(r["handler"], r["item_id"], r["status"]) for r in rows] == [
        ("Export", "3", "skipped"),
        ("Ping", "b-2", "failed"),
        ("Ping", "1", "succeeded"),
    ]
    failed = rows[1]
    assert failed["attempts"] == 3
    assert failed["error"] == "x"
    assert failed["duration"] == 1.5
    assert failed["traceback"].startswith("Traceback")
    assert [a["number"] for a in failed["history"]] == [1, 2, 3]
    assert failed["history"][0]["error"] == "try 1: x"
    succeeded = rows[2]
    assert succeeded["history"] == [
        {
            "number": 1,
            "started_at": succeeded["started_at"],
            "duration": 0.5,
            "error": None,
            "timed_out": False,
        }
    ]
    finished = datetime.fromisoformat(failed["finished_at"])
    assert finished.tzinfo is not None
    assert datetime.fromisoformat(failed["started_at"]) < finished


async def test_outcomes_and_start_marks_are_written_without_aiosqlite_internals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's one-hand-off path uses aiosqlite's private ``_execute``: a release
    without it gets plain statements, and loses nothing."""
    monkeypatch.setattr(sqlite_writes, "DRIVER_QUEUE", False)
    monkeypatch.setattr(sql_store, "DRIVER_QUEUE", False)
    url = f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}"
    store = open_store(url)
    await store.open()
    await store.mark_started("Ping", {"1": 0, "2": 0})
    store.record([outcome(1), outcome(2, status=OutcomeStatus.FAILED, error="x")])
    await store.close()
    assert [(r["item_id"], r["status"]) for r in await list_results(url)] == [
        ("2", "failed"),
        ("1", "succeeded"),
    ]
    reopened = open_store(url)
    await reopened.open()
    try:
        assert await reopened.started_items("Ping", ["1", "2"]) == {}
    finally:
        await reopened.close()


async def test_list_results_filters_by_handler_and_status_and_limits(db_url: str) -> None:
    store = open_store(db_url)
    await store.open()
    store.record([outcome(i, status=OutcomeStatus.FAILED, error="e") for i in range(5)])
    store.record([outcome(i, handler="Other") for i in range(5)])
    await store.close()

    failed = await list_results(db_url, status="failed", limit=3)
    other = await list_results(db_url, handler="Other")

    assert [r["item_id"] for r in failed] == ["4", "3", "2"]
    assert {r["handler"] for r in other} == {"Other"} and len(other) == 5


async def test_handler_totals_count_each_status(db_url: str) -> None:
    store = open_store(db_url)
    await store.open()
    late = datetime(2030, 1, 1, tzinfo=UTC)
    store.record(
        [outcome(1), outcome(2, finished_at=late), outcome(3, status=OutcomeStatus.FAILED)]
    )
    store.record([outcome(4, handler="Export", status=OutcomeStatus.TIMED_OUT)])
    await store.close()

    totals = await handler_totals(db_url)

    assert totals["Ping"]["succeeded"] == 2
    assert totals["Ping"]["failed"] == 1
    assert totals["Ping"]["cancelled"] == 0
    assert totals["Ping"]["last_finished_at"] == late.isoformat()
    assert totals["Export"]["timed_out"] == 1


async def test_reading_a_database_that_does_not_exist_creates_nothing(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "missing.db"
    url = f"sqlite+aiosqlite:///{path}"

    assert await list_results(url) == []
    assert await handler_totals(url) == {}
    assert await forget_item(url, "Ping", "1") is False
    assert not path.exists()


async def test_controls_and_item_states_survive_a_restart(db_url: str) -> None:
    store = open_store(db_url)
    await store.open()
    store.save_controls(Controls(paused=True, concurrency=3, handler_paused={"Ping": True}))
    store.save_controls(
        Controls(
            paused=False,
            concurrency=5,
            handler_paused={"Ping": True, "Export": False},
            batch_sizes={"Ping": 20},
        )
    )
    store.set_item_state("Ping", "7", ItemState(2))
    store.set_item_state("Ping", "8", ItemState(3, dead=True))
    store.set_item_state("Export", "7", ItemState(1))
    store.set_item_state("Export", "7", None)
    await store.close()

    reopened = open_store(db_url)
    await reopened.open()
    try:
        controls = await reopened.load_controls()
        states = await reopened.item_states("Ping", ["7", "8", "9"])
        export = await reopened.item_states("Export", ["7"])
    finally:
        await reopened.close()

    assert controls == Controls(
        paused=False,
        concurrency=5,
        handler_paused={"Ping": True, "Export": False},
        batch_sizes={"Ping": 20},
    )
    assert states == {"7": ItemState(2), "8": ItemState(3, dead=True)}
    assert export == {}


async def test_item_states_include_writes_not_yet_flushed(store: SqlStore) -> None:
    store.set_item_state("Ping", "1", ItemState(1))
    await store.flush()
    store.set_item_state("Ping", "1", ItemState(2, dead=True))
    store.set_item_state("Ping", "2", ItemState(1))
    store.set_item_state("Ping", "3", ItemState(1))
    await store.flush()
    store.set_item_state("Ping", "3", None)

    states = await store.item_states("Ping", ["1", "2", "3", "4"])

    assert states == {"1": ItemState(2, dead=True), "2": ItemState(1)}


async def test_saved_controls_are_loaded_before_they_are_flushed(store: SqlStore) -> None:
    store.save_controls(Controls(concurrency=4, batch_sizes={"Ping": 9}))

    assert await store.load_controls() == Controls(concurrency=4, batch_sizes={"Ping": 9})


async def test_forgetting_a_dead_item_reopens_it(db_url: str, store: SqlStore) -> None:
    store.set_item_state("Ping", "1", ItemState(3, dead=True))
    store.set_item_state("Ping", "2", ItemState(3, dead=True))
    await store.flush()
    store.set_item_state("Ping", "3", ItemState(3, dead=True))  # still buffered

    assert await store.forget_item("Ping", "1") is True
    assert await store.forget_item("Ping", "3") is True
    assert await store.forget_item("Ping", "1") is False
    assert await forget_item(db_url, "Ping", "2") is True  # the CLI's path
    assert await forget_item(db_url, "Ping", "2") is False
    await store.flush()
    assert await store.item_states("Ping", ["1", "2", "3"]) == {}


async def test_run_writes_batches_without_waiting_for_close(db_url: str, store: SqlStore) -> None:
    async with anyio.create_task_group() as group:
        group.start_soon(store.run)
        store.record([outcome(1)])
        store.set_item_state("Ping", "1", ItemState(1))
        with anyio.fail_after(5):
            await store.settled()
        rows = await list_results(db_url)
        group.cancel_scope.cancel()

    assert [r["item_id"] for r in rows] == ["1"]
    assert store.buffered_outcomes == 0


async def test_close_writes_everything_buffered_in_several_batches(db_url: str) -> None:
    store = SqlStore(db_url, batch_rows=1000, keep_results_count=None)
    await store.open()
    store.record([outcome(i) for i in range(3500)])
    await store.close()

    assert len(await list_results(db_url, limit=10_000)) == 3500


async def test_recent_results_returns_stored_then_buffered_oldest_first(store: SqlStore) -> None:
    store.record([outcome(i) for i in range(3)])
    await store.flush()
    store.record([outcome(3, status=OutcomeStatus.FAILED, attempts=2, error="bad")])

    recent = await recent_results(store, limit=3)

    assert [(o.item_id, o.status) for o in recent] == [
        ("1", OutcomeStatus.SUCCEEDED),
        ("2", OutcomeStatus.SUCCEEDED),
        (3, OutcomeStatus.FAILED),
    ]
    stored = (await recent_results(store, limit=1))[0]
    assert stored.item_id == 3  # the buffered one, not yet converted


async def test_stored_outcomes_convert_back_with_history(store: SqlStore) -> None:
    store.record([outcome("x", status=OutcomeStatus.FAILED, attempts=2, error="bad")])
    await store.flush()

    (stored,) = await recent_results(store, limit=1)

    assert stored.item_id == "x"
    assert stored.status is OutcomeStatus.FAILED
    assert [a.number for a in stored.history] == [1, 2]
    assert stored.history[0].started_at.tzinfo is not None
    assert stored.finished_at.tzinfo is not None


async def test_database_runs_in_wal_mode(store: SqlStore) -> None:
    async with store.engine.connect() as connection:
        mode = await connection.scalar(text("PRAGMA journal_mode"))
        foreign_keys = await connection.scalar(text("PRAGMA foreign_keys"))
        busy = await connection.scalar(text("PRAGMA busy_timeout"))

    assert mode == "wal"
    assert foreign_keys == 1
    assert busy == 5000


async def test_concurrent_read_then_write_sessions_wait_instead_of_failing(
    store: SqlStore,
) -> None:
    """Write transactions begin IMMEDIATE: a read-then-write transaction racing another one
    waits for the lock (busy_timeout) instead of failing with "database is locked"."""
    async with store.engine.begin() as connection:
        await connection.execute(text("CREATE TABLE counter (n INTEGER)"))
        await connection.execute(text("INSERT INTO counter VALUES (0)"))
    first_read = anyio.Event()

    async def bump() -> None:
        async with store.session_factory() as session, session.begin():
            n = await session.scalar(text("SELECT n FROM counter"))
            first_read.set()
            await anyio.wait_all_tasks_blocked()
            await session.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})

    async with anyio.create_task_group() as group:
        group.start_soon(bump)
        with anyio.fail_after(5):
            await first_read.wait()
        group.start_soon(bump)

    async with store.engine.connect() as connection:
        assert await connection.scalar(text("SELECT n FROM counter")) == 2


async def test_handler_sessions_share_the_database(store: SqlStore) -> None:
    async with store.session_factory() as session:
        count = await session.scalar(text("SELECT count(*) FROM novaconsole_results"))

    assert count == 0


async def test_open_store_connects_to_nothing(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "sub" / "never.db"
    store = open_store(f"sqlite+aiosqlite:///{path}")

    assert store.display_url.endswith("never.db")
    assert not path.parent.exists()
    await store.engine.dispose()


async def test_retention_by_count_keeps_the_newest(db_url: str) -> None:
    store = SqlStore(db_url, keep_results_age=None, keep_results_count=10)
    await store.open()
    store.record([outcome(i) for i in range(1234)])
    await store.flush()

    deleted = await store.prune()
    await store.close()

    rows = await list_results(db_url, limit=100)
    assert deleted == 1224
    assert [int(r["item_id"]) for r in rows] == list(range(1233, 1223, -1))


async def test_retention_by_age_deletes_old_results(db_url: str) -> None:
    store = SqlStore(db_url, keep_results_age=timedelta(days=7), keep_results_count=None)
    await store.open()
    now = datetime.now(UTC)
    old = [outcome(f"old-{i}", finished_at=now - timedelta(days=8)) for i in range(700)]
    new = [outcome(f"new-{i}", finished_at=now - timedelta(days=1)) for i in range(5)]
    store.record(old + new)
    await store.flush()

    deleted = await store.prune(now=now)
    nothing = await store.prune(now=now)
    everything = await store.prune(now=now + timedelta(days=30))
    await store.close()

    assert (deleted, nothing, everything) == (700, 0, 5)
    assert await list_results(db_url) == []


async def test_core_rows_and_driver_rows_store_the_same_outcome(store: SqlStore) -> None:
    """Drivers without a fast path get Core executemany of ``outcome_row`` dicts."""
    samples = [
        outcome(1),
        outcome("x", status=OutcomeStatus.FAILED, attempts=3, error="bad"),
        outcome(2, status=OutcomeStatus.SKIPPED, finished_at=datetime(2031, 5, 6, 7, 8, 9, 10)),
    ]
    store.record(samples)
    await store.flush()
    async with store.engine.begin() as connection:
        await connection.execute(results.insert(), [outcome_row(o) for o in samples])

    stored = await recent_results(store, limit=6)

    assert stored[:3] == stored[3:]
    assert stored[2].finished_at == datetime(2031, 5, 6, 7, 8, 9, 10, tzinfo=UTC)


async def test_workers_sharing_a_database_never_undo_each_others_controls(db_url: str) -> None:
    first, second = open_store(db_url), open_store(db_url)
    await first.open()
    await second.open()
    try:
        first.save_controls(Controls(paused=True, handler_paused={"Ping": True}))
        await first.flush()
        # The second worker changes one batch size; its in-memory view is a second old.
        second.save_controls(Controls(batch_sizes={"Export": 7}))
        await second.flush()
        assert await first.load_controls() == Controls(
            paused=True, handler_paused={"Ping": True}, batch_sizes={"Export": 7}
        )
    finally:
        await first.close()
        await second.close()
