"""Typed events and their bounded fan-out to any number of readers."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anyio

from novaconsole.engine.operator import RetryStatus
from novaconsole.engine.outcomes import ItemOutcome


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event; ``kind`` names it."""

    kind: ClassVar[str] = "event"


@dataclass(frozen=True, slots=True)
class ServiceStateChanged(Event):
    """The service started, was paused or resumed, began draining, or stopped."""

    kind: ClassVar[str] = "service_state"
    state: str


@dataclass(frozen=True, slots=True)
class CycleStarted(Event):
    kind: ClassVar[str] = "cycle_started"
    cycle: int
    handlers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CycleFinished(Event):
    """Every item the cycle fetched has its final outcome, retries included."""

    kind: ClassVar[str] = "cycle_finished"
    cycle: int
    duration: float
    items: int


@dataclass(frozen=True, slots=True)
class FetchCompleted(Event):
    kind: ClassVar[str] = "fetch_completed"
    handler: str
    count: int
    duration: float


@dataclass(frozen=True, slots=True)
class FetchFailed(Event):
    kind: ClassVar[str] = "fetch_failed"
    handler: str
    error: str


@dataclass(frozen=True, slots=True)
class ItemRetrying(Event):
    """An attempt failed; the item waits ``delay`` seconds (holding no slot) for another."""

    kind: ClassVar[str] = "item_retrying"
    handler: str
    item_id: Any
    attempt: int
    delay: float
    error: str


@dataclass(frozen=True, slots=True)
class ItemFinished(Event):
    """An item has its final outcome for this cycle."""

    kind: ClassVar[str] = "item_finished"
    outcome: ItemOutcome

    @property
    def handler(self) -> str:
        return self.outcome.handler

    @property
    def item_id(self) -> Any:
        return self.outcome.item_id

    @property
    def status(self) -> str:
        return self.outcome.status.value


@dataclass(frozen=True, slots=True)
class ControlChanged(Event):
    """An operator changed a control: ``what`` is pause, batch_size or concurrency."""

    kind: ClassVar[str] = "control_changed"
    what: str
    value: Any
    handler: str | None = None
    by: str | None = field(default=None, compare=False)
    """Who changed it here (``None``: followed from the database)."""


@dataclass(frozen=True, slots=True)
class RetryProgress(Event):
    """An operator's retry request moved on: ``status.state`` is ``requested``, ``running``,
    ``succeeded``, ``failed`` or ``not_offered``; ``status.message()`` says it in words."""

    kind: ClassVar[str] = "retry_progress"
    status: RetryStatus

    @property
    def handler(self) -> str:
        return self.status.handler

    @property
    def item_id(self) -> str:
        return self.status.item_id


@dataclass(frozen=True, slots=True)
class EventsDropped(Event):
    """This reader fell behind and lost ``count`` of the oldest events."""

    kind: ClassVar[str] = "events_dropped"
    count: int


class EventSubscription:
    """One reader's bounded window of events.

    Iterate it (``async for``), or take what is buffered with :meth:`drain`; leaving a loop
    keeps the subscription, :meth:`close` (or ``async with``) ends it.
    """

    def __init__(self, hub: EventHub, max_buffer: int) -> None:
        self._hub = hub
        self._buffer: deque[Event] = deque()
        self._pending: deque[Event] = deque()
        self._max = max_buffer
        self._dropped = 0
        self._wakeup = anyio.Event()
        self.closed = False

    def _push(self, event: Event) -> None:
        if len(self._buffer) >= self._max:
            self._buffer.popleft()
            self._dropped += 1
        self._buffer.append(event)
        if not self._wakeup.is_set():
            self._wakeup.set()

    def drain(self) -> list[Event]:
        """Everything buffered now, without waiting; an ``EventsDropped`` first if any were lost."""
        events: list[Event] = []
        if self._dropped:
            events.append(EventsDropped(self._dropped))
            self._dropped = 0
        events.extend(self._buffer)
        self._buffer.clear()
        return events

    async def wait(self) -> None:
        """Wait until at least one event is buffered (or the subscription is closed)."""
        while not self._buffer and not self._dropped and not self.closed:
            self._wakeup = anyio.Event()
            await self._wakeup.wait()

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._pending:
                return self._pending.popleft()
            await self.wait()
            if self.closed and not self._buffer and not self._dropped:
                raise StopAsyncIteration
            self._pending.extend(self.drain())

    async def __aenter__(self) -> EventSubscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._hub._unsubscribe(self)
            self._wakeup.set()


class EventHub:
    """Fan-out to subscribers. Publishing never waits: a slow reader loses its oldest events."""

    def __init__(self) -> None:
        self._subscribers: list[EventSubscription] = []

    def subscribe(self, max_buffer: int = 10_000) -> EventSubscription:
        subscription = EventSubscription(self, max_buffer)
        self._subscribers.append(subscription)
        return subscription

    def _unsubscribe(self, subscription: EventSubscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)

    @property
    def active(self) -> bool:
        return bool(self._subscribers)

    def publish(self, event: Event) -> None:
        for subscriber in self._subscribers:
            subscriber._push(event)

    def close(self) -> None:
        """End every subscription: their loops finish once drained."""
        for subscriber in list(self._subscribers):
            subscriber.close()
