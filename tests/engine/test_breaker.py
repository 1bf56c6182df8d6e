"""The circuit breaker per handler: trips, rests, one trial, closes or opens again for longer;
reset by hand; retries held while tripped; configuration."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import count
from pathlib import Path
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import Column, Integer, MetaData, Table

from novaconsole import GiveUp, HandlerContext, RetryPolicy
from novaconsole.engine.events import (
    BreakerClosed,
    BreakerTripped,
    Event,
    FetchCompleted,
    ItemFinished,
)
from novaconsole.errors import ConfigError
from tests.engine.support import Item, next_event, processing
from tests.postgres import throwaway_database

pytestmark = pytest.mark.anyio


@dataclass
class Feed:
    """New items on every fetch; ``failing`` decides whether they (or the fetch) fail."""

    failing: bool = True
    fetch_failing: bool = False
    limit: int | None = None
    """How many items the source has (None: no end)."""
    fetch_sizes: list[int] = field(default_factory=list)
    processed: list[int] = field(default_factory=list)
    ids: count[int] = field(default_factory=count)

    def handler(self) -> type:
        feed = self

        class FeedHandler:
            async def fetch_next(self, max_items: int) -> Sequence[Item]:
                feed.fetch_sizes.append(max_items)
                if feed.fetch_failing:
                    raise ConnectionError("source down")
                items = [Item(next(feed.ids)) for _ in range(max_items)]
                return [i for i in items if feed.limit is None or i.id < feed.limit]

            async def process(self, item: Item) -> None:
                feed.processed.append(item.id)
                if feed.failing:
                    raise RuntimeError(f"boom on {item.id}")

        return FeedHandler


def build(feed: Feed, **handler: Any) -> Any:
    handler.setdefault("breaker_threshold", 3)
    handler.setdefault("max_items_per_cycle", 2)
    return (
        processing(
            poll_interval=0.01,
            max_concurrency=1,
            retry=RetryPolicy(max_attempts=1),
            breaker_cooldown=handler.pop("cooldown", 60),
            breaker_max_cooldown=handler.pop("max_cooldown", 600),
        )
        .add_handler(feed.handler(), name="A", **handler)
        .build()
    )


def with_retries(
    handler: type,
    *,
    attempts: int,
    delay: float,
    threshold: int,
    batch: int,
    concurrency: int = 1,
    cooldown: float = 60,
) -> Any:
    """A service polling ``handler`` every 10 ms whose items retry after ``delay`` seconds
    exactly (no jitter), up to ``attempts`` in all."""
    return (
        processing(
            poll_interval=0.01,
            max_concurrency=concurrency,
            retry=RetryPolicy(max_attempts=attempts, base_delay=delay, max_delay=delay, jitter=0),
            breaker_cooldown=cooldown,
        )
        .add_handler(handler, name="A", max_items_per_cycle=batch, breaker_threshold=threshold)
        .build()
    )


def tripped(event: Event) -> bool:
    return isinstance(event, BreakerTripped)


def closed(event: Event) -> bool:
    return isinstance(event, BreakerClosed)


async def test_trips_after_failures_in_a_row_and_stops_fetching() -> None:
    feed = Feed()
    service = build(feed)
    events = service.events()
    async with service.running():
        event = await next_event(events, tripped)
        assert isinstance(event, BreakerTripped)
        assert event.handler == "A"
        assert event.failures == 3
        assert event.reason.startswith("breaker: 3 failures in a row: RuntimeError: boom on ")
        view = service.snapshot().handlers["A"]
        assert view.state == "tripped"
        assert view.tripped and view.breaker_reason == event.reason
        assert view.breaker_retry_in is not None and 0 < view.breaker_retry_in <= 60
        fetches, processed = len(feed.fetch_sizes), len(feed.processed)
        await anyio.sleep(0.1)  # ten poll intervals: a tripped handler fetches nothing
        assert len(feed.fetch_sizes) == fetches
        assert len(feed.processed) <= processed + 1  # at most the item already in hand


async def test_failed_fetches_trip_it_too() -> None:
    feed = Feed(fetch_failing=True)
    service = build(feed, breaker_threshold=2)
    events = service.events()
    async with service.running():
        event = await next_event(events, tripped)
        assert isinstance(event, BreakerTripped)
        assert event.reason == "breaker: 2 failures in a row: ConnectionError: source down"


async def test_half_opens_after_the_cooldown_and_a_good_trial_closes_it() -> None:
    feed = Feed()
    # One batch of three fails three in a row: nothing is left queued, so the trial fetches.
    service = build(feed, cooldown=0.05, max_items_per_cycle=3)
    events = service.events()
    async with service.running():
        await next_event(events, tripped)
        feed.failing = False
        fetches = len(feed.fetch_sizes)
        event = await next_event(events, closed)
        assert isinstance(event, BreakerClosed)
        assert event.why == "the trial item succeeded"
        assert feed.fetch_sizes[fetches] == 1  # the trial asks for one item
        assert service.snapshot().handlers["A"].state == "active"
        # Closed: full batches again.
        await next_event(events, lambda e: isinstance(e, FetchCompleted) and e.count == 3)


async def test_a_failed_trial_opens_it_again_for_twice_as_long_up_to_the_max() -> None:
    feed = Feed()
    service = build(feed, cooldown=0.05, max_cooldown=0.15)
    events = service.events()
    async with service.running():
        cooldowns = []
        reasons = []
        for _ in range(4):
            event = await next_event(events, tripped)
            assert isinstance(event, BreakerTripped)
            cooldowns.append(event.cooldown)
            reasons.append(event.reason)
    assert cooldowns == [0.05, 0.1, 0.15, 0.15]
    assert reasons[0].startswith("breaker: 3 failures in a row: ")
    assert all(
        r.startswith("breaker: the trial failed: RuntimeError: boom on ") for r in reasons[1:]
    )


async def test_a_trial_fetch_with_nothing_to_try_closes_it() -> None:
    feed = Feed(fetch_failing=True)
    service = build(feed, breaker_threshold=2, cooldown=0.05)
    events = service.events()
    async with service.running():
        await next_event(events, tripped)
        feed.fetch_failing, feed.failing = False, False
        event = await next_event(events, closed)
        assert isinstance(event, BreakerClosed)
        # The trial fetch returned one item; that item, run, is what closed it.
        assert event.why in (
            "the trial item succeeded",
            "the trial fetch succeeded with nothing to try",
        )


async def test_reset_by_hand_closes_it_and_fetching_resumes() -> None:
    feed = Feed()
    service = build(feed)
    events = service.events()
    async with service.running():
        await next_event(events, tripped)
        feed.failing = False
        assert service.reset_breaker("A", by="cli@ops1") is True
        event = await next_event(events, closed)
        assert isinstance(event, BreakerClosed) and event.why == "reset by cli@ops1"
        view = service.snapshot().handlers["A"]
        assert view.state != "tripped" and view.breaker_reason is None
        await next_event(events, lambda e: isinstance(e, ItemFinished) and e.status == "succeeded")
        assert service.reset_breaker("A") is False  # not tripped: nothing to reset
        with pytest.raises(KeyError):
            service.reset_breaker("Nope")


async def test_retries_waiting_stay_waiting_while_tripped_and_run_after_reset() -> None:
    feed = Feed()
    service = with_retries(feed.handler(), attempts=2, delay=0.02, threshold=2, batch=4)
    events = service.events()
    async with service.running():
        # Items fail once and wait; two of them fail again, for good: it trips.
        await next_event(events, tripped)
        waiting = service.snapshot().handlers["A"].retrying
        assert waiting >= 1
        processed = len(feed.processed)
        await anyio.sleep(0.2)  # their retry delay (0.02 s) passes ten times over
        assert len(feed.processed) == processed
        assert service.snapshot().handlers["A"].retrying == waiting
        feed.failing = False
        service.reset_breaker("A")
        for _ in range(2):
            await next_event(
                events,
                lambda e: (
                    isinstance(e, ItemFinished)
                    and e.status == "succeeded"
                    and e.outcome.attempts == 2
                ),
            )


async def test_an_attempt_that_is_retried_does_not_count() -> None:
    feed = Feed()
    service = (
        processing(poll_interval=0.01, max_concurrency=1, retry=RetryPolicy(max_attempts=5))
        .add_handler(feed.handler(), name="A", max_items_per_cycle=4, breaker_threshold=2)
        .build()
    )
    events = service.events()
    async with service.running():
        for _ in range(6):  # six failed attempts in a row, none final
            await next_event(events, lambda e: e.kind == "item_retrying")
        assert service.snapshot().handlers["A"].state != "tripped"


async def test_bad_items_failing_for_good_together_do_not_trip_a_handler_that_succeeds() -> None:
    """Every fifth item always fails. Their retries come due together once the rest have
    succeeded, and fail for good one after another: more than the threshold in a row, but
    each was a bad item among good ones, not a failing handler."""
    ids = iter(range(40))
    finished: list[str] = []

    class OneBadInFive:
        async def fetch_next(self, max_items: int) -> Sequence[Item]:
            return [Item(i) for _, i in zip(range(max_items), ids, strict=False)]

        async def process(self, item: Item) -> None:
            if item.id % 5 == 0:
                raise RuntimeError(f"bad item {item.id}")

    service = with_retries(
        OneBadInFive, attempts=2, delay=0.5, threshold=3, batch=40, concurrency=2
    )
    events = service.events()
    async with service.running():
        while len(finished) < 40:
            event = await next_event(events, lambda e: isinstance(e, ItemFinished | BreakerTripped))
            assert isinstance(event, ItemFinished), event
            finished.append(event.status)
        assert finished.count("failed") == 8
        assert finished[-8:] == ["failed"] * 8, "the bad items' last attempts, in a row"
        assert service.snapshot().handlers["A"].state != "tripped"


async def test_a_handler_that_starts_failing_trips_once_its_retries_fail() -> None:
    feed = Feed(failing=False)
    service = with_retries(
        feed.handler(), attempts=2, delay=0.02, threshold=3, batch=4, concurrency=2
    )
    events = service.events()
    async with service.running():
        for _ in range(10):
            await next_event(events, lambda e: isinstance(e, ItemFinished))
        feed.failing = True
        event = await next_event(events, tripped)
        assert isinstance(event, BreakerTripped) and event.failures == 3


def retrying_feed_service(feed: Feed) -> Any:
    """Items fail three times before they fail for good: when two have, it trips, with
    others waiting for their retries."""
    return with_retries(feed.handler(), attempts=3, delay=0.02, threshold=2, batch=2, cooldown=0.5)


async def test_the_trial_is_a_new_item_when_the_source_has_one() -> None:
    feed = Feed()
    service = retrying_feed_service(feed)
    events = service.events()
    async with service.running():
        await next_event(events, tripped)
        assert service.snapshot().handlers["A"].retrying
        feed.failing = False
        before, seen = len(feed.processed), max(feed.processed)
        event = await next_event(events, closed)
        assert isinstance(event, BreakerClosed) and event.why == "the trial item succeeded"
        assert feed.processed[before] > seen, "a new item, not one waiting for its retry"


async def test_with_nothing_new_the_trial_fetch_closes_it_and_the_retries_run() -> None:
    feed = Feed(limit=4)
    service = retrying_feed_service(feed)
    events = service.events()
    async with service.running():
        await next_event(events, tripped)  # items 0-3: two failed for good, two wait
        feed.failing = False
        event = await next_event(events, closed)
        assert isinstance(event, BreakerClosed)
        assert event.why == "the trial fetch succeeded with nothing to try"
        for _ in range(2):
            await next_event(
                events, lambda e: isinstance(e, ItemFinished) and e.status == "succeeded"
            )


async def test_a_trial_is_never_a_known_bad_item() -> None:
    """Items 0 and 5 always fail; the others succeed. The source goes down and the handler
    trips while the two wait for their retries. Once the source is back, the trial is a fresh
    item, not one of the two (it would fail whatever the handler's health, and keep it tripped
    twice as long each time): the breaker closes, and the two fail for good without tripping
    it again."""
    ids = count()
    source = {"down": False}
    processed: list[int] = []

    class TwoBad:
        async def fetch_next(self, max_items: int) -> Sequence[Item]:
            if source["down"]:
                raise ConnectionError("source down")
            return [Item(next(ids)) for _ in range(max_items)]

        async def process(self, item: Item) -> None:
            processed.append(item.id)
            if item.id in (0, 5):
                raise RuntimeError(f"bad item {item.id}")

    service = with_retries(TwoBad, attempts=4, delay=0.05, threshold=2, batch=4, cooldown=0.5)
    events = service.events()
    async with service.running():
        succeeded = 0
        while succeeded < 8:  # both bad items failed once, good ones succeeded after them
            event = await next_event(events, lambda e: isinstance(e, ItemFinished))
            succeeded += event.status == "succeeded"  # type: ignore[attr-defined]
        source["down"] = True
        await next_event(events, tripped)
        source["down"] = False
        while True:  # a trial before the source was back (a busy machine) fails its fetch
            event = await next_event(events, lambda e: tripped(e) or closed(e))
            if isinstance(event, BreakerClosed):
                break
            assert isinstance(event, BreakerTripped) and "source down" in event.reason, event
        failed = []
        while len(failed) < 2:
            event = await next_event(
                events,
                lambda e: tripped(e) or (isinstance(e, ItemFinished) and e.status == "failed"),
            )
            assert isinstance(event, ItemFinished), event
            failed.append(event.outcome.item_id)
        assert sorted(failed) == [0, 5]


async def test_bad_items_a_restart_brings_back_together_do_not_trip_it(tmp_path: Path) -> None:
    """A worker stopped while ten bad items waited for their last try. The next run fetches
    them together and each fails for good at once: ten in a row, each a failure of before
    this run. The good items after them run as usual."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'restart.db'}"
    bad = range(10)

    class TenBad:
        async def fetch_next(self, max_items: int) -> Sequence[Item]:
            return [Item(i) for i in range(20)]

        async def process(self, item: Item) -> None:
            if item.id in bad:
                raise RuntimeError(f"bad item {item.id}")

    def run(retry_delay: float) -> Any:
        policy = RetryPolicy(max_attempts=2, base_delay=retry_delay, max_delay=retry_delay)
        return (
            processing(poll_interval=0.01, max_concurrency=1, retry=policy)
            .add_handler(TenBad, name="A", max_items_per_cycle=20, breaker_threshold=3)
            .build(url)
        )

    first = run(retry_delay=3600)
    events = first.events()
    async with first.running():
        for _ in bad:
            await next_event(events, lambda e: e.kind == "item_retrying")
    second = run(retry_delay=0.01)
    events = second.events()
    async with second.running():
        finished = []
        while len(finished) < 10:
            event = await next_event(events, lambda e: isinstance(e, ItemFinished | BreakerTripped))
            assert isinstance(event, ItemFinished), event
            if event.status == "failed":
                finished.append(event.outcome.item_id)
        assert finished == list(bad)
        assert second.snapshot().handlers["A"].state != "tripped"


