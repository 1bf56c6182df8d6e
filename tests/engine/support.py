"""Handlers built for engine tests: items, sources and behaviours under the test's control."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from novaconsole import BackgroundProcessing
from novaconsole.engine.events import Event, EventSubscription
from tests.factories import Behaviour, Item, Source, succeed

__all__ = ["Behaviour", "Item", "Source", "next_event", "processing", "succeed"]


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
