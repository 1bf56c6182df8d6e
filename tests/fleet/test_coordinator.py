"""The store's coordinator in one process, on SQLite and PostgreSQL: claims, fencing, the
done-row race, release, heartbeats, commands and fleet controls."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest.mock import ANY

import anyio
import pytest
from sqlalchemy import event, text

from novaconsole.engine.fleet_protocol import Claim, WorkerBeat
from novaconsole.engine.outcomes import ItemOutcome
from novaconsole.engine.persistence import Controls
from novaconsole.errors import ConfigError
from novaconsole.store import SqlStore, open_store
from novaconsole.store import claims as claim_sql
from novaconsole.store.coordinator import SqlCoordinator
from novaconsole.store.queries import list_workers
from tests.factories import outcome
from tests.postgres import throwaway_database
from tests.store.support import enqueue_command, update_controls

pytestmark = pytest.mark.anyio

LEASE = 30.0


# The PostgreSQL twin costs seconds a test (a database created and migrated on the server):
# slow; the quick run keeps the SQLite one, and tests/store/test_postgres.py for the server.
@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.slow])]
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with AsyncExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'coordinated.db'}"
        else:
            url = await stack.enter_async_context(throwaway_database("novaconsole_fleet"))
        opened = open_store(url, shared=True)
        await opened.open()
        stack.push_async_callback(opened.close)
        yield opened


def _coordinator(store: SqlStore) -> SqlCoordinator:
    assert store.coordinator is not None
    return store.coordinator


def _outcome(item_id: str, token: int | None) -> ItemOutcome:
    return outcome(item_id, handler="H", token=token)


def _url(store: SqlStore) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def _past(store: SqlStore) -> object:
    """A moment long gone, as the claims and workers tables store it."""
    return 0 if store.engine.dialect.name == "sqlite" else datetime(2000, 1, 1, tzinfo=UTC)


async def _results(store: SqlStore) -> list[tuple[str, str | None]]:
    async with store.engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT item_id, worker_id FROM novaconsole_results ORDER BY item_id")
        )
        return [(row.item_id, row.worker_id) for row in rows]


async def test_an_item_is_claimed_by_one_worker_until_its_lease_ends(store: SqlStore) -> None:
    coordinator = _coordinator(store)
    fetched = await coordinator.now()
    first = await coordinator.claim("a:1", "H", ["1", "2", "2"], LEASE, fetched)
    assert sorted(first) == ["1", "2"]
    assert sorted(await coordinator.claim("b:2", "H", ["1", "2", "3"], LEASE, fetched)) == ["3"]
    # Another worker's renewal of claims it does not hold: all lost.
    lost = await coordinator.renew("b:2", [Claim("H", "1", first["1"])], LEASE)
    assert list(lost) == [Claim("H", "1", first["1"])]


async def test_leases_are_renewed_at_most_every_quarter_lease(store: SqlStore) -> None:
    """The coordination loop runs every poll interval (50 ms); it lists its claims for a
    renewal only when :meth:`renewal_due` says the renewal would write."""
    coordinator = _coordinator(store)
    assert coordinator.renewal_due()
    tokens = await coordinator.claim("a:1", "H", ["1"], LEASE, await coordinator.now())
    held = [Claim("H", "1", tokens["1"])]
    assert not await coordinator.renew("a:1", held, LEASE)
    assert not coordinator.renewal_due()
    # Not due: nothing is written, so not even a claim held by another worker is reported.
    assert not await coordinator.renew("b:2", held, LEASE)


async def test_a_renewal_counts_an_item_finished_meanwhile_as_done_not_lost(
    store: SqlStore,
) -> None:
    """The engine lists its held claims, then the writer commits one's outcome, then the
    renewal runs: that item is done, not lost to another worker (it was once reported lost,
    and its result counted as rejected, though this worker had just recorded it)."""
    coordinator = _coordinator(store)
    tokens = await coordinator.claim("a:1", "H", ["1", "2"], 0.01, await coordinator.now())
    async with store.engine.begin() as connection:  # 2's lease lapses; b:2 takes it over
        await connection.execute(
            text("UPDATE novaconsole_claims SET lease_until = :past WHERE item_id = '2'"),
            {"past": _past(store)},
        )
    assert "2" in await coordinator.claim("b:2", "H", ["2"], LEASE, await coordinator.now())
    store.record([_outcome("1", tokens["1"])])
    await store.flush()
    held = [Claim("H", "1", tokens["1"]), Claim("H", "2", tokens["2"])]
    assert list(await coordinator.renew("a:1", held, LEASE)) == [held[1]]


async def test_a_stale_outcome_is_rejected_and_a_current_one_recorded_once(
    store: SqlStore,
) -> None:
    coordinator = _coordinator(store)
    tokens = await coordinator.claim("a:1", "H", ["1", "2"], 0.01, await coordinator.now())
    # a:1's leases lapse; b:2 takes item 1 over (a new, larger token).
    async with store.engine.begin() as connection:
        await connection.execute(
            text("UPDATE novaconsole_claims SET lease_until = :past"), {"past": _past(store)}
        )
    taken = await coordinator.claim("b:2", "H", ["1"], LEASE, await coordinator.now())
    assert taken["1"] > tokens["1"]

    store.record([_outcome("1", tokens["1"]), _outcome("2", tokens["2"])])
    await store.flush()
    assert store.rejected_outcomes == 1
    store.record([_outcome("1", taken["1"]), _outcome("1", taken["1"])])
    await store.flush()
    # The second copy (as after a commit the driver never confirmed) is rejected too.
    assert store.rejected_outcomes == 2
    assert [item for item, _ in await _results(store)] == ["1", "2"]


async def test_a_fetch_that_raced_a_completion_cannot_claim_the_item_again(
    store: SqlStore,
) -> None:
    coordinator = _coordinator(store)
    before = await coordinator.now()
    tokens = await coordinator.claim("a:1", "H", ["1"], LEASE, before)
    store.record([_outcome("1", tokens["1"])])
    await store.flush()
    # b:2 fetched before item 1 was finished: it must not run it again.
    assert await coordinator.claim("b:2", "H", ["1"], LEASE, before) == {}
    assert await coordinator.claim("b:2", "H", ["1"], LEASE, None) == {}
    # A fetch that started afterwards sees the item pending again: it may take it.
    again = await coordinator.claim("b:2", "H", ["1"], LEASE, await coordinator.now())
    assert again["1"] > tokens["1"]


async def test_a_fetch_that_started_before_the_end_was_committed_cannot_claim_the_item(
    store: SqlStore,
) -> None:
    """The claim ends inside the transaction that writes the outcome, before its commit: a
    fetch that starts in between still sees the item pending. Only a fetch that started after
    the end record (written after the commit) may take the item again."""
    coordinator = _coordinator(store)
    token = (await coordinator.claim("a:1", "H", ["1"], LEASE, await coordinator.now()))["1"]
    ending = claim_sql.new_end()
    async with store.engine.begin() as connection:
        assert await claim_sql.finish(connection, {("H", "1", token)}, ending)
        raced = await coordinator.now()  # a fetch starts: item 1 is still pending for it
    async with store.engine.begin() as connection:
        await claim_sql.record_ends(connection, [ending])
    assert await coordinator.claim("b:2", "H", ["1"], LEASE, raced) == {}
    again = await coordinator.claim("b:2", "H", ["1"], LEASE, await coordinator.now())
    assert again["1"] > token


async def test_claims_ended_while_the_writer_runs_get_their_end_record_by_the_time_it_closes(
    store: SqlStore,
) -> None:
    """With the writer running (as in a service) the end records are written beside it on
    PostgreSQL, after the commit; whatever the writer's stop interrupts is recorded when the
    store closes, so that no claim is left without one (taken again only after its lease)
    and a fetch started after the commit may take each item again."""
    coordinator = _coordinator(store)
    ids = [str(n) for n in range(300)]
    tokens = await coordinator.claim("a:1", "H", ids, LEASE, await coordinator.now())
    async with anyio.create_task_group() as group:
        group.start_soon(store.run)
        store.record([_outcome(item, tokens[item]) for item in ids[:150]])
        await store.settled()
        store.record([_outcome(item, tokens[item]) for item in ids[150:]])
        await store.settled()
        group.cancel_scope.cancel()
    await store.close()
    async with store.engine.connect() as connection:
        unrecorded = await connection.scalar(
            text(
                "SELECT count(*) FROM novaconsole_claims AS c WHERE c.state = 'done' AND NOT "
                "EXISTS (SELECT 1 FROM novaconsole_claim_ends AS e WHERE e.id = c.ended_by)"
            )
        )
        ends = await connection.scalar(text("SELECT count(*) FROM novaconsole_claim_ends"))
    assert unrecorded == 0
    assert 1 <= ends <= 2, "one end record per transaction, not one per claim"
    again = await coordinator.claim("b:2", "H", ids, LEASE, await coordinator.now())
    assert sorted(again) == sorted(ids)


async def test_released_claims_are_free_at_once_with_a_new_token(store: SqlStore) -> None:
    coordinator = _coordinator(store)
    tokens = await coordinator.claim("a:1", "H", ["1"], LEASE, await coordinator.now())
    await coordinator.release("b:2", [Claim("H", "1", tokens["1"])])  # not b's to release
    assert await coordinator.claim("b:2", "H", ["1"], LEASE, None) == {}
    await coordinator.release("a:1", [Claim("H", "1", tokens["1"])])
    taken = await coordinator.claim("b:2", "H", ["1"], LEASE, None)
    assert taken["1"] > tokens["1"]


async def test_workers_heartbeat_and_are_listed(store: SqlStore) -> None:
    coordinator = _coordinator(store)
    started = datetime.now(UTC) - timedelta(minutes=1)
    fleet = await coordinator.beat(WorkerBeat("a:1", "running", 3, 42, started), LEASE)
    assert [(w.worker_id, w.state, w.in_flight, w.processed, w.alive) for w in fleet] == [
        ("a:1", "running", 3, 42, True)
    ]
    async with store.engine.begin() as connection:  # b:2 went silent long ago
        await connection.execute(
            text("INSERT INTO novaconsole_workers VALUES ('b:2', :t, :t, 'running', 1, 5, 1.0)"),
            {"t": _past(store)},
        )
    await coordinator.stop()
    listed = {w.worker_id: w for w in await list_workers(_url(store))}
    assert (listed["a:1"].state, listed["a:1"].alive) == ("stopped", False)
    assert (listed["b:2"].state, listed["b:2"].alive) == ("running", False)


async def test_a_worker_alone_claims_in_one_transaction_and_steers_around_others(
    store: SqlStore,
) -> None:
    """The read before a claim only steers around other workers' row locks: a worker whose
    last heartbeat found no other live worker claims in one transaction (a dead worker's
    claims are still refused by the claim itself); with another live worker it reads first."""
    began: list[object] = []
    event.listen(store.engine.sync_engine, "begin", began.append)
    started = datetime.now(UTC)

    def coordinator() -> SqlCoordinator:  # a fresh one: its first heartbeat is written
        return SqlCoordinator(store.engine, lock=None)

    a = coordinator()
    await a.beat(WorkerBeat("a:1", "running", 0, 0, started), LEASE)
    dead = coordinator()
    await dead.beat(WorkerBeat("c:3", "running", 1, 0, started), LEASE)
    await dead.claim("c:3", "H", ["3"], LEASE, await dead.now())
    async with store.engine.begin() as connection:  # c:3 went silent long ago
        await connection.execute(
            text("UPDATE novaconsole_workers SET last_beat = :t WHERE worker_id = 'c:3'"),
            {"t": _past(store)},
        )
    a = coordinator()
    fleet = await a.beat(WorkerBeat("a:1", "running", 0, 0, started), LEASE)
    assert {w.worker_id: w.alive for w in fleet} == {"a:1": True, "c:3": False}
    fetched_at = await a.now()
    began.clear()
    assert sorted(await a.claim("a:1", "H", ["1", "2", "3"], LEASE, fetched_at)) == ["1", "2"]
    assert len(began) == 1, "one transaction: the claim"

    b = coordinator()
    await b.beat(WorkerBeat("b:2", "running", 0, 0, started), LEASE)
    a = coordinator()  # its next heartbeat sees b:2
    await a.beat(WorkerBeat("a:1", "running", 0, 0, started), LEASE)
    fetched_at = await a.now()
    began.clear()
    assert await a.claim("a:1", "H", ["1", "4"], LEASE, fetched_at) == {"4": ANY}
    assert len(began) == 2, "a read, then the claim"


async def test_a_command_is_taken_by_one_worker_only(store: SqlStore) -> None:
    coordinator = _coordinator(store)
    url = _url(store)
    command = await enqueue_command(url, "run_once")
    taken = await coordinator.take_commands("a:1")
    assert [(c.id, c.kind) for c in taken] == [(command, "run_once")]
    assert await coordinator.take_commands("b:2") == []
    with pytest.raises(ValueError, match="unknown fleet command 'explode'"):
        await enqueue_command(url, "explode")


async def test_controls_written_for_the_fleet_are_what_workers_load(store: SqlStore) -> None:
    url = _url(store)
    await update_controls(url, paused=True, batch_sizes={"H": 7})
    await update_controls(url, concurrency=3, handler_paused={"H": True})
    controls = await store.load_controls()
    assert (controls.paused, controls.concurrency) == (True, 3)
    assert (controls.batch_sizes, controls.handler_paused) == ({"H": 7}, {"H": True})
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        await update_controls(url, concurrency=0)


def test_sqlite_shares_work_only_when_asked(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'one.db'}"
    assert open_store(url).coordinator is None
    assert open_store(url, shared=True).coordinator is not None
    assert open_store("postgresql+asyncpg://u@127.0.0.1/db").coordinator is not None
    assert open_store("postgresql+asyncpg://u@127.0.0.1/db", shared=False).coordinator is None


def test_an_old_sqlite_cannot_share_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    with pytest.raises(ConfigError, match=r"needs SQLite 3\.35 or newer"):
        open_store(f"sqlite+aiosqlite:///{tmp_path / 'one.db'}", shared=True)


async def test_controls_saved_by_two_processes_at_once_end_as_the_last_saved(
    store: SqlStore,
) -> None:
    """Each control ends as the last process that set it saved it; a control one process
    did not touch keeps what the other saved (saves are per key, not whole snapshots)."""

    async def persisted() -> tuple[bool | None, int | None, dict[str, int]]:
        fresh = open_store(_url(store), shared=True)
        loaded = await fresh.load_controls()
        await fresh.engine.dispose()
        return loaded.paused, loaded.concurrency, loaded.batch_sizes

    other = open_store(_url(store), shared=True)
    await other.open()
    try:
        # Both write in the same moment, in either order: they set different keys.
        store.save_controls(Controls(paused=True, batch_sizes={"A": 3, "B": 4}))
        other.save_controls(Controls(concurrency=5, batch_sizes={"C": 6}))
        async with anyio.create_task_group() as group:
            group.start_soon(store.flush)
            group.start_soon(other.flush)
        other.save_controls(Controls(concurrency=7, batch_sizes={"B": 9}))
        await other.flush()
    finally:
        await other.close()
    fresh = open_store(_url(store), shared=True)
    loaded = await fresh.load_controls()
    await fresh.engine.dispose()
    assert (loaded.paused, loaded.concurrency) == (True, 7)
    assert loaded.batch_sizes == {"A": 3, "B": 9, "C": 6}
