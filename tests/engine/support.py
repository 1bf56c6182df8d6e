"""Handlers built for engine tests: items, sources and behaviours under the test's control."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from novaconsole import BackgroundProcessing, HandlerContext
from novaconsole.engine.events import Event, EventSubscription


@dataclass(frozen=True)
class Item:
    id: int


Behaviour = Callable[[Item, int], Awaitable[None]]
"""What ``process`` does with an item on its n-th attempt (1-based)."""


async def succeed(item: Item, attempt: int) -> None:
    return None


@dataclass
class Source:
    """A scripted work source shared by every instance of a test handler."""

    ids: list[int] = field(default_factory=list)
    behaviour: Behaviour = succeed
    consume: bool = True
    """Remove items once processed successfully (a real source marks them done)."""
    fetch_sizes: list[int] = field(default_factory=list)
    attempts: dict[int, int] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    failures_seen: list[tuple[int, str]] = field(default_factory=list)
    fetch_error: BaseException | None = None
    fetch_hangs: bool = False
    fetched: anyio.Event = field(default_factory=anyio.Event)

    def handler(self) -> type:
        source = self

        class ScriptedHandler:
            def __init__(self, ctx: HandlerContext) -> None:
                self.ctx = ctx

            async def fetch_next(self, max_items: int) -> Sequence[Item]:
                source.fetch_sizes.append(max_items)
                source.fetched.set()
                if source.fetch_hangs:
                    await anyio.sleep_forever()
                if source.fetch_error is not None:
                    raise source.fetch_error
                return [Item(i) for i in source.ids[:max_items]]

            async def process(self, item: Item) -> None:
                attempt = source.attempts.get(item.id, 0) + 1
                source.attempts[item.id] = attempt
                source.order.append(f"{item.id}#{attempt}")
                await source.behaviour(item, attempt)
                if source.consume and item.id in source.ids:
                    source.ids.remove(item.id)

            async def on_failure(self, item: Item, error: BaseException) -> None:
                source.failures_seen.append((item.id, str(error)))

        return ScriptedHandler


def processing(**options: Any) -> BackgroundProcessing:
    """A builder with test-friendly defaults: no interval wait, fast retries."""
    from novaconsole import RetryPolicy

    retry = options.pop("retry", RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05))
    options.setdefault("poll_interval", 3600)
    options.setdefault("shutdown_grace", 2)
    return BackgroundProcessing(retry=retry, **options)


async def next_event(
    events: EventSubscription, match: Callable[[Event], bool], within: float = 5.0
) -> Event:
    """The next event that matches, failing the test after ``within`` seconds."""
    with anyio.fail_after(within):
        async for event in events:
            if match(event):
                return event
    raise AssertionError("the event stream ended")
