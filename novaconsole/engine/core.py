"""The state every part of a running service shares, and the small helpers they all use.

:class:`~novaconsole.engine.service.ProcessingService` is the facade; it builds one
:class:`EngineCore` and the collaborators that act on it (lifecycle, controls, polling,
fetching, workers, failures, fleet sync, reporting), each holding a reference to the core and
reaching the others through it.
"""

from __future__ import annotations

import math
import os
import socket
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import count
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from anyio.abc import TaskGroup
from sqlalchemy.exc import StatementError

from novaconsole.engine.events import EventHub, ServiceStateChanged
from novaconsole.engine.fleet_protocol import Claim, Coordinator, WorkerView, alone_in
from novaconsole.engine.handler import SessionFactory
from novaconsole.engine.metrics import LatencySamples, Throughput
from novaconsole.engine.observers import Observer
from novaconsole.engine.outcomes import ItemOutcome, shown_id
from novaconsole.engine.persistence import MemoryStateStore, StateStore
from novaconsole.engine.registry import HandlerRegistration, ProcessingOptions
from novaconsole.engine.retry import RetryPolicy
from novaconsole.engine.runtime import HandlerRuntime
from novaconsole.engine.scheduling import FairQueue, Job, Slot
from novaconsole.engine.unclaimed import SourceFilter
from novaconsole.engine.writes import ItemWriter
from novaconsole.errors import driver_message
from novaconsole.redaction import redact

if TYPE_CHECKING:
    from novaconsole.engine.breaker import Breakers
    from novaconsole.engine.controls import OperatorControls
    from novaconsole.engine.crashes import CrashGuard
    from novaconsole.engine.failures import Failures
    from novaconsole.engine.fetching import Fetcher
    from novaconsole.engine.fleet_sync import FleetSync
    from novaconsole.engine.lifecycle import Lifecycle
    from novaconsole.engine.polling import Poller
    from novaconsole.engine.reporting import Reporter
    from novaconsole.engine.retries import RetryTracker
    from novaconsole.engine.slots import SlotRunner

_T = TypeVar("_T")

RECENT = 200
"""Final outcomes kept for ``ProcessingService.recent_outcomes``."""


def now() -> datetime:
    return datetime.now(UTC)


def describe(error: BaseException) -> str:
    """``Type: message`` of an error a handler raised, redacted (it is item data). For a
    SQLAlchemy statement's error, the driver's first line: not the statement, its parameters
    (hundreds of ids, or a handler's values) and the link SQLAlchemy adds, which the
    traceback keeps."""
    try:
        text = driver_message(error) if isinstance(error, StatementError) else str(error)
    except Exception:  # its own __str__ raised: the item fails, not the service
        text = "<exception str() failed>"  # what Python's tracebacks print then
    return redact(f"{type(error).__name__}: {text}" if text else type(error).__name__)


def cancelled_by_us() -> bool:
    """True when a cancel scope around the current task was cancelled: the service's own
    cancellation (or its host's), as opposed to a ``CancelledError`` a handler raised."""
    return anyio.current_effective_deadline() == -math.inf


def first(value: _T | None, default: _T) -> _T:
    """``value`` unless it is None (a per-handler 0 is a setting, not "unset")."""
    return default if value is None else value


def log_extra(handler: str, item_id: Any = None) -> dict[str, Any]:
    extra: dict[str, Any] = {"handler": handler}
    if item_id is not None:
        extra["item_id"] = shown_id(item_id)
    return extra


def wake(*events: anyio.Event) -> None:
    for event in events:
        event.set()


class EngineCore:
    """Mutable state of one service, shared by its collaborators (all on one event loop)."""

    lifecycle: Lifecycle
    controls: OperatorControls
    poller: Poller
    fetcher: Fetcher
    slot_runner: SlotRunner
    failures: Failures
    fleet_sync: FleetSync
    reporter: Reporter
    breakers: Breakers
    retries: RetryTracker
    crashes: CrashGuard

    def __init__(
        self,
        *,
        options: ProcessingOptions,
        retry: RetryPolicy,
        registrations: Sequence[HandlerRegistration],
        store: StateStore | None,
        session_factory: SessionFactory | None,
        database_url: str | None,
        worker_id: str | None,
        observers: Sequence[Observer] = (),
    ) -> None:
        self.options = options
        self.retry = retry
        self.registrations = tuple(registrations)
        self.store: StateStore = store if store is not None else MemoryStateStore()
        self.session_factory = session_factory
        self.writer: ItemWriter | None = (
            self.store if hasattr(self.store, "submit_writes") else None  # type: ignore[assignment]
        )
        self.committing = 0
        """Items whose ``ctx.write()`` statements wait for (or are in) the writer's commit."""
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.database_display: str = getattr(self.store, "display_url", None) or (
            redact(database_url) if database_url else "memory (nothing persisted)"
        )
        self.queue = FairQueue(options.queue_capacity)
        self.runtimes: dict[str, HandlerRuntime] = {}
        for registration in self.registrations:
            runtime = HandlerRuntime(
                registration=registration,
                poll_interval=first(registration.poll_interval, options.poll_interval),
                item_timeout=first(registration.item_timeout, options.item_timeout),
                max_attempts=first(registration.max_attempts, retry.max_attempts),
                batch_size=registration.max_items_per_cycle,
            )
            self.runtimes[registration.name] = runtime
            self.queue.add_runtime(runtime)
        self.hub = EventHub()
        self.observers: tuple[Observer, ...] = tuple(observers)
        self.concurrency = options.max_concurrency
        self.paused = False
        self.state = "stopped"
        self.cycles = 0
        self.last_cycle_duration: float | None = None
        self.in_flight = 0
        self.slot_count = 0
        self.retry_heap: list[tuple[float, int, Job]] = []
        self.sequence = count()
        self.coordinator: Coordinator | None = getattr(self.store, "coordinator", None)
        self.source_filter: SourceFilter | None = getattr(self.store, "source_filter", None)
        self.store_round_trips: bool = getattr(self.store, "round_trips", False)
        """The store's database is a server (PostgreSQL), not in this process (SQLite)."""
        self.fleet: tuple[WorkerView, ...] = ()
        self.unfinished: list[Claim] = []
        self.started_at = now()
        self.recent: deque[ItemOutcome] = deque(maxlen=RECENT)
        self.throughput = Throughput()
        self.latency = LatencySamples()
        self.totals = {"succeeded": 0, "failed": 0, "skipped": 0}
        self.task_group: TaskGroup | None = None
        self.slot_group: TaskGroup | None = None
        self.fetch_scopes: set[anyio.CancelScope] = set()
        self.slots: set[Slot] = set()
        self.stopping = False
        self.drained: anyio.Event | None = None
        self.work = anyio.Event()
        self.poll_wake = anyio.Event()
        self.retry_wake = anyio.Event()
        self.idle = anyio.Event()

    @property
    def is_running(self) -> bool:
        return self.state in ("running", "paused", "draining")

    @property
    def alone(self) -> bool:
        """Whether no other worker takes this one's items: no coordinator, or the last
        heartbeat found no other live worker."""
        return self.coordinator is None or alone_in(self.fleet, self.worker_id)

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.hub.publish(ServiceStateChanged(state))

    def runtime(self, name: str) -> HandlerRuntime:
        try:
            return self.runtimes[name]
        except KeyError:
            known = ", ".join(self.runtimes) or "none"
            raise KeyError(f"no handler named {name!r} (registered: {known})") from None
