"""The read before a claim (which of a batch's ids other claims hold) on PostgreSQL: what it
finds, and that it probes the claims table by primary key, id by id, even when the planner
believes the table nearly empty (it grows from empty: the usual case). Planned from the
statistics, it scanned all the handler's claims and compared each with every id asked, 75 to
300 ms per 500 ids with 10,000 to 40,000 claims (issue 16)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from novaconsole.store import claims as claim_sql
from novaconsole.store import open_store
from tests.postgres import throwaway_database

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

FETCHED_AT = datetime(2026, 1, 1, 12, tzinfo=UTC)


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    """A store's engine on a fresh database whose claims table was analyzed empty, then
    filled: 3,000 live claims of ``Drain`` and one of each other kind."""
    async with throwaway_database("novaconsole_taken") as url:
        store = open_store(url)
        await store.open()
        try:
            async with store.engine.begin() as connection:
                await connection.execute(text("ANALYZE novaconsole_claims"))  # empty, it says
                await connection.execute(
                    text(
                        "INSERT INTO novaconsole_claims "
                        "(handler, item_id, worker_id, token, lease_until, state, finished_at) "
                        "SELECT 'Drain', i::text, 'w', 1, now() + interval '1 hour', 'held', "
                        "NULL FROM generate_series(1, 3000) i UNION ALL VALUES "
                        "('Drain', 'expired', 'w', 1, now() - interval '1 second', 'held', NULL),"
                        "('Drain', 'done-before', 'w', 1, now() + interval '1 hour', 'done', "
                        " TIMESTAMPTZ '2026-01-01 11:00+00'),"
                        "('Drain', 'done-after', 'w', 1, now() + interval '1 hour', 'done', "
                        " TIMESTAMPTZ '2026-01-01 13:00+00'),"
                        "('Other', 'other', 'w', 1, now() + interval '1 hour', 'held', NULL)"
                    )
                )
            yield store.engine
        finally:
            await store.close()


async def test_it_finds_live_claims_and_those_finished_after_the_fetch(
    engine: AsyncEngine,
) -> None:
    asked = ["1", "3000", "3001", "expired", "done-before", "done-after", "other"]
    async with engine.connect() as connection:
        taken = await claim_sql.visibly_taken(connection, "Drain", asked, FETCHED_AT)
        unfetched = await claim_sql.visibly_taken(connection, "Drain", asked, None)
    assert taken == {"1", "3000", "done-after"}
    assert unfetched == {"1", "3000", "done-before", "done-after"}


async def test_it_probes_the_claims_by_primary_key_whatever_the_statistics(
    engine: AsyncEngine,
) -> None:
    sent: list[tuple[str, Any]] = []

    def executed(*args: Any) -> None:
        sent.append((args[2], args[3]))  # statement, parameters

    event.listen(engine.sync_engine, "before_cursor_execute", executed)
    async with engine.connect() as connection:
        taken = await claim_sql.visibly_taken(
            connection, "Drain", [str(i) for i in range(2501, 3001)], FETCHED_AT
        )
    event.remove(engine.sync_engine, "before_cursor_execute", executed)
    assert len(taken) == 500
    [(statement, parameters)] = sent
    raw = await engine.raw_connection()
    try:
        driver = raw.driver_connection
        assert driver is not None
        plan = "\n".join(
            row[0] for row in await driver.fetch(f"EXPLAIN {statement}", *parameters)
        )
    finally:
        raw.close()
    index_conditions = [line for line in plan.splitlines() if "Index Cond" in line]
    assert any("item_id" in line for line in index_conditions), plan
    assert "ANY" not in plan, plan
