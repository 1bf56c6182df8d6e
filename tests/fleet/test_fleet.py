"""Many worker processes on one database: claims, leases, fencing, fleet controls.

Every worker is a real process (``worker.py``); the tests wait on what the database shows.
"""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from tests.fleet.conftest import Fleet, Worker
from tests.store.support import enqueue_command, update_controls

pytestmark = pytest.mark.anyio

FAST = ("--poll", "0.05", "--batch", "100", "--concurrency", "8", "--light")
# Leases long enough that a busy, shared machine never lets one lapse by accident: any lapse
# is a legitimate duplicate (at-least-once), which the exactly-once test must not see.
SAFE_LEASE = ("--lease", "5")
SHORT_LEASE = ("--lease", "1.5")


async def _all_done(fleet: Fleet, total: int, within: float = 40) -> None:
    async def done() -> bool:
        finished = await fleet.scalar("SELECT count(*) FROM fleet_items WHERE done")
        recorded = await fleet.scalar("SELECT count(*) FROM novaconsole_results")
        return bool(finished == total and recorded >= total)

    await fleet.until(done, within, f"all {total} items done and recorded")


async def _runs_per_item(fleet: Fleet) -> Counter[int]:
    rows = await fleet.rows("SELECT item_id FROM fleet_runs")
    return Counter(row.item_id for row in rows)


async def _exactly_once(fleet: Fleet, workers: int, items: int) -> None:
    await fleet.setup()
    started = fleet.start(workers, *FAST, *SAFE_LEASE)
    await fleet.ready(started)
    await fleet.add_items(range(1, items + 1), duration=0.005)
    await _all_done(fleet, items)

    runs = await _runs_per_item(fleet)
    assert len(runs) == items
    assert [item for item, count in runs.items() if count != 1] == []
    # Not asserted: that every worker took a share. With this natural head-of-table fetch the
    # worker holding the head keeps it (a full batch is refilled at half) and the others find
    # only claimed rows; sharing is what ctx.unclaimed() is for (tests/fleet/test_unclaimed.py).
    results = await fleet.rows(
        "SELECT item_id, count(*) AS n FROM novaconsole_results "
        "WHERE status = 'succeeded' GROUP BY item_id"
    )
    assert len(results) == items and all(row.n == 1 for row in results)
    # Each result names the worker that actually ran the item.
    mismatched = await fleet.scalar(
        "SELECT count(*) FROM novaconsole_results r JOIN fleet_runs f "
        "ON f.item_id = CAST(r.item_id AS INTEGER) WHERE f.worker <> r.worker_id"
    )
    assert mismatched == 0
    await fleet.stop()
    assert all(w.process.returncode == 0 for w in started)


async def _kill_9(fleet: Fleet, workers: int, items: int) -> None:
    # Items of 50 ms: with no-op items, then with items of 10 ms (356-510 of 600 left at the
    # kill, but once none, on SQLite), the fleet ran them all between a worker being seen at
    # 50 and the kill. A worker's runs show only when its writer commits, likely in lumps when
    # two SQLite writers wait for each other's lock. At 50 ms, 480-510 were left: over a
    # second of the fleet's work.
    await fleet.setup(items, duration=0.05)
    started = fleet.start(workers, *FAST, *SHORT_LEASE)
    await fleet.ready(started)

    async def a_busy_worker() -> str:
        # Whichever worker is busy: the fleet does not share the work evenly (on a loaded
        # machine one SQLite worker often claims nearly all of it), so a fixed victim may
        # never reach 50 items before the other has done them all.
        busy = await fleet.scalar(
            "SELECT worker FROM fleet_runs GROUP BY worker HAVING count(*) >= 50 LIMIT 1"
        )
        return str(busy or "")

    busy = await fleet.until(a_busy_worker, 30, "a worker to have run 50 items")
    victim = next(w for w in started if w.worker_id == busy)
    victim.signal(signal.SIGKILL)
    victim.process.wait()
    left = await fleet.scalar("SELECT count(*) FROM fleet_items WHERE NOT done")
    assert left, "the killed worker had finished everything: nothing to take over"
    # What it held when it died: claimed, not recorded. Only these may run twice.
    held = {
        int(row.item_id)
        for row in await fleet.rows(
            "SELECT item_id FROM novaconsole_claims WHERE worker_id = :w AND state = 'held'",
            w=victim.worker_id,
        )
    }

    async def all_done() -> bool:
        left = await fleet.scalar("SELECT count(*) FROM fleet_items WHERE NOT done")
        return bool(left == 0)

    await fleet.until(all_done, 40, "the survivors to finish every item")
    runs = await _runs_per_item(fleet)
    assert len(runs) == items
    twice = {item for item, count in runs.items() if count > 1}
    assert twice <= held, f"ran twice but not held by the killed worker: {twice - held}"
    assert max(runs.values()) <= 2
    survivors = {row.worker for row in await fleet.rows("SELECT DISTINCT worker FROM fleet_runs")}
    assert survivors - {victim.worker_id}, "no survivor ran anything"
    # Each outcome is recorded at most once; only the killed worker's unflushed ones are missing.
    await fleet.stop()
    results = await fleet.rows(
        "SELECT item_id, count(*) AS n FROM novaconsole_results GROUP BY item_id"
    )
    assert all(row.n == 1 for row in results)
    missing = set(range(1, items + 1)) - {int(row.item_id) for row in results}
    assert missing <= held


