"""Admission's reads on PostgreSQL by a batch of ids: the read before a claim (which of them
other claims hold) and the items' states. What they find, and that they probe their table by
primary key, id by id, even when the planner believes it nearly empty (the tables grow from
empty: the usual case). Planned from such statistics, each scanned all the handler's rows and
compared each with every id asked: 75 to 650 ms per 500 ids with 10,000 to 40,000 rows
(issue 16)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from novaconsole.engine.persistence import ItemState
from novaconsole.store import claims as claim_sql
from novaconsole.store import open_store, states
from tests.postgres import throwaway_database

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

FETCHED_AT = datetime(2026, 1, 1, 12, tzinfo=UTC)


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    """A store's engine on a fresh database whose claims and states tables were analyzed
    empty, then filled: 3,000 live claims of ``Drain`` and one of each other kind; 3,000
    states."""
    async with throwaway_database("novaconsole_taken") as url:
        store = open_store(url)
        await store.open()
        try:
            async with store.engine.begin() as connection:
                for table in ("novaconsole_claims", "novaconsole_item_states"):
                    await connection.execute(text(f"ANALYZE {table}"))  # empty, it says
                await connection.execute(
                    text(
                        "INSERT INTO novaconsole_claim_ends (id, ended_at) VALUES "
                        "(1, TIMESTAMPTZ '2026-01-01 11:00+00'), "
                        "(2, TIMESTAMPTZ '2026-01-01 13:00+00')"
                    )
                )
                await connection.execute(
                    text(
                        "INSERT INTO novaconsole_claims (handler, item_id, worker_id, token, "
                        "lease_until, state, finished_at, ended_by) "
                        "SELECT 'Drain', i::text, 'w', 1, now() + interval '1 hour', 'held', "
                        "NULL, NULL FROM generate_series(1, 3000) i UNION ALL VALUES "
                        "('Drain', 'expired', 'w', 1, now() - interval '1 second', 'held', NULL, "
                        " NULL),"
                        "('Drain', 'done-before', 'w', 1, now() + interval '1 hour', 'done', "
                        " TIMESTAMPTZ '2026-01-01 10:00+00', 1),"
                        "('Drain', 'done-after', 'w', 1, now() + interval '1 hour', 'done', "
                        " TIMESTAMPTZ '2026-01-01 10:00+00', 2),"
                        "('Drain', 'done-unrecorded', 'w', 1, now() + interval '1 hour', 'done', "
                        " TIMESTAMPTZ '2026-01-01 10:00+00', 3),"
                        "('Other', 'other', 'w', 1, now() + interval '1 hour', 'held', NULL, NULL)"
                    )
                )
                await connection.execute(
                    text(
                        "INSERT INTO novaconsole_item_states "
                        "(handler, item_id, attempts, dead, updated_at) "
                        "SELECT 'Drain', i::text, i % 5, i % 5 = 4, now() "
                        "FROM generate_series(1, 3000) i"
                    )
                )
            yield store.engine
        finally:
            await store.close()


async def test_it_finds_live_claims_and_those_finished_after_the_fetch(
    engine: AsyncEngine,
) -> None:
    """A claim ended is free for a fetch that started after its end record (written after the
    commit), not after its own ``finished_at`` (before the commit)."""
    asked = ["1", "3000", "3001", "expired", "other"]
    asked += ["done-before", "done-after", "done-unrecorded"]
    async with engine.connect() as connection:
        taken = await claim_sql.visibly_taken(connection, "Drain", asked, FETCHED_AT)
        unfetched = await claim_sql.visibly_taken(connection, "Drain", asked, None)
    assert taken == {"1", "3000", "done-after", "done-unrecorded"}
    assert unfetched == {"1", "3000", "done-before", "done-after", "done-unrecorded"}


async def test_states_are_found_by_stored_id(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        found = await states.read(connection, "Drain", ["3", "4", "3001", "other"])
    assert found == {"3": ItemState(3), "4": ItemState(4, dead=True)}


async def plan(engine: AsyncEngine, read: Callable[[AsyncConnection], Awaitable[object]]) -> str:
    """PostgreSQL's plan of the one statement ``read`` sends, with the parameters it sent."""
    sent: list[tuple[str, Any]] = []

    def executed(*args: Any) -> None:
        sent.append((args[2], args[3]))  # statement, parameters

    event.listen(engine.sync_engine, "before_cursor_execute", executed)
    try:
        async with engine.connect() as connection:
            await read(connection)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", executed)
    [(statement, parameters)] = sent
    raw = await engine.raw_connection()
    try:
        driver = raw.driver_connection
        assert driver is not None
        return "\n".join(row[0] for row in await driver.fetch(f"EXPLAIN {statement}", *parameters))
    finally:
        raw.close()


ASKED = [str(i) for i in range(2501, 3001)]


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(lambda c: claim_sql.visibly_taken(c, "Drain", ASKED, FETCHED_AT), id="claims"),
        pytest.param(lambda c: states.read(c, "Drain", ASKED), id="states"),
    ],
)
async def test_a_batch_is_read_by_primary_key_probes_whatever_the_statistics(
    engine: AsyncEngine, read: Callable[[AsyncConnection], Awaitable[object]]
) -> None:
    shown = await plan(engine, read)
    index_conditions = [line for line in shown.splitlines() if "Index Cond" in line]
    assert any("item_id" in line for line in index_conditions), shown
    assert "ANY" not in shown, shown


async def test_the_stores_statements_are_planned_with_their_parameters_handlers_are_not(
    engine: AsyncEngine,
) -> None:
    """PostgreSQL plans a prepared statement generically after five runs when that looks no
    dearer, which it does while the statistics say the table is nearly empty. The store's
    joins of a batch against the claims then compared every claim with every key: a lease
    renewal of 500 claims took 2.5 s with 20,000 claims and 5.2 s with 40,000 (33 ms planned
    with its parameters). Handlers' sessions keep the server's default."""

    async def plans(connection: AsyncConnection) -> list[str]:
        await connection.exec_driver_sql(
            "PREPARE held(text) AS SELECT count(*) FROM novaconsole_claims WHERE handler = $1"
        )
        shown = []
        for _ in range(7):
            rows = await connection.exec_driver_sql("EXPLAIN EXECUTE held('Drain')")
            shown.append("\n".join(str(row[0]) for row in rows))
        await connection.exec_driver_sql("DEALLOCATE held")
        return shown

    async with engine.connect() as connection:
        store_plans = await plans(connection)
    handlers = create_async_engine(engine.url)  # what ctx.session() connects with
    try:
        async with handlers.connect() as connection:
            handler_plans = await plans(connection)
    finally:
        await handlers.dispose()
    assert all("'Drain'" in shown for shown in store_plans), store_plans[-1]
    assert "$1" in handler_plans[-1], "the server's default: a generic plan by the sixth run"
