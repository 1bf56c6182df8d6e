"""Cheap, immutable views of the service's current state for front ends."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from novaconsole.engine.fleet_protocol import WorkerView
from novaconsole.engine.handler import HandlerPurpose
from novaconsole.engine.operator import PauseInfo


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0


@dataclass(frozen=True, slots=True)
class Latency:
    """Recent item latency in seconds, split into fetch, queue wait and processing."""

    fetch: Percentiles = Percentiles()
    queue: Percentiles = Percentiles()
    process: Percentiles = Percentiles()


@dataclass(frozen=True, slots=True)
class HandlerView:
    """One handler as the service sees it now."""

    name: str
    purpose: HandlerPurpose
    paused: bool
    enabled: bool
    batch_size: int
    configured_batch_size: int
    succeeded: int
    failed: int
    last_error: str | None
    skipped: int = 0
    in_flight: int = 0
    queued: int = 0
    retrying: int = 0
    last_run: datetime | None = None
    next_poll_in: float | None = None
    failing: bool = False
    """The last fetch failed, or the last final outcome was a failure."""
    tripped: bool = False
    """Its circuit breaker is open (or running its one trial): nothing fetched or started."""
    breaker_reason: str | None = None
    """``breaker: 5 failures in a row: <error>`` while tripped."""
    breaker_retry_in: float | None = None
    """Seconds to the breaker's next trial (0 while it runs) when tripped."""
    pause: PauseInfo | None = None
    """While paused: by whom, when, why and until when (``None`` if not known)."""
    dead_items: int = 0
    """Items out of attempts in the latest fetch: skipped until an operator retries them."""
    dead_returned: int = 0
    """How often ``fetch_next`` returned an item out of attempts since the start (each one
    is recorded ``skipped`` once, not on every poll)."""
    latency: Percentiles = Percentiles()
    """Processing time (seconds) of its items finished in the last minute, at most the
    last 512 (all zero when none)."""
    latency_samples: int = 0
    """How many items ``latency`` covers (0: none finished in the last minute)."""

    @property
    def state(self) -> str:
        """``disabled``, ``paused``, ``tripped``, ``failing`` or ``active``."""
        if not self.enabled:
            return "disabled"
        if self.paused:
            return "paused"
        if self.tripped:
            return "tripped"
        if self.failing:
            return "failing"
        return "active"

    @property
    def batch_size_changed(self) -> bool:
        return self.batch_size != self.configured_batch_size


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The service at one instant. Taking one has no side effects."""

    state: str
    """``starting``, ``running``, ``paused``, ``draining`` or ``stopped``."""
    paused: bool
    concurrency: int
    configured_concurrency: int
    queue_depth: int
    queue_capacity: int
    in_flight: int
    cycles: int
    handlers: Mapping[str, HandlerView]
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    retrying: int = 0
    rate: float = 0.0
    """Final outcomes per second over the last few seconds."""
    throughput: tuple[float, ...] = ()
    """Outcomes per second, one value per second, oldest first (bounded window)."""
    next_poll_in: float | None = None
    last_cycle_duration: float | None = None
    latency: Latency = field(default_factory=Latency)
    database: str = "memory"
    worker_id: str = ""
    workers: tuple[WorkerView, ...] = ()
    """Every worker sharing the database (empty when this one works alone)."""
    pause: PauseInfo | None = None
    """While everything is paused: by whom, when, why and until when."""

    @property
    def totals(self) -> dict[str, int]:
        return {"succeeded": self.succeeded, "failed": self.failed, "skipped": self.skipped}