async def test_three_workers_process_each_item_exactly_once(pg_fleet: Fleet) -> None:
    await _exactly_once(pg_fleet, workers=3, items=1200)


async def test_kill_9_only_the_items_it_held_run_twice(pg_fleet: Fleet) -> None:
    await _kill_9(pg_fleet, workers=3, items=600)


async def test_sqlite_two_workers_process_each_item_exactly_once(sqlite_fleet: Fleet) -> None:
    await _exactly_once(sqlite_fleet, workers=2, items=600)


async def test_sqlite_kill_9_only_the_items_it_held_run_twice(sqlite_fleet: Fleet) -> None:
    await _kill_9(sqlite_fleet, workers=2, items=600)


async def _owner_of(fleet: Fleet, item_id: int, workers: list[Worker]) -> Worker:
    async def runner() -> str:
        row = await fleet.scalar("SELECT worker FROM fleet_runs WHERE item_id = :i", i=item_id)
        return str(row or "")

    owner_id = await fleet.until(runner, 20, f"a worker to start item {item_id}")
    return next(w for w in workers if w.worker_id == owner_id)


async def test_a_stopped_worker_loses_its_lease_and_its_late_result_is_rejected(
    pg_fleet: Fleet,
) -> None:
    fleet = pg_fleet
    await fleet.setup()
    started = fleet.start(2, "--poll", "0.05", "--lease", "1")
    await fleet.ready(started)
    await fleet.add_items([1], duration=1.5)
    stopped = await _owner_of(fleet, 1, started)
    (other,) = [w for w in started if w is not stopped]
    stopped.signal(signal.SIGSTOP)

    async def other_recorded() -> bool:
        row = await fleet.scalar(
            "SELECT count(*) FROM novaconsole_results WHERE item_id = '1' AND worker_id = :w",
            w=other.worker_id,
        )
        return bool(row)

    await fleet.until(other_recorded, 20, "the other worker to take over and record item 1")
    stopped.signal(signal.SIGCONT)

    async def rejected() -> bool:
        return "rejected 1 stale outcomes" in stopped.err.read_text()

    await fleet.until(rejected, 20, "the resumed worker's late outcome to be rejected")
    results = await fleet.rows(
        "SELECT status, worker_id FROM novaconsole_results WHERE item_id = '1'"
    )
    assert [(r.status, r.worker_id) for r in results] == [("succeeded", other.worker_id)]
    runs = await fleet.rows("SELECT worker FROM fleet_runs WHERE item_id = 1 ORDER BY started")
    assert [r.worker for r in runs] == [stopped.worker_id, other.worker_id]
    await fleet.stop()
    assert "stopped rejected=1" in stopped.out.read_text()


