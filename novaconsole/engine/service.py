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

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from novaconsole.engine.controls import OperatorControls
from novaconsole.engine.core import EngineCore
from novaconsole.engine.crashes import CrashGuard
from novaconsole.engine.events import EventSubscription
from novaconsole.engine.failures import Failures
from novaconsole.engine.fetching import Fetcher
from novaconsole.engine.fleet_sync import FleetSync
from novaconsole.engine.handler import SessionFactory
from novaconsole.engine.lifecycle import Lifecycle
from novaconsole.engine.observers import Observer
from novaconsole.engine.outcomes import CycleReport, ItemOutcome
from novaconsole.engine.persistence import StateStore
from novaconsole.engine.polling import Poller
from novaconsole.engine.registry import HandlerRegistration, ProcessingOptions
from novaconsole.engine.reporting import Reporter
from novaconsole.engine.retry import RetryPolicy
from novaconsole.engine.slots import SlotRunner
from novaconsole.engine.snapshot import Snapshot


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

    async def run_once(self) -> CycleReport:
        """Run one cycle now, even while paused; return when every fetched item is final.

        Handlers paused one by one and disabled handlers are left out.
        """
        return await self._core.poller.run_once()

    # ------------------------------------------------------------------ controls

    def pause(self) -> None:
        """Stop fetching and starting items (in-flight items finish). ``run_once`` still works."""
        self._core.controls.set_paused(True)

    def resume(self) -> None:
        self._core.controls.set_paused(False)

    def pause_handler(self, name: str) -> None:
        """Stop fetching and starting items of one handler."""
        self._core.controls.set_handler_paused(name, True)

    def resume_handler(self, name: str) -> None:
        self._core.controls.set_handler_paused(name, False)

    def set_batch_size(self, name: str, size: int) -> None:
        """Items asked of the handler per fetch, from its next fetch on."""
        self._core.controls.set_batch_size(name, size)

    def set_concurrency(self, workers: int) -> None:
        """How many items are processed at once; takes effect immediately."""
        self._core.controls.set_concurrency(workers)

    async def retry_item(self, handler: str, item_id: Any) -> bool:
        """Forget an item's attempts so that its next fetch processes it again."""
        return await self._core.controls.retry_item(handler, item_id)

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
