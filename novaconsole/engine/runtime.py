"""What the service tracks for each registered handler while it runs."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import anyio

from novaconsole.engine.outcomes import ItemOutcome
from novaconsole.engine.registry import HandlerRegistration
from novaconsole.engine.scheduling import HandlerScope, Job

DEAD_REMEMBERED = 10_000
"""Dead items per handler whose skip is known to be recorded (beyond: recorded again)."""


@dataclass(eq=False, slots=True)
class HandlerRuntime:
    """Live state of one handler: its controls, queues, counters and schedule."""

    registration: HandlerRegistration
    poll_interval: timedelta
    item_timeout: timedelta
    max_attempts: int
    batch_size: int
    paused: bool = False
    queue: deque[Job] = field(default_factory=deque)
    forced: deque[Job] = field(default_factory=deque)
    """Items of a ``run_once()``: handed out even while paused."""
    active: dict[str, Job] = field(default_factory=dict)
    """Items queued, in flight or waiting for a retry, by key: not taken again."""
    admitting: anyio.Lock = field(default_factory=anyio.Lock)
    """Held from reading :attr:`active` to adding a fetch's items to it: two fetches at once
    (the poll loop's and a run-once) admit an item they both returned once."""
    scopes: set[HandlerScope] = field(default_factory=set)
    in_flight: int = 0
    retrying: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    dead_items: int = 0
    """Items out of attempts that the latest fetch returned (skipped, not processed)."""
    dead_returned: int = 0
    """How often fetches returned an item out of attempts since the service started."""
    wedged_on_dead: bool = False
    """The latest fetch was a full batch of items out of attempts and nothing else: the
    handler makes no progress while its source returns them first (warned once a streak)."""
    dead_recorded: dict[str, None] = field(default_factory=dict)
    """Keys of dead items whose ``skipped`` (or final failure) is recorded by this process:
    not recorded again each time the source returns them (oldest forgotten past a bound)."""
    last_error: str | None = None
    last_run: datetime | None = None
    fetch_failed: bool = False
    last_outcome_failed: bool = False
    busy: bool = False
    """A poll-loop fetch or its first pass is under way: not due again until it settles."""
    next_due: float = 0.0
    gate: int = 0
    """The circuit breaker: 0 closed, 1 open, 2 one trial (:mod:`novaconsole.engine.breaker`)."""
    trial_job: Job | None = None
    """The breaker's trial item while it runs."""
    fetching: int = 0
    """Fetches of this handler under way (poll loop and ``run_once()``)."""
    finished_during_fetch: dict[str, tuple[float, ItemOutcome]] = field(default_factory=dict)
    """Items that finished while a fetch was under way (monotonic time, outcome): that fetch
    may have read them before their writes committed, so it must not take them again; a
    ``run_once()`` reports the outcome instead (cleared when no fetch runs)."""
    batches_lost: int = 0
    """Full batches in a row whose every new item another worker had claimed: more is likely
    waiting, so the handler is fetched again after a short wait, doubled each time (see
    :data:`novaconsole.engine.fetching.LOST_BATCH_RETRY`)."""
    surplus_warned: bool = False
    """``fetch_next`` returned more than asked once: said once, not on every fetch."""

    def dead_recorded_now(self, key: str) -> bool:
        """Remember that the death of ``key`` is recorded; False if it already was."""
        if key in self.dead_recorded:
            return False
        self.dead_recorded[key] = None
        if len(self.dead_recorded) > DEAD_REMEMBERED:
            del self.dead_recorded[next(iter(self.dead_recorded))]
        return True

    @property
    def name(self) -> str:
        return self.registration.name

    @property
    def enabled(self) -> bool:
        return self.registration.enabled
