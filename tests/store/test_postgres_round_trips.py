"""Round trips the store saves on PostgreSQL, and what it keeps.

Its connections are pinged at checkout only after sitting unused a while: a busy worker sends
no ping per checkout, and one idle across a server restart is replaced. Handlers' sessions get
a pinged connection every time (a dead one would cost an item an attempt). Its reads run
without a transaction around them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from novaconsole.store import open_store
from novaconsole.store.database import PING_AFTER_IDLE, create_engine, reader
from tests.pgcluster import private_cluster
from tests.postgres import throwaway_database

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    """The store's engine on a throwaway database, disposed of afterwards."""
    async with throwaway_database("novaconsole_trips") as url:
        made = create_engine(url)
        try:
            yield made
        finally:
            await made.dispose()


def counting_pings(engine: AsyncEngine) -> list[int]:
    """Count the pings the engine's dialect sends (the real ones, on the real server)."""
    dialect = engine.sync_engine.dialect
    ping: Callable[[Any], bool] = dialect.do_ping
    count = [0]

    def counted(dbapi_connection: Any) -> bool:
        count[0] += 1
        return ping(dbapi_connection)

    dialect.do_ping = counted  # type: ignore[method-assign]
    return count


async def read(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text("SELECT 1")) or 0)


async def test_a_connection_used_a_moment_ago_is_not_pinged_and_one_left_idle_is(
    engine: AsyncEngine,
) -> None:
    pings = counting_pings(engine)
    for _ in range(10):  # one pooled connection, handed out again at once
        assert await read(engine) == 1
    assert pings == [0]
    await anyio.sleep(PING_AFTER_IDLE)
    assert await read(engine) == 1
    assert pings == [1]


async def test_a_connection_idle_across_a_server_restart_is_replaced_not_failed() -> None:
    with private_cluster() as cluster:
        engine = create_engine(cluster.url)
        try:
            assert await read(engine) == 1
            await anyio.to_thread.run_sync(cluster.stop)  # the pooled connection dies
            await anyio.to_thread.run_sync(cluster.start)
            await anyio.sleep(PING_AFTER_IDLE)
            pings = counting_pings(engine)
            assert await read(engine) == 1  # its ping failed: the pool connected anew
            assert pings == [1]
        finally:
            await engine.dispose()


async def test_handlers_sessions_are_pinged_at_every_checkout_and_the_store_s_are_not() -> None:
    async with throwaway_database("novaconsole_ping") as url:
        store = open_store(url)
        try:
            handlers_engine = store.session_factory.kw["bind"]
            assert handlers_engine is not store.engine
            handlers, own = counting_pings(handlers_engine), counting_pings(store.engine)
            for _ in range(3):
                async with store.session_factory() as session:
                    assert await session.scalar(text("SELECT 1")) == 1
                assert await read(store.engine) == 1
            assert (handlers, own) == ([2], [0])  # the first checkout of each is a new connection
        finally:
            await store.close()


async def test_a_read_runs_each_statement_on_its_own_and_leaves_the_pool_as_it_was(
    engine: AsyncEngine,
) -> None:
    now = text("SELECT now()")  # the start of the statement's transaction
    async with reader(engine).connect() as connection:
        first, second = await connection.scalar(now), await connection.scalar(now)
    assert second > first  # no BEGIN: each statement a transaction of its own
    async with engine.connect() as connection:  # the same pooled connection
        first, second = await connection.scalar(now), await connection.scalar(now)
    assert second == first  # back in one transaction
