"""``NovaConsole(service)`` hosts its service: started on mount, drained and stopped on quit;
a service someone else runs is left running."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from novaconsole.console import NovaConsole
from novaconsole.console.widgets.status_bar import StatusBar
from tests.console.support import (
    FixedService,
    Source,
    build_service,
    poll_until,
    settle,
    wait_until,
)

pytestmark = pytest.mark.anyio


async def test_run_test_starts_the_service_and_r_runs_a_cycle() -> None:
    source = Source([1, 2])
    service = build_service({"A": source})
    app = NovaConsole(service, refresh_interval=None)
    async with app.run_test() as pilot:
        assert app.hosting
        assert service.is_running
        await pilot.press("r")
        await wait_until(pilot, lambda: source.done == [1, 2])
        await settle(app)
        app.refresh_view()
        assert [o.item_id for o in app.results.rows] == [2, 1]
    assert service.snapshot().state == "stopped", "leaving the app stops what it hosts"


async def test_q_drains_in_flight_items_then_stops_the_service_and_exits() -> None:
    gate = anyio.Event()
    source = Source([1, 2], gate=gate)
    service = build_service({"A": source})
    app = NovaConsole(service, refresh_interval=None)
    async with app.run_test() as pilot:
        await pilot.press("r")
        await wait_until(pilot, lambda: service.snapshot().in_flight == 2)
        await pilot.press("q")
        assert "DRAINING" in str(app.query_one(StatusBar).render())
        await wait_until(pilot, lambda: service.snapshot().state == "draining")
        await pilot.pause()
        assert app.return_code is None, "the app left before its items finished"
        gate.set()
        await poll_until(lambda: app.return_code is not None)
    assert app.return_code == 0
    assert sorted(source.done) == [1, 2]
    assert service.snapshot().state == "stopped"
    assert service.snapshot().handlers["A"].succeeded == 2


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
async def test_a_service_someone_else_runs_is_left_running_on_quit() -> None:
    service = build_service({"A": Source([])})
    async with service.running():
        app = NovaConsole(service, refresh_interval=None)
        async with app.run_test() as pilot:
            assert not app.hosting
            await pilot.press("q")
            await poll_until(lambda: app.return_code is not None)
        assert app.return_code == 0
        assert service.snapshot().state == "running"


async def test_a_service_that_cannot_start_ends_the_app_with_status_2() -> None:
    service = build_service({"A": Source([])})

    async def broken_open(*args: Any) -> None:
        raise OSError("disk on fire")

    service.store.open = broken_open  # type: ignore[method-assign]
    app = NovaConsole(service, refresh_interval=None)
    async with app.run_test():
        await poll_until(lambda: app.return_code is not None)
    assert app.return_code == 2
    assert not service.is_running


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
def test_run_hosts_the_service_as_a_subprocess_command_would() -> None:
    """``NovaConsole(service).run()`` outside any loop: starts, serves, stops."""
    source = Source([1])
    service = build_service({"A": source})
    app = NovaConsole(service, refresh_interval=0.05)

    async def drive(pilot: Any) -> None:
        await pilot.press("r")
        await wait_until(pilot, lambda: source.done == [1])
        await pilot.press("q")

    app.run(headless=True, auto_pilot=drive)
    assert app.return_code == 0
    assert service.snapshot().state == "stopped"


@pytest.mark.parametrize(
    "again", ["q", pytest.param("ctrl+c", marks=pytest.mark.slow)]
)  # ctrl+c takes the same path as q: the full run checks it
async def test_q_again_while_draining_cancels_what_is_in_flight_when_the_service_can(
    again: str,
) -> None:
    """A second q (or ctrl+c) calls the service's ``cancel_drain()``: the drain ends at once
    and the app exits."""

    class StuckDrain(FixedService):
        def __init__(self) -> None:
            super().__init__()
            self.release = anyio.Event()
            self.cancelled = 0

        @asynccontextmanager
        async def running(self) -> AsyncIterator[StuckDrain]:
            try:
                yield self
            finally:
                await self.drain()
                await self.release.wait()  # in-flight items that would take the whole grace

        def cancel_drain(self) -> bool:
            self.cancelled += 1
            self.release.set()
            return True

    service = StuckDrain()
    app = NovaConsole(service, refresh_interval=None, host=True)
    async with app.run_test() as pilot:
        assert app.hosting
        await pilot.press("q")
        await pilot.pause()
        assert app.return_code is None, "still draining"
        await pilot.press(again)
        await poll_until(lambda: app.return_code is not None)
    assert service.cancelled == 1
    assert app.return_code == 0


async def test_a_hosted_service_that_fails_while_running_ends_the_app_with_one_line(
    capfd: pytest.CaptureFixture[str],
) -> None:
    class Crashing(FixedService):
        def __init__(self) -> None:
            super().__init__()
            self.crash = anyio.Event()

        @asynccontextmanager
        async def running(self) -> AsyncIterator[Crashing]:
            async def fail() -> None:
                await self.crash.wait()
                raise RuntimeError("database went away")

            async with anyio.create_task_group() as group:
                group.start_soon(fail)
                yield self

    service = Crashing()
    app = NovaConsole(service, refresh_interval=None, host=True)
    async with app.run_test():
        assert app.hosting
        service.crash.set()
        await poll_until(lambda: app.return_code is not None)
    assert app.return_code == 1
    printed = "".join(capfd.readouterr())
    assert "novaconsole: the service stopped: RuntimeError: database went away" in printed
    assert "Traceback" not in printed


@pytest.mark.parametrize(
    "again", ["q", pytest.param("ctrl+c", marks=pytest.mark.slow)]
)  # ctrl+c takes the same path as q: the full run checks it
async def test_force_quit_on_a_real_service_records_in_flight_items_cancelled(again: str) -> None:
    """q, then q (or ctrl+c) again while two items hang: the app exits without waiting for
    them, both are recorded cancelled, none is done."""
    gate = anyio.Event()  # never set: the items would take the whole grace
    source = Source([1, 2], gate=gate)
    service = build_service({"A": source})
    app = NovaConsole(service, refresh_interval=None)
    async with app.run_test() as pilot:
        await pilot.press("r")
        await wait_until(pilot, lambda: service.snapshot().in_flight == 2)
        await pilot.press("q")
        await wait_until(pilot, lambda: service.snapshot().state == "draining")
        assert app.return_code is None
        await pilot.press(again)
        await poll_until(lambda: app.return_code is not None)
    assert app.return_code == 0
    assert source.done == []
    outcomes = service.recent_outcomes()
    assert sorted(o.item_id for o in outcomes if o.status.value == "cancelled") == [1, 2]
    assert service.snapshot().state == "stopped"
