"""Issue 11, point 10 in process: ``cancel_drain()`` cuts a drain short, and the drain's log
lines name the items it waits for and cancels (a bounded list)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import pytest

from novaconsole import BackgroundProcessing, OutcomeStatus
from novaconsole.engine.persistence import MemoryStateStore
from novaconsole.engine.service import ProcessingService
from tests.faults.process_support import until

pytestmark = pytest.mark.anyio

FOREVER = 3600  # a grace no test waits for: only cancel_drain() can end these drains


@dataclass(frozen=True)
class Item:
    id: int


def hung(count: int) -> type:
    class Hung:
        async def fetch_next(self, max_items: int) -> Sequence[Item]:
            return [Item(i) for i in range(1, count + 1)]

        async def process(self, item: Item) -> None:
            await anyio.sleep_forever()

    return Hung


async def drain_and_force(service: ProcessingService, in_flight: int) -> bool:
    """Run until ``in_flight`` items hang, start the drain, then cancel it; True if it was."""
    forced = False
    with anyio.fail_after(60):  # the grace is an hour: only the force ends the drain
        async with anyio.create_task_group() as group, service.running():
            group.start_soon(service.run_once)
            await until(lambda: service.snapshot().in_flight == in_flight, "items in flight")
            group.start_soon(service.drain)
            await until(lambda: service.snapshot().state == "draining", "draining")
            await anyio.lowlevel.checkpoint()  # the drain logs and enters its grace
            forced = service.cancel_drain()
    return forced


async def test_cancel_drain_cancels_what_is_left_and_names_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStateStore()
    service = (
        BackgroundProcessing(shutdown_grace=FOREVER, max_concurrency=4)
        .add_handler(hung(2), name="Hung", max_items_per_cycle=2)
        .build(store=store)
    )
    with caplog.at_level(logging.INFO, logger="novaconsole.engine"):
        assert await drain_and_force(service, in_flight=2)
    assert sorted((o.item_id, o.status) for o in store.outcomes) == [
        (1, OutcomeStatus.CANCELLED),
        (2, OutcomeStatus.CANCELLED),
    ]
    messages = [r.getMessage() for r in caplog.records]
    assert "draining: waiting up to 3600s for 2 items (Hung#1, Hung#2)" in messages
    assert "force quit: cancelling 2 items (Hung#1, Hung#2)" in messages


async def test_the_drain_names_at_most_ten_items(caplog: pytest.LogCaptureFixture) -> None:
    service = (
        BackgroundProcessing(shutdown_grace=FOREVER, max_concurrency=15)
        .add_handler(hung(15), name="H", max_items_per_cycle=15)
        .build()
    )
    with caplog.at_level(logging.INFO, logger="novaconsole.engine"):
        await drain_and_force(service, in_flight=15)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("force quit")]
    named = ", ".join(f"H#{i}" for i in sorted(range(1, 16), key=str)[:10])
    assert line == f"force quit: cancelling 15 items ({named}, and 5 more)"


async def test_cancel_drain_before_the_drain_leaves_it_no_grace() -> None:
    service = (
        BackgroundProcessing(shutdown_grace=FOREVER)
        .add_handler(hung(1), name="Hung", max_items_per_cycle=1)
        .build()
    )
    with anyio.fail_after(60):
        async with anyio.create_task_group() as group, service.running():
            group.start_soon(service.run_once)
            await until(lambda: service.snapshot().in_flight == 1, "the item in flight")
            assert service.cancel_drain() is False  # no drain yet: the coming one is forced
    assert [o.status for o in service.recent_outcomes()] == [OutcomeStatus.CANCELLED]