@pytest.mark.postgres
async def test_items_whose_writes_wait_for_the_database_count_as_succeeded() -> None:
    """Every other item fails; the others succeed with ``ctx.write()``, whose commit waits:
    another session holds the rows locked. Their successes reach the breaker when processed,
    not when committed, so the failures between them are never in a row."""
    work = Table("work", MetaData(), Column("id", Integer, primary_key=True))

    class EveryOtherFails:
        def __init__(self, ctx: HandlerContext) -> None:
            self.ctx = ctx

        async def fetch_next(self, max_items: int) -> Sequence[Item]:
            return [Item(i) for i in range(12)]

        async def process(self, item: Item) -> None:
            if item.id % 2:
                raise RuntimeError(f"bad item {item.id}")
            self.ctx.write(work.delete().where(work.c.id == item.id))

    def failed_or_tripped(event: Event) -> bool:
        return tripped(event) or (isinstance(event, ItemFinished) and event.status == "failed")

    async with throwaway_database("nc_breaker") as url:
        service = (
            processing(max_concurrency=1, retry=RetryPolicy(max_attempts=1))
            .add_handler(EveryOtherFails, name="A", max_items_per_cycle=12, breaker_threshold=3)
            .build(url)
        )
        events = service.events()
        async with service.running(poll=False):
            async with service.store.engine.begin() as connection:
                await connection.run_sync(work.metadata.create_all)
                await connection.execute(work.insert(), [{"id": i} for i in range(12)])
            lock = await asyncpg.connect(url.replace("+asyncpg", ""))
            locked = lock.transaction()
            await locked.start()
            await lock.execute("SELECT id FROM work FOR UPDATE")  # the writer waits for it
            async with anyio.create_task_group() as group:
                group.start_soon(service.run_once)
                try:
                    for _ in range(6):
                        event = await next_event(events, failed_or_tripped)
                        assert isinstance(event, ItemFinished), event
                finally:
                    await locked.rollback()
                    await lock.close()
            assert service.snapshot().succeeded == 6
            assert service.snapshot().handlers["A"].state != "tripped"


