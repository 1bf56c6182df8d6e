"""PostgreSQL through asyncpg: the same store in a throwaway database on 127.0.0.1:5432."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import anyio
import pytest

from novaconsole.engine.outcomes import OutcomeStatus
from novaconsole.engine.persistence import Controls, ItemState
from novaconsole.store import SqlStore, open_store
from novaconsole.store.queries import forget_item, handler_totals, list_results
from tests.postgres import drop_database, throwaway_database
from tests.store.support import outcome

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

PASSWORD = "not-needed-but-secret"


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with throwaway_database("novaconsole_test", password=PASSWORD) as url:
        yield url


async def test_outcomes_states_and_controls_round_trip_on_postgres(pg_url: str) -> None:
    store = open_store(pg_url)
    assert PASSWORD not in store.display_url
    await store.open()
    store.record(
        [
            outcome(1),
            outcome("b", status=OutcomeStatus.FAILED, attempts=2, error="boom"),
        ]
    )
    store.set_item_state("Ping", "b", ItemState(2, dead=True))
    store.save_controls(Controls(concurrency=6, handler_paused={"Ping": True}))
    await store.close()

    reopened = open_store(pg_url)
    await reopened.open()  # the schema exists now: opening again leaves it as it is
    try:
        states = await reopened.item_states("Ping", ["1", "b"])
        controls = await reopened.load_controls()
    finally:
        await reopened.close()
    rows = await list_results(pg_url)
    totals = await handler_totals(pg_url)

    assert [(r["item_id"], r["status"], r["attempts"]) for r in rows] == [
        ("b", "failed", 2),
        ("1", "succeeded", 1),
    ]
    assert [a["number"] for a in rows[0]["history"]] == [1, 2]
    assert rows[1]["finished_at"].endswith("+00:00")
    assert states == {"b": ItemState(2, dead=True)}
    assert controls == Controls(concurrency=6, handler_paused={"Ping": True})
    assert totals["Ping"]["succeeded"] == 1 and totals["Ping"]["failed"] == 1
    assert await forget_item(pg_url, "Ping", "b") is True


async def test_retention_prunes_on_postgres(pg_url: str) -> None:
    store = SqlStore(pg_url, keep_results_age=None, keep_results_count=3)
    await store.open()
    store.record([outcome(i) for i in range(1200)])
    await store.flush()

    deleted = await store.prune()
    await store.close()

    assert deleted == 1197
    assert [r["item_id"] for r in await list_results(pg_url)] == ["1199", "1198", "1197"]


async def test_write_errors_are_logged_with_the_password_masked(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="novaconsole.store")
    failed = anyio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                failed.set()

    watch = Watch()
    logging.getLogger("novaconsole.store").addHandler(watch)
    store = open_store(pg_url)
    await store.open()
    await drop_database(pg_url)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(store.run)
            store.record([outcome(1)])
            with anyio.fail_after(5):
                await failed.wait()
            group.cancel_scope.cancel()
        await store.close()
    finally:
        logging.getLogger("novaconsole.store").removeHandler(watch)

    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors[0].startswith("cannot write to database postgresql+asyncpg://postgres:***@")
    assert "1 outcomes waiting" in errors[0]
    assert "1 outcomes and 0 item states are lost" in errors[-1]
    assert PASSWORD not in caplog.text
