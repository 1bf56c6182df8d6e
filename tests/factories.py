"""Factories shared by every test folder: outcomes to record, and a scripted work source whose
handler class does what the test says (one copy of each, instead of one per folder)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import anyio

from novaconsole import HandlerContext
from novaconsole.engine.outcomes import Attempt, ItemOutcome, OutcomeStatus

# --------------------------------------------------------------------------- outcomes

TRACEBACK = "Traceback (most recent call last):\n  boom"
"""The traceback an outcome with an error gets unless one is given (``None``: none)."""


def outcome(
    item_id: object = 1,
    *,
    handler: str = "Ping",
    status: OutcomeStatus = OutcomeStatus.SUCCEEDED,
    attempts: int = 1,
    error: str | None = None,
    finished_at: datetime | None = None,
    started_at: datetime | None = None,
    duration: float | None = None,
    traceback: str | None = TRACEBACK,
    history: Sequence[Attempt] | None = None,
    token: int | None = None,
    wait: float = 0.0,
) -> ItemOutcome:
    """A final outcome. By default: one attempt of 0.5 s per ``attempts``, one second apart,
    finished at ``finished_at`` (now); earlier attempts failed with ``"try N: <error>"``; a
    :data:`TRACEBACK` when there is an ``error``. Every part can be given instead."""
    finished = finished_at or datetime.now(UTC)
    started = started_at or finished - timedelta(seconds=attempts)
    if history is None:
        history = tuple(
            Attempt(
                number=n,
                started_at=started + timedelta(seconds=n - 1),
                duration=0.5,
                error=error if n == attempts or error is None else f"try {n}: {error}",
            )
            for n in range(1, attempts + 1)
        )
    if error is None and traceback == TRACEBACK:
        traceback = None
    return ItemOutcome(
        handler=handler,
        item_id=item_id,
        status=status,
        attempts=attempts,
        duration=duration if duration is not None else 0.5 * attempts,
        error=error,
        started_at=started,
        finished_at=finished,
        traceback=traceback,
        history=tuple(history),
        token=token,
        wait=wait,
    )


# --------------------------------------------------------------------------- a scripted source


@dataclass(frozen=True)
class Item:
    id: int


Behaviour = Callable[[Item, int], Awaitable[None]]
"""What ``process`` does with an item on its n-th attempt (1-based)."""


async def succeed(item: Item, attempt: int) -> None:
    return None


@dataclass
class Source:
    """A scripted work source shared by every instance of its handler class
    (:meth:`handler`): ``fetch_next`` returns the first ``ids``, ``process`` runs
    ``behaviour`` (after waiting for ``gate``, if set) and fails the ``fail`` ids."""

    ids: list[int] = field(default_factory=list)
    behaviour: Behaviour = succeed
    fail: set[int] = field(default_factory=set)
    """Ids whose every attempt raises ``ValueError("item N is broken")``."""
    gate: anyio.Event | None = None
    """If set, every item waits for it in ``process``."""
    consume: bool = True
    """Remove items once processed successfully (a real source marks them done)."""
    fetch_sizes: list[int] = field(default_factory=list)
    """The ``max_items`` of every fetch."""
    attempts: dict[int, int] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    done: list[int] = field(default_factory=list)
    failures_seen: list[tuple[int, str]] = field(default_factory=list)
    fetch_error: BaseException | None = None
    fetch_hangs: bool = False
    fetched: anyio.Event = field(default_factory=anyio.Event)
    started: anyio.Event = field(default_factory=anyio.Event)

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
                source.started.set()
                if source.gate is not None:
                    await source.gate.wait()
                if item.id in source.fail:
                    raise ValueError(f"item {item.id} is broken")
                await source.behaviour(item, attempt)
                logging.getLogger("novaconsole.handlers.scripted").info("did %s", item.id)
                if source.consume and item.id in source.ids:
                    source.ids.remove(item.id)
                source.done.append(item.id)

            async def on_failure(self, item: Item, error: BaseException) -> None:
                source.failures_seen.append((item.id, str(error)))

        return ScriptedHandler
