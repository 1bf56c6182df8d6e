"""``ctx.unclaimed()`` on PostgreSQL probes the claims by primary key, one row at a time,
even when the planner believes the claims table nearly empty (it churns: the usual case).
Planned as an anti-join, or through the state index, a fetch compared every row with every
held claim (issue 16: 0.5-1.9 s per fetch with 3,000 claims held)."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, select, text

from novaconsole.store import open_store
from tests.postgres import throwaway_database

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

metadata = MetaData()
work = Table("work", metadata, Column("id", Integer, primary_key=True), Column("state", Text))


async def test_the_claims_are_probed_by_primary_key_whatever_the_statistics() -> None:
    async with throwaway_database("novaconsole_plan") as url:
        store = open_store(url)
        await store.open()
        try:
            async with store.engine.begin() as connection:
                await connection.run_sync(metadata.create_all)
                await connection.execute(
                    text("INSERT INTO work SELECT i, 'pending' FROM generate_series(1, 5000) i")
                )
                await connection.execute(text("ANALYZE novaconsole_claims"))  # empty, it says
                await connection.execute(
                    text(
                        "INSERT INTO novaconsole_claims "
                        "(handler, item_id, worker_id, token, lease_until, state) "
                        "SELECT 'Drain', i::text, 'w', 1, now() + interval '1 hour', 'held' "
                        "FROM generate_series(1, 3000) i"
                    )
                )
            assert store.source_filter is not None
            query = store.source_filter.unclaimed(
                select(work.c.id).where(work.c.state == "pending").order_by(work.c.id),
                work.c.id,
                handler="Drain",
                in_flight=list(range(1, 800)),
            ).limit(500)
            compiled = query.compile(
                dialect=store.engine.dialect, compile_kwargs={"literal_binds": True}
            )
            async with store.engine.connect() as connection:
                plan = "\n".join(
                    row[0] for row in await connection.execute(text(f"EXPLAIN {compiled}"))
                )
                ids = list(await connection.scalars(query))
        finally:
            await store.close()
    assert ids == list(range(3001, 3501))
    assert "Anti Join" not in plan, plan
    assert "novaconsole_claims_pkey" in plan, plan