async def test_an_item_longer_than_its_lease_keeps_it(pg_fleet: Fleet) -> None:
    fleet = pg_fleet
    await fleet.setup()
    lease = 0.6
    started = fleet.start(2, "--poll", "0.05", "--lease", str(lease), "--concurrency", "2")
    await fleet.ready(started)
    await fleet.add_items([1], duration=5 * lease)
    owner = await _owner_of(fleet, 1, started)
    (other,) = [w for w in started if w is not owner]
    # Quick items behind it: the other worker fetches item 1 with them all along.
    await fleet.add_items(range(2, 40), duration=0.05)

    async def item_done() -> bool:
        return bool(
            await fleet.scalar("SELECT count(*) FROM novaconsole_results WHERE item_id = '1'")
        )

    await fleet.until(item_done, 20, "the long item to be recorded")
    runs = await fleet.rows("SELECT worker, started, finished FROM fleet_runs WHERE item_id = 1")
    assert [r.worker for r in runs] == [owner.worker_id]
    long_run = runs[0]
    assert long_run.finished - long_run.started >= 5 * lease
    # The other worker was fetching (and running the quick items) while item 1 ran.
    during = await fleet.scalar(
        "SELECT count(*) FROM fleet_runs WHERE worker = :w AND started < :end",
        w=other.worker_id,
        end=long_run.finished,
    )
    assert during > 0
    result = await fleet.rows("SELECT worker_id FROM novaconsole_results WHERE item_id = '1'")
    assert [r.worker_id for r in result] == [owner.worker_id]
    await fleet.stop()


async def test_pause_and_batch_size_reach_every_worker_and_run_once_runs_once(
    pg_fleet: Fleet,
) -> None:
    fleet = pg_fleet
    poll = 0.5
    # Items slow enough that the fleet is still busy when the pause lands, however fast it
    # drains: the run-once cycle below needs items left.
    await fleet.setup(3000, duration=0.05)
    started = fleet.start(3, "--poll", str(poll), "--lease", "2", "--batch", "10")
    await fleet.ready(started)
    ids = {w.worker_id for w in started}

    async def everyone_working() -> bool:
        rows = await fleet.rows("SELECT DISTINCT worker FROM fleet_runs")
        return {r.worker for r in rows} == ids

    await fleet.until(everyone_working, 60, "every worker to run items")
    # One write: the workers follow both in the same read, so "paused" in a heartbeat also
    # means the new batch size is in force.
    await update_controls(fleet.url, paused=True, batch_sizes={"Fleet": 3})

    async def everyone_paused() -> bool:
        rows = await fleet.rows("SELECT state, in_flight FROM novaconsole_workers")
        return len(rows) == 3 and all(r.state == "paused" and r.in_flight == 0 for r in rows)

    await fleet.until(everyone_paused, 60, "every worker to report itself paused")
    # No wall-clock bound on how soon the pause is seen (a loaded machine delays it): what
    # matters is that, once every worker says it is paused, only the run-once cycle starts
    # items (checked below on the items started after this moment).
    last_start = await fleet.scalar("SELECT max(started) FROM fleet_runs")
    before = await fleet.scalar("SELECT count(*) FROM fleet_runs")

    command = await enqueue_command(fleet.url, "run_once")

    async def taken() -> str:
        return str(
            await fleet.scalar("SELECT taken_by FROM novaconsole_commands WHERE id = :i", i=command)
            or ""
        )

    runner = await fleet.until(taken, 60, "a worker to take the run-once command")

    async def cycle_ran() -> bool:
        count = await fleet.scalar("SELECT count(*) FROM fleet_runs")
        return bool(count > before)

    await fleet.until(cycle_ran, 60, "the run-once cycle to run items")
    await fleet.until(everyone_paused, 60, "the run-once cycle to finish")
    after = await fleet.rows(
        "SELECT worker, count(*) AS n FROM fleet_runs WHERE started > :t GROUP BY worker",
        t=last_start,
    )
    assert [r.worker for r in after] == [runner]
    assert 1 <= after[0].n <= 3  # one fetch, of the batch size set through the database
    said = [w for w in started if f"(command {command})" in w.err.read_text()]
    assert [w.worker_id for w in said] == [runner]
    await fleet.stop()
