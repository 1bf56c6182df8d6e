"""The processing service: the facade every front end drives (DESIGN.md's control API).

The work is done by collaborators sharing one :class:`~novaconsole.engine.core.EngineCore`:
:mod:`~novaconsole.engine.lifecycle` (start, drain, stop), :mod:`~novaconsole.engine.controls`,
:mod:`~novaconsole.engine.polling` (poll loop, cycles), :mod:`~novaconsole.engine.fetching`
(fetch, admit, claim), :mod:`~novaconsole.engine.slots` (attempts, watchdog),
:mod:`~novaconsole.engine.failures` (failure policy, retry heap),
:mod:`~novaconsole.engine.fleet_sync` and :mod:`~novaconsole.engine.reporting` (outcomes,
counters, snapshot).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from novaconsole.engine import triage_view
from novaconsole.engine.breaker import BreakerPolicy, Breakers
from novaconsole.engine.controls import OperatorControls, Until
from novaconsole.engine.core import EngineCore
from novaconsole.engine.crashes import CrashGuard
from novaconsole.engine.events import EventSubscription
from novaconsole.engine.failures import Failures
from novaconsole.engine.fetching import Fetcher
from novaconsole.engine.fleet_sync import FleetSync
from novaconsole.engine.handler import SessionFactory
from novaconsole.engine.lifecycle import Lifecycle
from novaconsole.engine.observers import Observer
from novaconsole.engine.operator import AuditEntry, RetryStatus
from novaconsole.engine.outcomes import CycleReport, ItemOutcome
from novaconsole.engine.peek import PeekResult, peek
from novaconsole.engine.persistence import StateStore
from novaconsole.engine.polling import Poller
from novaconsole.engine.registry import HandlerRegistration, ProcessingOptions
from novaconsole.engine.reporting import Reporter
from novaconsole.engine.retries import RetryTracker
from novaconsole.engine.retry import RetryPolicy
from novaconsole.engine.slots import SlotRunner
from novaconsole.engine.snapshot import Snapshot
from novaconsole.triage import FailedItem, FailureGroup


class ProcessingService:
    """Runs the registered handlers. Build it with ``BackgroundProcessing(...).build()``.

    Every front end (console, headless runner, tests) goes through the methods below.
    """

    def __init__(
        self,
        *,
        options: ProcessingOptions,
        retry: RetryPolicy,
        registrations: Sequence[HandlerRegistration],
        store: StateStore | None = None,
        session_factory: SessionFactory | None = None,
        database_url: str | None = None,
        worker_id: str | None = None,
        observers: Sequence[Observer] = (),
    ) -> None:
        core = EngineCore(
            options=options,
            retry=retry,
            registrations=registrations,
            store=store,
            session_factory=session_factory,
            database_url=database_url,
            worker_id=worker_id,
            observers=observers,
        )
        core.lifecycle = Lifecycle(core)
        core.controls = OperatorControls(core)
        core.poller = Poller(core)
        core.fetcher = Fetcher(core)
        core.slot_runner = SlotRunner(core)
        core.failures = Failures(core)
        core.fleet_sync = FleetSync(core)
        core.reporter = Reporter(core)
        core.breakers = Breakers(
            core,
            BreakerPolicy(
                options.breaker_threshold, options.breaker_cooldown, options.breaker_max_cooldown
            ),
        )
        core.retries = RetryTracker(core)
        core.crashes = CrashGuard(core)
        self._core = core
        self.options = options
        self.retry = retry
        self.registrations = core.registrations
        self.store: StateStore = core.store
        self.session_factory = session_factory
        self.worker_id = core.worker_id
        self.database_display = core.database_display

    # ------------------------------------------------------------------ lifecycle

    @property
    def is_running(self) -> bool:
        return self._core.is_running

    def running(self, *, poll: bool = True) -> AbstractAsyncContextManager[ProcessingService]:
        """Run the service for the duration of the block; leave it drained and stopped.

        With ``poll=False`` nothing is fetched on the interval: only ``run_once()`` fetches
        (the headless ``--once`` mode).
        """
        return self._core.lifecycle.running(self, poll=poll)

    async def drain(self) -> None:
        """Stop fetching, let in-flight items finish within ``shutdown_grace``, cancel the rest.

        Items still queued or waiting for a retry stay pending at their source. Idempotent.
        """
        await self._core.lifecycle.drain()

    def cancel_drain(self) -> bool:
        """Force quit: cancel at once what the drain still waits for.

        The items in flight are cancelled (recorded ``cancelled``; they stay pending at their
        source) and the drain ends without waiting for the rest of ``shutdown_grace``. Called
        before a drain has begun, the next drain gets no grace. True if a drain was under way.
        """
        return self._core.lifecycle.cancel_drain()

    async def run_once(self, *, handler: str | None = None) -> CycleReport:
        """Run one cycle now, even while paused; return when every fetched item is final.

        Handlers paused one by one and disabled handlers are left out; with ``handler``, only
        that one runs (even if it is paused).
        """
        return await self._core.poller.run_once(handler)

    @property
    def leases_lost(self) -> Mapping[str, int]:
        """Items whose claim another worker took while this one held it (their results are
        not recorded), by handler, since the service was built."""
        return self._core.fleet_sync.leases_lost

    # ------------------------------------------------------------------ controls
    # ``by`` names who makes a change (``console@host``, ``cli@host``; default: this worker's
    # id); it is kept in the audit history with the time and the old and new value.

    def pause(
        self, *, reason: str | None = None, until: Until = None, by: str | None = None
    ) -> None:
        """Stop fetching and starting items (in-flight items finish). ``run_once`` still works.

        ``reason`` is shown with the pause; ``until`` (a moment, or a duration from now) is
        when it resumes by itself, on every worker sharing the database."""
        self._core.controls.set_paused(True, reason=reason, until=until, by=by)

    def resume(self, *, by: str | None = None) -> None:
        self._core.controls.set_paused(False, by=by)

    def pause_handler(
        self, name: str, *, reason: str | None = None, until: Until = None, by: str | None = None
    ) -> None:
        """Stop fetching and starting items of one handler (``reason``/``until``: as
        :meth:`pause`)."""
        self._core.controls.set_handler_paused(name, True, reason=reason, until=until, by=by)

    def resume_handler(self, name: str, *, by: str | None = None) -> None:
        self._core.controls.set_handler_paused(name, False, by=by)

    def set_batch_size(self, name: str, size: int, *, by: str | None = None) -> None:
        """Items asked of the handler per fetch, from its next fetch on (1 to
        :data:`~novaconsole.engine.operator.MAX_BATCH_SIZE`)."""
        self._core.controls.set_batch_size(name, size, by=by)

    def set_concurrency(self, workers: int, *, by: str | None = None) -> None:
        """How many items are processed at once (1 to
        :data:`~novaconsole.engine.operator.MAX_CONCURRENCY`); takes effect immediately."""
        self._core.controls.set_concurrency(workers, by=by)

    async def retry_item(self, handler: str, item_id: Any, *, by: str | None = None) -> bool:
        """Retry an item: see :meth:`request_retry`; False when there is nothing to retry."""
        return await self.request_retry(handler, item_id, by=by) is not None

    async def request_retry(
        self, handler: str, item_id: Any, *, by: str | None = None
    ) -> RetryStatus | None:
        """Forget the item's attempts, ask its handler to reopen it at its source (its
        optional ``reopen`` hook) and make the handler due now; then follow it: the returned
        status (and :meth:`retry_status`, and ``RetryProgress`` events) goes from
        ``requested`` to ``running`` and ``succeeded``/``failed``, or to ``not_offered`` when
        its source no longer returns it. ``None``: nothing to retry (no attempts remembered,
        no reopen hook). On a stopped service it is saved and carried out at the next start."""
        return await self._core.retries.request(handler, item_id, by=by)

    def retry_status(self, handler: str, item_id: Any) -> RetryStatus | None:
        """The latest retry request of this item made or taken by this service."""
        return self._core.retries.status(handler, item_id)

    async def audit(self, limit: int = 50) -> list[AuditEntry]:
        """Who changed which control, when, old → new; oldest first (the fleet's, from the
        database, when there is one)."""
        return await self._core.controls.audit(limit)

    def paused_lines(self) -> list[str]:
        """What is paused, one line each: "PhysicalDeletion paused by cli@ops1 12 min ago:
        db maintenance; resumes at 14:00" (empty when nothing is)."""
        return self._core.controls.paused_lines()

    def reset_breaker(self, name: str, *, by: str | None = None) -> bool:
        """Close ``name``'s tripped circuit breaker (retries held by it run again); False if
        it was not tripped. ``by`` names the operator in the log (default: this worker)."""
        return self._core.breakers.reset(name, by)

    async def peek(self, handler: str, limit: int | None = None) -> PeekResult:
        """What ``handler``'s ``fetch_next`` returns now (``limit`` items, default its batch
        size), fetched in a transaction that is rolled back: nothing claimed or processed.
        The service need not be running. A failing fetch is a :class:`PeekError`."""
        core = self._core
        rt = core.runtime(handler)
        sessions = getattr(core.store, "rolled_back_sessions", None)
        return await peek(
            rt.registration,
            rt.batch_size if limit is None else limit,
            sessions=sessions() if sessions is not None else None,
            fetch_timeout=core.options.fetch_timeout.total_seconds(),
        )

    # ------------------------------------------------------------------ triage

    async def failure_groups(self, handler: str | None = None) -> list[FailureGroup]:
        """Failed items grouped by handler, exception type and normalised message, most
        items first (see :mod:`novaconsole.triage`)."""
        return await triage_view.failure_groups(self._core, handler)

    async def failure_group(self, group: str) -> tuple[FailureGroup | None, list[FailedItem]]:
        """The group with id ``group`` and its items, latest first (``None``: no such group)."""
        return await triage_view.failure_group(self._core, group)

    # ------------------------------------------------------------------ observing

    def add_observer(self, observer: Observer) -> None:
        """Call ``observer``'s hooks from now on (see :mod:`novaconsole.engine.observers`)."""
        self._core.observers = (*self._core.observers, observer)

    def events(self, max_buffer: int = 10_000) -> EventSubscription:
        """A new subscription to the service's events (``async for event in ...``).

        A reader that falls ``max_buffer`` events behind loses the oldest and gets an
        ``EventsDropped`` telling how many; it never slows the engine.
        """
        return self._core.hub.subscribe(max_buffer)

    def recent_outcomes(self) -> list[ItemOutcome]:
        """The latest final outcomes, oldest first: those of earlier runs recorded in the
        store, then this run's (a console opened late starts from them)."""
        return list(self._core.recent)

    def snapshot(self) -> Snapshot:
        """The service now: cheap and free of side effects."""
        return self._core.reporter.snapshot()
