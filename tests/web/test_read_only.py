"""``serve --read-only``: the console shows everything, offers no change, and the service
refuses every change even when something calls it anyway."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from novaconsole.console import NovaConsole
from novaconsole.console.commands import console_commands, handler_commands
from novaconsole.console.widgets.status_bar import StatusBar
from novaconsole.web.read_only import ReadOnlyError, ReadOnlyService
from tests.console.support import Source, build_service

pytestmark = pytest.mark.anyio

CHANGING = {
    "pause_all",
    "resume_all",
    "pause_handler",
    "resume_handler",
    "run_once",
    "batch_up",
    "batch_down",
    "concurrency_up",
    "concurrency_down",
}

CALLS: list[tuple[str, Callable[[ReadOnlyService], Any]]] = [
    ("pause", lambda s: s.pause()),
    ("resume", lambda s: s.resume()),
    ("pause_handler", lambda s: s.pause_handler("A")),
    ("resume_handler", lambda s: s.resume_handler("A")),
    ("set_batch_size", lambda s: s.set_batch_size("A", 3)),
    ("set_concurrency", lambda s: s.set_concurrency(1)),
    ("run_once", lambda s: s.run_once()),
    ("retry_item", lambda s: s.retry_item("A", 1)),
]


@pytest.mark.parametrize(("name", "call"), CALLS, ids=[name for name, _ in CALLS])
async def test_every_control_call_is_refused(
    name: str, call: Callable[[ReadOnlyService], Any]
) -> None:
    source = Source([1, 2])
    service = build_service({"A": source})
    read_only = ReadOnlyService(service)
    async with read_only.running():
        before = service.snapshot()
        with pytest.raises(ReadOnlyError, match="read-only"):
            result = call(read_only)
            if isinstance(result, Awaitable):
                await result
        after = service.snapshot()
    assert (after.paused, after.concurrency, after.cycles) == (
        before.paused,
        before.concurrency,
        before.cycles,
    )
    assert after.handlers["A"] == before.handlers["A"]
    assert source.fetch_sizes == []  # no cycle ran


async def test_the_console_offers_no_change_and_says_read_only() -> None:
    service = build_service({"A": Source([1])})
    async with service.running():
        app = NovaConsole(ReadOnlyService(service), refresh_interval=None)
        async with app.run_test() as pilot:
            enabled = {b.binding.action for b in app.screen.active_bindings.values() if b.enabled}
            assert not enabled & CHANGING
            assert {"help", "quit", "cycle_filter"} <= enabled
            assert "read-only" in str(app.query_one(StatusBar).render())
            for key in ("p", "space", "plus", "right_square_bracket", "r"):
                await pilot.press(key)
            await pilot.pause()
            snapshot = service.snapshot()
            assert not snapshot.paused and not snapshot.handlers["A"].paused
            assert snapshot.handlers["A"].batch_size == 10
            assert snapshot.concurrency == 4 and snapshot.cycles == 0
            titles = [c.title for c in (*console_commands(app), *handler_commands(app))]
            assert "Show results of A" in titles
            assert not [t for t in titles if t.startswith(("Pause", "Resume", "Run", "Batch"))]
            assert not [t for t in titles if t.startswith(("Concurrency", "Retry"))]


async def test_a_writable_console_offers_them() -> None:
    """The control for the test above: the same console on the service itself."""
    service = build_service({"A": Source([1])})
    async with service.running():
        app = NovaConsole(service, refresh_interval=None)
        async with app.run_test() as pilot:
            await pilot.pause()
            enabled = {b.binding.action for b in app.screen.active_bindings.values() if b.enabled}
            assert {"pause_all", "pause_handler", "run_once", "concurrency_up"} <= enabled
            assert "read-only" not in str(app.query_one(StatusBar).render())
