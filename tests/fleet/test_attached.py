"""The attached console's service: a worker in this process, the fleet view beside it on the
same SQLite file, as ``novaconsole attach`` would see it from another process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import count
from pathlib import Path

import anyio
import pytest

from novaconsole import BackgroundProcessing
from novaconsole.console import NovaConsole
from novaconsole.console.attached import AttachedFleet
from novaconsole.console.view_models import fleet_rows, fleet_summary
from novaconsole.console.widgets.fleet_pane import FleetPane
from novaconsole.console.widgets.log_pane import LogSink
from novaconsole.engine.events import ItemFinished
from novaconsole.engine.fleet_protocol import WorkerView
from novaconsole.engine.service import ProcessingService
from novaconsole.engine.snapshot import Snapshot
from novaconsole.store import open_store

pytestmark = pytest.mark.anyio

_ids = count()


@dataclass(frozen=True)
class Item:
    id: int


class Endless:
    """A fresh item now and then: the worker always has something to do."""

    async def fetch_next(self, max_items: int) -> Sequence[Item]:
        return [Item(next(_ids)) for _ in range(min(max_items, 3))]

    async def process(self, item: Item) -> None:
        return None


async def _until(check: Callable[[], bool], what: str, within: float = 10) -> None:
    deadline = anyio.current_time() + within
    while not check():
        if anyio.current_time() > deadline:
            pytest.fail(f"no {what} within {within}s")
        await anyio.sleep(0.05)


@dataclass
class Pair:
    worker: ProcessingService
    fleet: AttachedFleet


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    processing = BackgroundProcessing(
        poll_interval=0.1, lease_duration=2, max_concurrency=2
    ).add_handler(Endless, name="Endless", max_items_per_cycle=3)
    worker = processing.build(store=open_store(url, shared=True))
    fleet = AttachedFleet(url, processing.registrations, configured_concurrency=2)
    async with worker.running(), fleet.running():
        yield Pair(worker, fleet)


async def test_the_fleet_view_shows_the_worker_its_totals_and_its_results(pair: Pair) -> None:
    events = pair.fleet.events()

    def seen() -> bool:
        snap = pair.fleet.snapshot()
        return bool(snap.workers) and snap.handlers["Endless"].succeeded >= 3

    await _until(seen, "worker and results in the fleet view")
    snap = pair.fleet.snapshot()
    assert [(w.worker_id, w.alive) for w in snap.workers] == [(pair.worker.worker_id, True)]
    assert snap.state == "running" and snap.worker_id == "attached"
    finished = [e for e in events.drain() if isinstance(e, ItemFinished)]
    assert finished and all(e.outcome.handler == "Endless" for e in finished)


async def test_keys_of_the_fleet_view_steer_the_worker(pair: Pair) -> None:
    await _until(lambda: bool(pair.fleet.snapshot().workers), "the worker's first heartbeat")
    pair.fleet.pause()
    await _until(lambda: pair.worker.snapshot().paused, "the worker to follow the pause")
    pair.fleet.set_batch_size("Endless", 2)
    pair.fleet.set_concurrency(5)
    await _until(
        lambda: (
            (
                pair.worker.snapshot().concurrency,
                pair.worker.snapshot().handlers["Endless"].batch_size,
            )
            == (5, 2)
        ),
        "the worker to follow concurrency and batch size",
    )
    cycles = pair.worker.snapshot().cycles
    report = await pair.fleet.run_once()
    assert "command" in pair.fleet.describe_run_once(report)
    await _until(lambda: pair.worker.snapshot().cycles > cycles, "the worker to run the cycle")
    assert pair.worker.snapshot().paused
    with pytest.raises(KeyError, match="no handler named 'Nope'"):
        pair.fleet.pause_handler("Nope")
    with pytest.raises(ValueError, match="at least 1"):
        pair.fleet.set_concurrency(0)


async def test_pause_key_in_the_attached_console_pauses_the_fleet(pair: Pair) -> None:
    await _until(lambda: bool(pair.fleet.snapshot().workers), "the worker's first heartbeat")
    app = NovaConsole(pair.fleet, log_sink=LogSink())
    async with app.run_test(size=(160, 40)) as pilot:
        pane = app.query_one(FleetPane)
        await _until(lambda: bool(pane.rows), "the worker in the fleet pane")
        assert pane.display and pair.worker.worker_id in pane.rows[0]
        assert "running" in pane.rows[0]
        await pilot.press("p", "enter")  # the pause dialog: no reason, no expiry
        await _until(lambda: pair.worker.snapshot().paused, "the worker to pause")
        await pilot.press("p")
        await _until(lambda: not pair.worker.snapshot().paused, "the worker to resume")


def _view(worker_id: str, alive: bool) -> WorkerView:
    now = datetime.now(UTC)
    return WorkerView(worker_id, "running", 0, 0, now, now, alive)


def test_the_status_bar_names_the_fleet_only_when_there_is_one() -> None:
    base = Snapshot(
        state="running",
        paused=False,
        concurrency=1,
        configured_concurrency=1,
        queue_depth=0,
        queue_capacity=1,
        in_flight=0,
        cycles=0,
        handlers={},
        worker_id="a:1",
    )
    assert fleet_summary(base) == ""
    assert fleet_summary(replace(base, workers=(_view("a:1", True),))) == ""
    shared = replace(base, workers=(_view("a:1", True), _view("b:2", False), _view("c:3", True)))
    assert fleet_summary(shared) == "2/3 alive"


def test_fleet_rows_list_the_alive_first_and_mark_this_worker() -> None:
    now = datetime.now(UTC)
    snapshot = Snapshot(
        state="running",
        paused=False,
        concurrency=1,
        configured_concurrency=1,
        queue_depth=0,
        queue_capacity=1,
        in_flight=0,
        cycles=0,
        handlers={},
        worker_id="b:2",
        workers=(_view("a:1", False), _view("b:2", True)),
    )
    rows = fleet_rows(snapshot, now)
    assert rows[0].startswith("*b:2") and "running" in rows[0]
    assert rows[1].startswith(" a:1") and "dead" in rows[1]
