"""``kill -9`` in the middle of a batch, then a restart, on a real SQLite file: nothing is
lost, only items in flight at the kill run twice, and every item done at its source has its
result (issue 11, point 5: the outcome must be atomic with the item's ``ctx.write()``)."""

from __future__ import annotations

import signal

import pytest

from tests.faults.process_support import LedgerProject, exited, ledger, running

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # real processes

__all__ = ["ledger"]  # the fixture

ITEMS = 3000


async def test_kill_9_mid_batch_then_restart_loses_nothing(ledger: LedgerProject) -> None:
    ledger.setup(ITEMS, processing="max_concurrency = 16", options="delay = 0.002")
    first = ledger.start()
    await running(first, "a busy first run", lambda: len(ledger.done()) >= ITEMS // 4)
    first.process.send_signal(signal.SIGKILL)
    assert await exited(first) == -signal.SIGKILL
    assert ledger.query("PRAGMA integrity_check") == [("ok",)]
    done_at_kill = ledger.done()
    started_at_kill = set(ledger.executions())
    assert len(done_at_kill) < ITEMS, "the kill came too late to test anything"

    second = ledger.start()
    await running(second, "every item done", lambda: len(ledger.done()) == ITEMS)
    second.process.send_signal(signal.SIGTERM)  # the drain flushes every outcome
    assert await exited(second) == 0, second.output()

    executions = ledger.executions()
    assert set(executions) == set(range(1, ITEMS + 1)), "every item ran"
    twice = {item for item, count in executions.items() if count > 1}
    in_flight = started_at_kill - done_at_kill
    assert twice <= in_flight, f"ran twice but not in flight at the kill: {twice - in_flight}"
    assert max(executions.values()) <= 2
    statuses = {status for _, status in ledger.results()}
    assert statuses == {"succeeded"}, statuses
    recorded = [int(item_id) for item_id, _ in ledger.results("succeeded")]
    assert len(recorded) == len(set(recorded)), "an item's result is recorded once"
    unrecorded = sorted(set(range(1, ITEMS + 1)) - set(recorded))
    assert unrecorded == [], f"{len(unrecorded)} items done at their source without a result"
