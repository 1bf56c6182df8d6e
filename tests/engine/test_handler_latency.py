"""Each handler's own latency window: kept per handler, bounded, by time, in the snapshot."""

from __future__ import annotations

import anyio
import pytest

from novaconsole.engine.reporting import HandlerLatency
from tests.engine.support import Item, Source, processing


def test_window_keeps_the_last_samples_of_its_time_window() -> None:
    window = HandlerLatency(keep=4, window=10.0)
    for at, seconds in [(100.0, 9.0), (101.0, 0.1), (102.0, 0.2), (103.0, 0.3), (104.0, 0.4)]:
        window.add(seconds, at)
    assert len(window.samples) == 4, "bounded: the oldest (9 s) fell out"
    assert window.recent(104.0) == [0.1, 0.2, 0.3, 0.4]
    assert window.recent(112.5) == [0.3, 0.4], "older than 10 s before now: not counted"
    assert window.recent(200.0) == [], "nothing finished lately: no latency, not an old one"
    latency, count = window.summary(104.0)
    assert count == 4
    assert (latency.p50, latency.p95) == (0.3, 0.4)
    empty, none = HandlerLatency().summary(0.0)
    assert none == 0 and empty.p50 == empty.p95 == 0.0


@pytest.mark.anyio
async def test_snapshot_gives_each_handler_its_own_latency() -> None:
    async def slow(item: Item, attempt: int) -> None:
        await anyio.sleep(0.2)

    fast = Source(ids=[1, 2, 3, 4, 5])
    sleepy = Source(ids=[10, 11, 12], behaviour=slow)
    broken = Source(ids=[20, 21], fail={20, 21})
    service = (
        processing(max_concurrency=8)
        .add_handler(fast.handler(), name="Fast")
        .add_handler(sleepy.handler(), name="Slow")
        .add_handler(broken.handler(), name="Broken", max_attempts=1)
        .add_handler(Source(ids=[]).handler(), name="Idle")
        .build()
    )
    async with service.running(poll=False):
        before = service.snapshot().handlers["Fast"]
        assert before.latency_samples == 0 and before.latency.p95 == 0.0
        await service.run_once()
        handlers = service.snapshot().handlers
    assert handlers["Fast"].latency_samples == 5
    assert handlers["Slow"].latency_samples == 3
    assert handlers["Broken"].latency_samples == 2, "failures take time too"
    assert handlers["Idle"].latency_samples == 0
    assert handlers["Slow"].latency.p50 >= 0.2, "a sleep never returns early"
    assert handlers["Fast"].latency.p50 < handlers["Slow"].latency.p50, "not one shared window"
