"""run_headless in process on a service without a database (state in memory)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest

from novaconsole import BackgroundProcessing
from novaconsole.headless import Tally, print_summary, run_headless


@dataclass
class Item:
    id: int


class Numbers:
    """Items 0..4; odd ones fail."""

    async def fetch_next(self, max_items: int) -> list[Item]:
        return [Item(i) for i in range(min(5, max_items))]

    async def process(self, item: Item) -> None:
        if item.id % 2:
            raise ValueError(f"odd {item.id}")


class Broken:
    async def fetch_next(self, max_items: int) -> list[Item]:
        raise OSError("disk gone")

    async def process(self, item: Item) -> None:
        raise AssertionError("never fetched")


def build(*factories: type, max_attempts: int = 1):
    processing = BackgroundProcessing()
    for factory in factories:
        processing.add_handler(factory, name=factory.__name__, max_attempts=max_attempts)
    return processing.build()


@pytest.mark.anyio
async def test_once_reports_failures_with_status_1():
    out = io.StringIO()
    assert await run_headless(build(Numbers), once=True, out=out) == 1
    text = out.getvalue()
    assert "one cycle: 5 items" in text
    assert "FAILED" in text


@pytest.mark.anyio
async def test_once_is_0_when_all_succeed():
    class Evens(Numbers):
        async def fetch_next(self, max_items: int) -> list[Item]:
            return [Item(i) for i in (0, 2, 4)]

    out = io.StringIO()
    assert await run_headless(build(Evens), once=True, out=out) == 0
    assert "one cycle: 3 items" in out.getvalue()


@pytest.mark.anyio
async def test_fetch_error_fails_the_cycle_and_is_shown():
    out = io.StringIO()
    assert await run_headless(build(Broken), once=True, out=out) == 1
    assert "fetch from Broken failed: OSError: disk gone" in out.getvalue()


@pytest.mark.anyio
async def test_once_does_not_leave_the_service_paused():
    service = build(Numbers)
    await run_headless(service, once=True, out=io.StringIO())
    controls = await service.store.load_controls()
    assert not controls.paused
    assert not service.snapshot().paused


def test_summary_has_a_row_per_handler_and_a_column_per_status():
    tally = Tally(["A", "B"])
    out = io.StringIO()
    print_summary(tally, out, fetched={"A": 2}, fetch_errors={"B": "boom"})
    text = out.getvalue()
    header = next(line for line in text.splitlines() if "succeeded" in line)
    for title in ("handler", "fetched", "succeeded", "failed", "timed out", "skipped", "cancelled"):
        assert title in header
    assert "fetch from B failed: boom" in text
