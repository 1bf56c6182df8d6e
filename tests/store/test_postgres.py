"""PostgreSQL through asyncpg: the same store in a throwaway database on 127.0.0.1:5432."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from novaconsole.engine.outcomes import OutcomeStatus
from novaconsole.engine.state import Controls, ItemState
from novaconsole.store import SqlStore, open_store
from novaconsole.store.queries import forget_item, handler_totals, list_results
from tests.store.support import outcome

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

SERVER = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    try:
        admin = await asyncpg.connect(SERVER, timeout=3)
    except (OSError, asyncpg.PostgresError) as error:
        pytest.skip(f"PostgreSQL server on 127.0.0.1:5432 unreachable: {error}")
    name = f"novaconsole_test_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://postgres:not-needed@127.0.0.1:5432/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_outcomes_states_and_controls_round_trip_on_postgres(pg_url: str) -> None:
    store = open_store(pg_url)
    assert "not-needed" not in store.display_url
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
