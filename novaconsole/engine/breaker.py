"""A circuit breaker per handler: after ``threshold`` failures in a row (failed items or
failed fetches) the handler trips, fetches nothing and starts no item; after a cool-down one
trial (a fetch of one item, then one attempt of one item) decides: success closes it, failure
opens it again for twice as long (up to ``max_cooldown``). An operator can reset it by hand.

What counts: every item that fails for good (out of attempts, timeouts included, or given up)
and every failed fetch adds one; a succeeded item clears the count (when ``process()``
returns: its ``ctx.write()`` statements may wait for the database), and so does a succeeded
fetch after failed fetches. An attempt that will be retried does not count (the retry policy
deals with passing trouble), nor does an item an operator retried (a known failure).

Nor does a known bad item: one that other items succeeded after it first failed, or that had
failed before this run (its attempts came from the store). Bad items' last attempts come due
together (at the end of a drain nothing else is left; after a restart the bad items a dead
worker left come back together) and tripped a healthy handler with 2% of them.

The trial is a new item (not tried in this run): the first queued, else the item of a fetch
of one; when that fetch finds nothing new, its success closes the breaker and the items
waiting for their retry run. A trial that had failed before this run (its attempts came from
the store) and fails again decides nothing: the next item is tried. The trial was an item
waiting for its retry first, and such an item, if bad, failed whatever the handler's health
and kept it tripped, twice as long each time, while new work waited.

Items waiting for their retry stay waiting while the breaker is open; ``run_once`` leaves a
tripped handler out unless it names it. Each worker keeps its own breakers and shares them
through the database.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from time import monotonic
from typing import Protocol

import anyio

from novaconsole import defaults
from novaconsole.engine.core import EngineCore, log_extra, now, wake
from novaconsole.engine.events import BreakerClosed, BreakerTripped
from novaconsole.engine.runtime import HandlerRuntime
from novaconsole.engine.scheduling import FAILED_BEFORE, NOT_FAILED, Job, trial_job

log = logging.getLogger("novaconsole.engine")

CLOSED, OPEN, TRIAL = 0, 1, 2
"""``HandlerRuntime.gate``: closed (normal), open (nothing fetched or started), trial (one
fetch of one item and one item may run)."""


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a handler trips and how long it rests (``threshold`` 0: never trips)."""

    threshold: int = defaults.BREAKER_THRESHOLD
    cooldown: timedelta = defaults.BREAKER_COOLDOWN
    max_cooldown: timedelta = defaults.BREAKER_MAX_COOLDOWN


@dataclass(slots=True)
class Breaker:
    """One handler's breaker."""

    policy: BreakerPolicy
    failures: int = 0
    """Failures in a row (while closed)."""
    successes: int = 0
    """Items succeeded so far (see :attr:`Job.failed_since`)."""
    fetch_streak: bool = False
    """The latest counted failure was a fetch's."""
    reason: str | None = None
    """``breaker: 5 failures in a row: <error>`` while tripped."""
    tripped_at: datetime | None = None
    cooldown: float = 0.0
    """Seconds of the current (or next) rest."""
    retry_at: float = 0.0
    """``monotonic()`` time of the next trial while open."""
    held: list[Job] = field(default_factory=list)
    """Items whose retry came due while tripped: they wait for the breaker to close."""
    early: bool = False
    """The current trial came before the cool-down's end (the database is back): its failure
    does not make the next rest longer."""


PUBLISH_EVERY = 10.0
"""Seconds between writes of a breaker that stays open (the database shows it as live)."""


@dataclass(frozen=True, slots=True)
class BreakerState:
    """One handler's breaker as a worker publishes it."""

    handler: str
    state: str
    """``closed``, ``tripped`` (open) or ``trial``."""
    reason: str | None = None
    tripped_at: datetime | None = None
    retry_in: float | None = None


class BreakerBoard(Protocol):
    """Where a worker shares its breakers with operators (the store's, when it has one)."""

    async def publish(self, worker_id: str, states: Sequence[BreakerState]) -> None:
        """Write this worker's breakers as they are (closed ones removed)."""

    async def take_resets(self, worker_id: str) -> Sequence[tuple[str, str]]:
        """(handler, by) of the resets operators asked of this worker's open breakers."""


