"""Issue 11, point 8: a handler that blocks the event loop is named, with the fix, while it
blocks (once per blocking episode), and the end of the episode is logged with its length."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

import anyio
import pytest

from novaconsole import BackgroundProcessing
from novaconsole.settings import load_settings
from tests.faults.process_support import until

pytestmark = pytest.mark.anyio

BLOCKED = "the event loop has been blocked"
RAN_AGAIN = "the event loop ran again"


@dataclass(frozen=True)
class Item:
    id: str


class Watching(logging.Handler):
    """Collects the engine's warnings (from any thread) and signals the first blocked one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.blocked = threading.Event()
        self.ran_again = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages.append(message)
        if message.startswith(BLOCKED):
            self.blocked.set()
        if message.startswith(RAN_AGAIN):
            self.ran_again.set()


@pytest.fixture
def watching() -> Iterator[Watching]:
    sink = Watching()
    logger = logging.getLogger("novaconsole.engine")
    logger.addHandler(sink)
    try:
        yield sink
    finally:
        logger.removeHandler(sink)


class Blocking:
    """Item "calm" awaits; item "stuck\\x1b[2J" blocks the loop until the watchdog has spoken."""

    watching: Watching

    async def fetch_next(self, max_items: int) -> Sequence[Item]:
        return [Item("calm"), Item("stuck\x1b[2J")]

    async def process(self, item: Item) -> None:
        if item.id == "calm":
            await anyio.sleep(0.05)
            return
        await anyio.sleep(0.1)  # the calm item is in flight too
        deadline = time.monotonic() + 30
        while not self.watching.blocked.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)  # noqa: ASYNC251 (the mistake under test: it blocks the loop)
        for _ in range(30):  # still blocking after the warning, on changing lines
            time.sleep(0.005)  # noqa: ASYNC251
            sum(range(1000))


async def test_a_blocking_handler_is_named_with_the_fix_once_per_episode(
    watching: Watching,
) -> None:
    Blocking.watching = watching
    service = (
        BackgroundProcessing(blocked_loop_warning=timedelta(milliseconds=300))
        .add_handler(Blocking, name="Slow", max_items_per_cycle=2)
        .build()
    )
    async with service.running(poll=False):
        report = await service.run_once()
        await until(watching.ran_again.is_set, "the end of the episode logged")
    assert report.ok
    blocked = [m for m in watching.messages if m.startswith(BLOCKED)]
    assert len(blocked) == 1, watching.messages
    (warning,) = blocked
    assert "by handler Slow, item stuck\\x1b[2J (process), at " in warning
    assert "test_process_loop_watchdog.py" in warning  # where it blocks
    assert "anyio.to_thread.run_sync" in warning and "def process" in warning
    assert "calm" not in warning
    assert len([m for m in watching.messages if m.startswith(RAN_AGAIN)]) == 1


class Fetching:
    async def fetch_next(self, max_items: int) -> Sequence[Item]:
        deadline = time.monotonic() + 30
        while not Fetching.watching.blocked.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)  # noqa: ASYNC251 (the mistake under test: it blocks the loop)
        return []

    async def process(self, item: Item) -> None:
        raise AssertionError("nothing to process")

    watching: Watching


async def test_a_blocking_fetch_is_named(watching: Watching) -> None:
    Fetching.watching = watching
    service = (
        BackgroundProcessing(blocked_loop_warning=timedelta(milliseconds=300))
        .add_handler(Fetching, name="Source")
        .build()
    )
    async with service.running(poll=False):
        await service.run_once()
    (warning,) = [m for m in watching.messages if m.startswith(BLOCKED)]
    assert "by handler Source (fetch_next)" in warning


def test_the_threshold_is_a_processing_setting() -> None:
    assert load_settings(None).processing.blocked_loop_warning == timedelta(seconds=1)
    overridden = load_settings(None, overrides={"processing.blocked_loop_warning": "00:00:05"})
    assert overridden.processing.blocked_loop_warning == timedelta(seconds=5)
    built = BackgroundProcessing.from_settings(overridden)
    assert built.options.blocked_loop_warning == timedelta(seconds=5)
