"""A worker stopped (SIGSTOP, a frozen VM) inside one of the store's transactions on PostgreSQL:
the server ends its session after ``idle_in_transaction_session_timeout``, so its row locks on
``novaconsole_claims`` do not wedge the other workers; their statements waiting on those locks
give up after ``lock_timeout`` (a database fault, retried) instead of hanging."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import anyio
import pytest
from sqlalchemy import text

from novaconsole.engine.fleet_protocol import Claim
from novaconsole.store import SqlStore
from novaconsole.store import claims as claim_sql
from novaconsole.store.database import IDLE_IN_TRANSACTION_TIMEOUT, LOCK_TIMEOUT
from novaconsole.store.faults import is_database_fault
from tests.postgres import throwaway_database

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

LOCK = 0.5
IDLE = 1.5


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with throwaway_database("novaconsole_stopped") as url:
        yield url


async def _store(stack: AsyncExitStack, url: str, **limits: float) -> SqlStore:
    store = SqlStore(url, shared=True, **limits)
    await store.open()
    stack.push_async_callback(store.close)
    return store


async def _setting(connection: object, name: str) -> str:
    return str(await connection.scalar(text(f"SHOW {name}")))  # type: ignore[attr-defined]


async def test_the_store_limits_its_own_connections_and_not_the_handlers(url: str) -> None:
    async with AsyncExitStack() as stack:
        store = await _store(stack, url)
        async with store.engine.connect() as connection:
            assert await _setting(connection, "lock_timeout") == f"{LOCK_TIMEOUT:g}s"
            idle = await _setting(connection, "idle_in_transaction_session_timeout")
            assert idle == f"{IDLE_IN_TRANSACTION_TIMEOUT:g}s"
        async with store.session_factory() as session:  # ctx.session(): a handler's own
            assert await _setting(session, "lock_timeout") == "0"
            assert await _setting(session, "idle_in_transaction_session_timeout") == "0"


async def test_a_worker_stopped_in_a_store_transaction_does_not_wedge_the_others(
    url: str,
) -> None:
    async with AsyncExitStack() as stack:
        stopped = await _store(stack, url, lock_timeout=LOCK, idle_in_transaction_timeout=IDLE)
        other = await _store(stack, url, lock_timeout=LOCK, idle_in_transaction_timeout=IDLE)
        assert stopped.coordinator is not None and other.coordinator is not None
        now = await stopped.coordinator.now()
        tokens = await stopped.coordinator.claim("stopped:1", "H", ["1", "2"], 0.2, now)
        held = [Claim("H", key, token) for key, token in tokens.items()]

        # The stopped worker is inside its renewal's transaction (row locks on both claims
        # taken, not committed) when it stops: its connection sits idle in that transaction.
        connection = await stack.enter_async_context(stopped.engine.connect())
        transaction = await connection.begin()
        assert await claim_sql.renew(connection, "stopped:1", held, 60.0)
        await anyio.sleep(0.3)  # its committed leases (0.2 s) lapse meanwhile

        # The other worker takes both items over; while the locks are held, each try fails
        # at once-ish (a database fault: the coordinator's caller retries), never hangs.
        faults = 0
        with anyio.fail_after(20):  # a guard: unbounded, each try would wait 30 s
            while True:
                try:
                    taken = await other.coordinator.claim(
                        "other:2", "H", ["1", "2"], 60.0, await other.coordinator.now()
                    )
                except Exception as error:
                    assert is_database_fault(error), error
                    faults += 1
                    continue
                if len(taken) == 2:
                    break
        assert faults >= 1, "the other worker waited on the stopped worker's locks"
        assert all(taken[key] > token for key, token in tokens.items())

        # The stopped worker resumes: its transaction is gone, and what it tries next is a
        # database fault (held and retried, no item charged), not a crash.
        with pytest.raises(Exception) as raised:
            await claim_sql.renew(connection, "stopped:1", held, 60.0)
            await transaction.commit()
        assert is_database_fault(raised.value), raised.value
