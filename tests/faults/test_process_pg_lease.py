"""Two workers on one PostgreSQL database; one is stopped (SIGSTOP) past its lease while it
holds items: the other takes them over, and the stopped one's late results are not recorded."""

from __future__ import annotations

import re
import signal

import pytest

from tests.fleet.conftest import Fleet, pg_fleet

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

__all__ = ["pg_fleet"]  # the fixture

ITEMS = 16
LEASE = 1.0


async def test_a_stopped_worker_loses_every_held_item_to_the_other(pg_fleet: Fleet) -> None:
    fleet = pg_fleet
    await fleet.setup()
    workers = fleet.start(2, "--poll", "0.05", "--lease", str(LEASE), "--concurrency", "4")
    await fleet.ready(workers, within=60)  # a loaded machine: starting takes seconds
    await fleet.add_items(range(1, ITEMS + 1), duration=3 * LEASE)

    async def busy_worker() -> str:
        row = await fleet.rows(
            "SELECT worker FROM fleet_runs WHERE finished IS NULL "
            "GROUP BY worker HAVING count(*) >= 2 LIMIT 1"
        )
        return str(row[0].worker) if row else ""

    stopped_id = await fleet.until(busy_worker, 30, "a worker with two items in hand")
    stopped = next(w for w in workers if w.worker_id == stopped_id)
    (other,) = [w for w in workers if w is not stopped]
    stopped.signal(signal.SIGSTOP)
    held = {
        int(row.item_id)
        for row in await fleet.rows(
            "SELECT item_id FROM fleet_runs WHERE worker = :w AND finished IS NULL", w=stopped_id
        )
    }

    async def all_recorded() -> bool:
        left = await fleet.scalar("SELECT count(*) FROM fleet_items WHERE NOT done")
        recorded = await fleet.scalar("SELECT count(DISTINCT item_id) FROM novaconsole_results")
        return bool(left == 0 and recorded == ITEMS)

    # Stopped inside one of the store's transactions, it holds row locks on the claims until
    # the server ends its session (idle_in_transaction_session_timeout, 10 s): then too.
    await fleet.until(all_recorded, 90, "the other worker to take over")
    stopped.signal(signal.SIGCONT)  # its held items finish late, past their lease

    async def told() -> bool:
        said = stopped.err.read_text()
        return all(
            re.search(rf"item {item}: lease lost|rejected .*Fleet item {item} ", said)
            for item in held
        )

    await fleet.until(told, 30, "the resumed worker to say each held item is no longer its own")
    await fleet.stop()
    assert all(w.process.returncode == 0 for w in workers), [w.output()[-2000:] for w in workers]

    results = await fleet.rows("SELECT item_id, status, worker_id FROM novaconsole_results")
    assert sorted(int(r.item_id) for r in results) == list(range(1, ITEMS + 1)), "one each"
    assert {r.status for r in results} == {"succeeded"}
    by_item = {int(r.item_id): r.worker_id for r in results}
    assert {by_item[item] for item in held} == {other.worker_id}, "the late results rejected"
