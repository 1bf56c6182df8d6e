"""The persistence protocol the store implements (:class:`StateStore`: outcomes, item
states, controls), and its in-memory form.

The store (``novaconsole.store``) implements :class:`StateStore` on a database; the engine
only talks to this interface. :class:`MemoryStateStore` keeps everything in the process and
persists nothing: it is for tests and for services built without a database.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from novaconsole.engine.operator import PauseInfo
from novaconsole.engine.outcomes import ItemOutcome


@dataclass(frozen=True, slots=True)
class ItemState:
    """What is remembered of an item that has failed at least once."""

    attempts: int
    dead: bool = False
    """Out of attempts: skipped until an operator retries it."""


@dataclass(slots=True)
class Controls:
    """Operator controls set at run time (``None``/absent: as configured, or unchanged).

    ``pause``/``handler_pauses`` say who paused, when, why and until when (absent for a pause
    written without them); ``by`` is who makes a change (kept in the audit history).
    """

    paused: bool | None = None
    concurrency: int | None = None
    handler_paused: dict[str, bool] = field(default_factory=dict)
    batch_sizes: dict[str, int] = field(default_factory=dict)
    pause: PauseInfo | None = None
    handler_pauses: dict[str, PauseInfo] = field(default_factory=dict)
    by: str | None = None

    def updated(self, change: Controls | None) -> Controls:
        """A copy with what ``change`` sets laid over it."""
        change = change or Controls()
        paused, pause = self.paused, self.pause
        if change.paused is not None:
            paused, pause = change.paused, change.pause if change.paused else None
        pauses = dict(self.handler_pauses)
        for name, is_paused in change.handler_paused.items():
            info = change.handler_pauses.get(name) if is_paused else None
            if info is None:
                pauses.pop(name, None)
            else:
                pauses[name] = info
        return Controls(
            paused,
            change.concurrency if change.concurrency is not None else self.concurrency,
            {**self.handler_paused, **change.handler_paused},
            {**self.batch_sizes, **change.batch_sizes},
            pause,
            pauses,
        )

    def effective(self, now: datetime) -> Controls:
        """A copy in which every pause whose expiry is past (``now``: the database clock) is
        resumed."""
        expired = [name for name, info in self.handler_pauses.items() if info.expired(now)]
        if not expired and not (self.pause is not None and self.pause.expired(now)):
            return self
        result = replace(
            self,
            handler_paused=dict(self.handler_paused),
            handler_pauses=dict(self.handler_pauses),
        )
        if self.pause is not None and self.pause.expired(now):
            result.paused, result.pause = False, None
        for name in expired:
            result.handler_paused[name] = False
            del result.handler_pauses[name]
        return result


class StateStore(Protocol):
    """Persistence behind the engine. Writes are buffered and must never block the hot path.

    Reads must see every write made before them (from this process), flushed or not.
    """

    async def open(self) -> None:
        """Prepare (create the schema, start nothing). Called once before anything else."""

    async def run(self) -> None:
        """Background work (periodic flushes) for as long as the service runs; cancelled at stop."""

    async def close(self) -> None:
        """Flush everything buffered and release resources."""

    def record(self, outcomes: Sequence[ItemOutcome]) -> None:
        """Buffer final outcomes for writing."""

    @property
    def accepting(self) -> bool:
        """False when the write buffer is too full: the engine starts no item until
        :meth:`wait_accepting` returns."""

    async def wait_accepting(self) -> None:
        """Wait until the store accepts outcomes again."""

    def set_item_state(self, handler: str, item_id: str, state: ItemState | None) -> None:
        """Remember (or, with ``None``, forget) an item's attempts."""

    async def item_states(self, handler: str, item_ids: Iterable[str]) -> Mapping[str, ItemState]:
        """The remembered state of those of ``item_ids`` that have one."""

    async def forget_item(self, handler: str, item_id: str) -> bool:
        """Forget an item's attempts (operator retry). True if there was something to forget."""

    async def load_controls(self) -> Controls:
        """The controls persisted by an earlier run."""

    def save_controls(self, change: Controls) -> None:
        """Persist what ``change`` sets, leaving every other control as stored (buffered):
        workers sharing a database must not overwrite each other's settings."""


class MemoryStateStore:
    """A :class:`StateStore` that keeps everything in this process and persists nothing."""

    def __init__(self, keep_outcomes: int = 10_000) -> None:
        self.outcomes: deque[ItemOutcome] = deque(maxlen=keep_outcomes)
        self._items: dict[tuple[str, str], ItemState] = {}
        self._controls = Controls()

    async def open(self) -> None:
        return None

    async def run(self) -> None:
        return None

    async def close(self) -> None:
        return None

    accepting = True

    async def wait_accepting(self) -> None:
        return None

    def record(self, outcomes: Sequence[ItemOutcome]) -> None:
        self.outcomes.extend(outcomes)

    def set_item_state(self, handler: str, item_id: str, state: ItemState | None) -> None:
        if state is None:
            self._items.pop((handler, item_id), None)
        else:
            self._items[(handler, item_id)] = state

    async def item_states(self, handler: str, item_ids: Iterable[str]) -> Mapping[str, ItemState]:
        if not self._items:
            return {}
        found = {}
        for item_id in item_ids:
            state = self._items.get((handler, item_id))
            if state is not None:
                found[item_id] = state
        return found

    async def forget_item(self, handler: str, item_id: str) -> bool:
        return self._items.pop((handler, item_id), None) is not None

    async def load_controls(self) -> Controls:
        return self._controls.updated(None).effective(datetime.now(UTC))

    def save_controls(self, change: Controls) -> None:
        self._controls = self._controls.updated(change)
