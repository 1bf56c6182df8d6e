"""FleetView: the fleet as ``novaconsole attach`` reads and steers it, on a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import anyio
import pytest

from novaconsole.engine.operator import PauseInfo
from novaconsole.engine.outcomes import OutcomeStatus
from novaconsole.engine.persistence import Controls, ItemState
from novaconsole.store import SqlStore, open_store
from novaconsole.store.fleet_view import FleetView
from novaconsole.store.operator import OperatorClient
from tests.store.support import outcome

pytestmark = pytest.mark.anyio


@pytest.fixture
async def view(db_url: str) -> AsyncIterator[FleetView]:
    opened = FleetView(db_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_totals_carry_the_last_error_retries_dead_items_and_held_claims(
    db_url: str, view: FleetView
) -> None:
    worker = open_store(db_url, shared=True)
    await worker.open()
    try:
        worker.record(
            [
                outcome(1, status=OutcomeStatus.FAILED, error="first"),
                outcome(2, status=OutcomeStatus.TIMED_OUT, error="second"),
                outcome(3),
                outcome(4, handler="Other", status=OutcomeStatus.SKIPPED),
            ]
        )
        worker.set_item_state("Ping", "5", ItemState(attempts=1))
        worker.set_item_state("Ping", "6", ItemState(attempts=3, dead=True))
        await worker.flush()
        assert worker.coordinator is not None
        await worker.coordinator.claim("w:1", "Ping", ["7", "8"], lease=60)
        reading = await view.read(totals=True)
    finally:
        await worker.close()

    assert reading.handlers is not None
    ping, other = reading.handlers["Ping"], reading.handlers["Other"]
    assert (ping.succeeded, ping.failed, ping.skipped) == (1, 2, 0)
    assert (ping.last_error, ping.failing) == ("second", False)  # the latest result succeeded
    assert (ping.retrying, ping.dead, ping.in_flight) == (1, 1, 2)
    assert (other.skipped, other.last_error, other.in_flight) == (1, None, 0)
    assert ping.last_finished_at is not None


async def test_reads_return_the_latest_results_then_only_new_ones(
    store: SqlStore, view: FleetView
) -> None:
    store.record([outcome(i) for i in range(5)])
    await store.flush()
    first = await view.read(backfill=3)
    store.record([outcome(5, status=OutcomeStatus.FAILED, error="x")])
    await store.flush()
    second = await view.read()
    assert [o.item_id for o in first.outcomes] == ["2", "3", "4"]
    assert [(o.item_id, o.error) for o in second.outcomes] == [("5", "x")]
    assert first.handlers is None


async def test_the_view_reads_controls_the_operator_client_wrote_on_its_engine(
    store: SqlStore, view: FleetView, db_url: str
) -> None:
    """The view writes nothing: the attached console writes through the OperatorClient on
    the view's engine (audited), and the view reads back who paused, why and until when."""
    client = OperatorClient(db_url, engine=view.engine)
    info = PauseInfo(by="console@ops1", reason="db maintenance")
    entries = await client.change(
        Controls(paused=True, pause=info, batch_sizes={"Ping": 4}), "console@ops1"
    )
    assert [(e.what, e.by, e.detail) for e in entries] == [
        ("pause", "console@ops1", "db maintenance"),
        ("batch_size", "console@ops1", None),
    ]
    loaded = await store.load_controls()
    assert (loaded.paused, loaded.batch_sizes) == (True, {"Ping": 4})
    read = (await view.read()).controls
    assert read.paused is True and read.pause is not None
    assert (read.pause.by, read.pause.reason) == ("console@ops1", "db maintenance")
    # A pause past its expiry reads as resumed, as every worker takes it.
    await client.change(
        Controls(handler_paused={"Ping": True}, handler_pauses={"Ping": info}),
        "console@ops1",
        pause_for=timedelta(milliseconds=1),
    )
    await anyio.sleep(0.05)
    assert (await view.read()).controls.handler_paused["Ping"] is False
    await client.close()  # shares the view's engine: leaves it open
    assert (await view.read()).controls.paused is True
    assert [e.what for e in await client.audit()] == ["pause", "batch_size", "pause"]