class Breakers:
    """Every handler's breaker; fed by the fetcher, the failure policy and the reporter."""

    def __init__(self, core: EngineCore, policy: BreakerPolicy) -> None:
        self.core = core
        self.breakers: dict[str, Breaker] = {}
        for name, rt in core.runtimes.items():
            registration = rt.registration
            threshold = registration.breaker_threshold
            cooldown = registration.breaker_cooldown
            self.breakers[name] = Breaker(
                BreakerPolicy(
                    threshold=policy.threshold if threshold is None else threshold,
                    cooldown=policy.cooldown if cooldown is None else cooldown,
                    max_cooldown=max(policy.max_cooldown, cooldown or policy.cooldown),
                )
            )
        self._wake = anyio.Event()
        self._changed: set[str] = set()
        self._next_publish = 0.0

    def breaker(self, name: str) -> Breaker:
        self.core.runtime(name)
        return self.breakers[name]

    # ------------------------------------------------------------------ counting

    def fetch_failed(self, rt: HandlerRuntime, error: str) -> None:
        breaker = self.breakers[rt.name]
        if rt.gate == TRIAL:
            self._open(rt, breaker, error, longer=True)
        elif rt.gate == CLOSED:
            breaker.fetch_streak = True
            self._failed(rt, breaker, error)

    def fetched(self, rt: HandlerRuntime) -> None:
        """A fetch succeeded and its items are admitted."""
        breaker = self.breakers[rt.name]
        if rt.gate == TRIAL:
            if rt.trial_job is None and trial_job(rt) is None:
                self._close(rt, breaker, "the trial fetch succeeded with nothing to try")
        elif breaker.fetch_streak:
            breaker.failures, breaker.fetch_streak = 0, False

    def item_failed(self, job: Job, error: str, *, final: bool) -> None:
        """An attempt failed; ``final``: the item is out of attempts (or gave up)."""
        rt = job.scope.runtime
        breaker = self.breakers[rt.name]
        if job.failed_since == NOT_FAILED:
            job.failed_since = breaker.successes if job.attempts <= 1 else FAILED_BEFORE
        if rt.trial_job is job:
            rt.trial_job = None
            if job.failed_since == FAILED_BEFORE:  # that says nothing of the handler
                self._half_open(rt)
            else:
                self._open(rt, breaker, error, longer=True)
        elif (
            rt.gate == CLOSED
            and final
            and not self._known_bad(breaker, job)
            and not self._operator_retry(rt, job)
        ):
            breaker.fetch_streak = False
            self._failed(rt, breaker, error)

    @staticmethod
    def _known_bad(breaker: Breaker, job: Job) -> bool:
        """``job`` failed before other items succeeded, or before this run (its attempts
        came from the store): a bad item, not news of its handler."""
        return job.failed_since == FAILED_BEFORE or 0 <= job.failed_since < breaker.successes

    def _operator_retry(self, rt: HandlerRuntime, job: Job) -> bool:
        """An item an operator retried: a known failure, not news (a group retry of items
        that fail again must not trip the breaker)."""
        retries = getattr(self.core, "retries", None)
        watching = getattr(retries, "watching", None) or {}
        return job.key in watching.get(rt.name, ())

    def item_succeeded(self, job: Job) -> None:
        rt = job.scope.runtime
        breaker = self.breakers[rt.name]
        breaker.successes += 1
        if rt.trial_job is job:
            rt.trial_job = None
            self._close(rt, breaker, "the trial item succeeded")
        elif rt.gate == CLOSED:
            breaker.failures, breaker.fetch_streak = 0, False

    def hold(self, job: Job) -> None:
        """A retry came due while its handler is tripped: it waits for the breaker."""
        self.breakers[job.scope.runtime.name].held.append(job)

    # ------------------------------------------------------------------ state changes

    def _failed(self, rt: HandlerRuntime, breaker: Breaker, error: str) -> None:
        breaker.failures += 1
        threshold = breaker.policy.threshold
        if threshold and breaker.failures >= threshold:
            self._open(rt, breaker, error, longer=False)

    def _open(self, rt: HandlerRuntime, breaker: Breaker, error: str, *, longer: bool) -> None:
        policy = breaker.policy
        base = policy.cooldown.total_seconds()
        if longer:
            cap = policy.max_cooldown.total_seconds()
            factor = 1 if breaker.early else 2
            breaker.cooldown = min(max(breaker.cooldown, base) * factor, cap)
        else:
            breaker.cooldown = base
            breaker.reason = f"breaker: {breaker.failures} failures in a row: {error}"
            breaker.tripped_at = now()
        breaker.early = False
        if longer:
            breaker.reason = f"breaker: the trial failed: {error}"
        breaker.retry_at = monotonic() + breaker.cooldown
        rt.gate = OPEN
        self._changed.add(rt.name)
        log.error(
            "%s tripped (%s); next trial in %gs",
            rt.name,
            breaker.reason,
            breaker.cooldown,
            extra=log_extra(rt.name),
        )
        self.core.hub.publish(
            BreakerTripped(rt.name, breaker.reason or error, breaker.failures, breaker.cooldown)
        )
        self._wake.set()

    def _close(self, rt: HandlerRuntime, breaker: Breaker, why: str) -> None:
        was_open = rt.gate != CLOSED
        rt.gate = CLOSED
        self._changed.add(rt.name)
        breaker.failures, breaker.fetch_streak = 0, False
        breaker.reason, breaker.tripped_at, rt.trial_job = None, None, None
        breaker.cooldown, breaker.early = 0.0, False
        core = self.core
        held, breaker.held = breaker.held, []
        for job in held:
            job.scope.runtime.retrying -= 1
            if job.lost or core.stopping:
                core.lifecycle.abandon(job)
                continue
            job.enqueued_at = monotonic()
            core.queue.put(job, forced=job.forced, front=True)
        if was_open:
            log.info("%s breaker closed: %s", rt.name, why, extra=log_extra(rt.name))
            core.hub.publish(BreakerClosed(rt.name, why))
        wake(core.poll_wake, core.work)

    def reset(self, name: str, by: str | None = None) -> bool:
        """Close ``name``'s breaker by hand; False if it was not tripped."""
        rt = self.core.runtime(name)
        if rt.gate == CLOSED:
            return False
        self._close(rt, self.breakers[name], f"reset by {by or self.core.worker_id}")
        return True

    def database_back(self) -> None:
        """The store's database answers again after failing: every tripped handler gets its
        trial now, not at the cool-down's end. The outage may be what tripped it (its fetches
        failed with it): after a 4 s restart of PostgreSQL, two workers otherwise waited out
        the rest of their 30 s cool-down. If the trial fails, the rest is not made longer."""
        for name, breaker in self.breakers.items():
            rt = self.core.runtimes[name]
            if rt.gate == OPEN and rt.trial_job is None:
                breaker.early = True
                self._half_open(rt)

    def _half_open(self, rt: HandlerRuntime) -> None:
        rt.gate = TRIAL
        log.info("%s breaker half-open: one trial", rt.name, extra=log_extra(rt.name))
        if not rt.busy and trial_job(rt) is None:
            rt.next_due = 0.0  # a trial fetch (of one item), at once
        wake(self.core.poll_wake, self.core.work)

    def abandon_held(self) -> None:
        """The service is draining: items waiting for a breaker stay pending at their source."""
        for breaker in self.breakers.values():
            held, breaker.held = breaker.held, []
            for job in held:
                job.scope.runtime.retrying -= 1
                self.core.lifecycle.abandon(job)

    async def run(self) -> None:
        """Half-open each open breaker when its cool-down is over."""
        while True:
            self._wake = anyio.Event()
            at = monotonic()
            waits = []
            for name, breaker in self.breakers.items():
                rt = self.core.runtimes[name]
                if rt.gate != OPEN or rt.trial_job is not None:
                    continue
                if breaker.retry_at <= at:
                    self._half_open(rt)
                else:
                    waits.append(breaker.retry_at - at)
            if waits:
                with anyio.move_on_after(min(waits)):
                    await self._wake.wait()
            else:
                await self._wake.wait()

    # ------------------------------------------------------------------ the database

    async def sync(self) -> None:
        """Publish breakers that changed (and open ones every :data:`PUBLISH_EVERY` s) and
        carry out operators' resets: called by the coordination loop."""
        board: BreakerBoard | None = getattr(self.core.store, "breaker_board", None)
        if board is None:
            return
        core = self.core
        open_now = {name for name, rt in core.runtimes.items() if rt.gate}
        at = monotonic()
        names = set(self._changed)
        if open_now and at >= self._next_publish:
            names |= open_now
        if names:
            self._changed -= names
            try:
                await board.publish(core.worker_id, [self.state(name) for name in sorted(names)])
            except BaseException:
                self._changed |= names
                raise
            if open_now:
                self._next_publish = at + PUBLISH_EVERY
        if open_now:
            for handler, by in await board.take_resets(core.worker_id):
                if handler in core.runtimes and not self.reset(handler, by):
                    self._changed.add(handler)  # closed meanwhile: clear its row

    def state(self, name: str) -> BreakerState:
        rt = self.core.runtime(name)
        if not rt.gate:
            return BreakerState(name, "closed")
        breaker = self.breakers[name]
        return BreakerState(
            name,
            "trial" if rt.gate == TRIAL else "tripped",
            breaker.reason,
            breaker.tripped_at,
            self.retry_in(rt),
        )

    # ------------------------------------------------------------------ reporting

    def retry_in(self, rt: HandlerRuntime) -> float | None:
        """Seconds to the next trial while open; 0 during a trial; None while closed."""
        if rt.gate == CLOSED:
            return None
        if rt.gate == TRIAL:
            return 0.0
        return max(0.0, self.breakers[rt.name].retry_at - monotonic())
