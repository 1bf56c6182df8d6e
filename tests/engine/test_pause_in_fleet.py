"""A paused worker of a fleet does not sit on items it queued but has not started: it hands
them back (claims released), so that a run-once on another worker can take them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from novaconsole import HandlerContext, ProcessingService
from novaconsole.engine.outcomes import OutcomeStatus
from novaconsole.store import open_store
from tests.engine.support import Item, processing

pytestmark = pytest.mark.anyio


async def test_a_run_once_elsewhere_takes_what_a_paused_worker_had_queued(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fleet.db'}"
    pending = list(range(1, 9))
    first_started, gate = anyio.Event(), anyio.Event()

    class Head:
        """Every worker reads the same head of the pending items (no ctx.unclaimed())."""

        def __init__(self, ctx: HandlerContext) -> None:
            self.ctx = ctx

        async def fetch_next(self, max_items: int) -> Sequence[Item]:
            return [Item(i) for i in pending[:max_items]]

        async def process(self, item: Item) -> None:
            if item.id == 1:
                first_started.set()
                await gate.wait()
            pending.remove(item.id)

    def worker(name: str) -> ProcessingService:
        return (
            processing(max_concurrency=1, lease_duration=30)
            .add_handler(Head, name="Head", max_items_per_cycle=4)
            .build(store=open_store(url, shared=True), worker_id=name)
        )

    a, b = worker("a"), worker("b")
    async with a.running(), b.running(poll=False):
        with anyio.fail_after(10):  # hang guards, not measurements
            await first_started.wait()  # a full batch: 1 in flight at a, 2 to 4 queued there
            a.pause()
            report = await b.run_once()
            while not report.outcomes:  # a releases its claims just after the pause
                await anyio.sleep(0.02)
                report = await b.run_once()
        assert {(o.item_id, o.status) for o in report.outcomes} == {
            (2, OutcomeStatus.SUCCEEDED),
            (3, OutcomeStatus.SUCCEEDED),
            (4, OutcomeStatus.SUCCEEDED),
        }, "b ran what paused a had queued (1 is still a's, in flight)"
        gate.set()