async def test_an_early_trial_that_fails_does_not_make_the_rest_longer() -> None:
    """When the store's database answers again after failing, tripped handlers get their
    trial at once; one that fails rests its usual cool-down again, not twice as long."""
    feed = Feed()
    service = build(feed, cooldown=60)
    events = service.events()
    async with service.running():
        await next_event(events, tripped)
        service._core.breakers.database_back()  # what the coordination loop calls
        event = await next_event(events, tripped)
        assert isinstance(event, BreakerTripped)
        assert event.reason.startswith("breaker: the trial failed: ")
        assert event.cooldown == 60


async def test_items_a_restart_brought_back_can_be_the_trial(tmp_path: Path) -> None:
    """A worker stopped while ten items waited for their retry. In the next run they are
    queued behind two new items that give up, which trip the breaker; the handler is not due
    for a fetch until the ten have run once. The trial is one of them (it never ran in this
    run), not nothing. The first, item 0, fails again, which says nothing of the handler (it
    failed before): item 1 is tried next, and the breaker closes."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'restart.db'}"
    failing = {"now": True}

    class Restarted:
        async def fetch_next(self, max_items: int) -> Sequence[Item]:
            return [Item(i) for i in (10, 11, *range(10))]

        async def process(self, item: Item) -> None:
            if failing["now"]:
                if item.id < 10:
                    raise RuntimeError(f"item {item.id} fails this run")
            elif item.id >= 10:
                raise GiveUp(f"new item {item.id} gives up")
            elif item.id == 0:
                raise RuntimeError("item 0 fails again")

    def run() -> Any:
        policy = RetryPolicy(max_attempts=3, base_delay=3600, max_delay=3600)
        return (
            processing(poll_interval=3600, max_concurrency=1, retry=policy, breaker_cooldown=0.2)
            .add_handler(Restarted, name="A", max_items_per_cycle=12, breaker_threshold=2)
            .build(url)
        )

    first = run()
    events = first.events()
    async with first.running(poll=False), anyio.create_task_group() as group:
        group.start_soon(first.run_once)
        for _ in range(10):
            await next_event(events, lambda e: e.kind == "item_retrying")
        group.cancel_scope.cancel()
    failing["now"] = False  # items 10 and 11 succeeded: new again for the next run's fetch
    second = run()
    events = second.events()
    async with second.running():
        await next_event(events, tripped)
        event = await next_event(events, lambda e: tripped(e) or closed(e))
        assert isinstance(event, BreakerClosed), event
        assert event.why == "the trial item succeeded"


async def test_threshold_zero_never_trips() -> None:
    feed = Feed()
    service = build(feed, breaker_threshold=0)
    events = service.events()
    async with service.running():
        for _ in range(10):
            await next_event(events, lambda e: isinstance(e, ItemFinished))
        assert service.snapshot().handlers["A"].state == "failing"


def test_configuration_is_checked_and_a_class_attribute_counts() -> None:
    feed = Feed()
    handler = feed.handler()
    handler.breaker_threshold = 7
    handler.breaker_cooldown = "00:00:05"
    service = processing().add_handler(handler, name="A").build()
    breaker = service._core.breakers.breaker("A")
    assert breaker.policy.threshold == 7
    assert breaker.policy.cooldown == timedelta(seconds=5)
    with pytest.raises(ConfigError, match="breaker_threshold"):
        processing().add_handler(feed.handler(), name="B", breaker_threshold=-1)
    with pytest.raises(ConfigError, match="breaker_threshold"):
        processing(breaker_threshold=-1)
    with pytest.raises(ConfigError, match="breaker_cooldown"):
        processing().add_handler(feed.handler(), name="C", breaker_cooldown=0)
    with pytest.raises(ConfigError, match="breaker_max_cooldown"):
        processing(breaker_max_cooldown="00:00:00")
