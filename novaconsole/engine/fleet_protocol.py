"""The fleet protocol the store implements: how worker processes share work through one
database (claims, heartbeats, fleet commands).

The engine talks to a :class:`Coordinator` when its store offers one (``store.coordinator``).
Before an item is queued its worker claims (handler, item id) with a lease and a fencing
token; the lease is renewed while the item is queued, running or waiting for a retry, and
released when its outcome is recorded, which the store accepts only with the current token.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Claim:
    """A worker's hold on one item, valid while its token is the current one."""

    handler: str
    item_id: str
    token: int


@dataclass(frozen=True, slots=True)
class WorkerBeat:
    """What a worker says of itself at each heartbeat."""

    worker_id: str
    state: str
    in_flight: int
    processed: int
    started_at: datetime


@dataclass(frozen=True, slots=True)
class WorkerView:
    """One worker of the fleet as the database knows it."""

    worker_id: str
    state: str
    in_flight: int
    processed: int
    started_at: datetime
    last_beat: datetime
    alive: bool
    """False when it has been silent for longer than its lease."""


def alone_in(fleet: Sequence[WorkerView], worker_id: str) -> bool:
    """Whether ``fleet`` (the last heartbeat's) has no live worker but ``worker_id``; False
    before the first heartbeat, when nothing is known."""
    return bool(fleet) and all(w.worker_id == worker_id or not w.alive for w in fleet)


@dataclass(frozen=True, slots=True)
class Command:
    """An operator command taken by exactly one worker of the fleet (``run_once``)."""

    id: int
    kind: str
    args: Mapping[str, Any]


class Coordinator(Protocol):
    """The fleet side of a store shared by several workers."""

    async def now(self) -> datetime:
        """The coordination clock (the database's): read before a fetch, passed to claim."""

    async def claim(
        self,
        worker_id: str,
        handler: str,
        item_ids: Sequence[str],
        lease: float,
        fetched_at: datetime | None = None,
    ) -> Mapping[str, int]:
        """Claim what is free (or whose lease expired); the fencing token of each claimed id.

        An item finished by another worker is taken again only by a fetch that started after
        it finished (``fetched_at``, from :meth:`now`; ``None``: never).
        """

    def renewal_due(self) -> bool:
        """Whether :meth:`renew` would write now: the caller builds its list of claims only
        then (the coordination loop runs far more often than leases need renewing)."""

    async def renew(
        self, worker_id: str, claims: Sequence[Claim], lease: float
    ) -> Collection[Claim]:
        """Extend leases; return the claims this worker no longer holds."""

    async def release(self, worker_id: str, claims: Sequence[Claim]) -> None:
        """Give claims back unfinished (shutdown): other workers may take them at once."""

    async def beat(self, beat: WorkerBeat, lease: float) -> Sequence[WorkerView]:
        """Record this worker's heartbeat; the fleet as it stands."""

    async def take_commands(self, worker_id: str) -> Sequence[Command]:
        """Fleet commands for this worker to carry out, each handed to one worker only."""
