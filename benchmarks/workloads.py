"""Work sources shared by the benchmarks: lazily generated no-op items and their handlers."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import perf_counter, time
from typing import Any

import anyio

from novaconsole import BackgroundProcessing, ProcessingService


@dataclass(frozen=True, slots=True)
class Item:
    id: int


class Counter:
    """``total`` no-op items made on demand, never a list of them all (``None``: endless).

    Every handler instance built by :meth:`handler` takes from the same counter, and the
    baseline loops call the same :meth:`process`, so both sides do identical work per item.
    """

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.handed_out = 0
        self.processed = 0
        self.done = anyio.Event()

    def take(self, count: int) -> list[Item]:
        start = self.handed_out
        stop = start + count if self.total is None else min(start + count, self.total)
        self.handed_out = max(start, stop)
        return [Item(i) for i in range(start, stop)]

    async def process(self, item: Item) -> None:
        self.processed += 1
        if self.processed == self.total:
            self.done.set()

    def handler(self) -> type:
        counter = self

        class NoOp:
            """Hands out the counter's items; processing does nothing but count."""

            async def fetch_next(self, max_items: int) -> Sequence[Item]:
                return counter.take(max_items)

            async def process(self, item: Item) -> None:
                await counter.process(item)

        return NoOp


@dataclass
class Arrivals:
    """A source that a producer task fills at a steady rate (B3, B5).

    ``created_at[i]`` is the wall-clock time (``time.time()``) at which item ``i`` became
    pending, comparable with ``ItemOutcome.finished_at``.
    """

    pending: deque[Item] = field(default_factory=deque)
    created_at: list[float] = field(default_factory=list)
    processed: int = 0
    _producing: bool = True
    _drained: anyio.Event = field(default_factory=anyio.Event)

    async def drained(self) -> None:
        """Wait until production has stopped and every item made has been processed."""
        await self._drained.wait()

    def _count(self) -> None:
        self.processed += 1
        if not self._producing and self.processed == len(self.created_at):
            self._drained.set()

    async def produce(self, rate: float, seconds: float | None) -> None:
        """Make ``rate`` items per second pending, for ``seconds`` (None: until cancelled)."""
        started = perf_counter()
        created = self.created_at
        while True:
            elapsed = perf_counter() - started
            if seconds is not None and elapsed >= seconds:
                self._producing = False
                if self.processed == len(created):
                    self._drained.set()
                return
            due = int(elapsed * rate)
            now = time()
            while len(created) < due:
                self.pending.append(Item(len(created)))
                created.append(now)
            await anyio.sleep(0.001)

    def handler(self) -> type:
        source = self

        class Arrived:
            """Takes what is pending now; processing does nothing but count."""

            async def fetch_next(self, max_items: int) -> Sequence[Item]:
                pending = source.pending
                return [pending.popleft() for _ in range(min(max_items, len(pending)))]

            async def process(self, item: Item) -> None:
                source._count()

        return Arrived


def no_op_service(
    factory: type,
    *,
    batch: int = 1000,
    concurrency: int = 8,
    poll_interval: float = 0.0,
    database_url: str | None = None,
    store: Any = None,
) -> ProcessingService:
    """A service with one handler, polled back to back (or every ``poll_interval`` s)."""
    return (
        BackgroundProcessing(
            poll_interval=poll_interval, max_concurrency=concurrency, queue_capacity=batch
        )
        .add_handler(factory, name="NoOp", max_items_per_cycle=batch)
        .build(database_url, store=store)
    )
