"""The bounded buffer of outcomes on their way to the database.

Buffer policy: :meth:`OutcomeBuffer.add` never blocks the engine. Reaching ``flush_at``
buffered outcomes asks the writer to flush at once instead of at its next tick. Past half of
``capacity`` the store stops accepting (``SqlStore.accepting``) and the engine starts no new
item until the writer catches up, so the buffer holds at most that plus the items in flight.
Only if that bound were broken would further outcomes be dropped: counted in
:attr:`OutcomeBuffer.dropped` and logged as an error (once per episode, with the total when
writing resumes). Item states and controls are never dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from novaconsole.engine.outcomes import ItemOutcome

log = logging.getLogger("novaconsole.store")


class OutcomeBuffer:
    """Outcomes recorded but not yet written, oldest first."""

    def __init__(
        self, capacity: int = 50_000, flush_at: int = 1000, wake: Callable[[], None] | None = None
    ) -> None:
        if capacity < 1 or flush_at < 1:
            raise ValueError("capacity and flush_at must be at least 1")
        self.capacity = capacity
        self.flush_at = flush_at
        self.wake = wake
        self.dropped = 0
        self._items: list[ItemOutcome] = []
        self._dropped_in_episode = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, outcomes: Sequence[ItemOutcome]) -> None:
        """Buffer ``outcomes`` (see the module docstring for what happens when full)."""
        items = self._items
        before = len(items)
        room = self.capacity - before
        if len(outcomes) <= room:
            items.extend(outcomes)
        else:
            lost = len(outcomes) - max(room, 0)
            items.extend(outcomes[: max(room, 0)])
            if not self._dropped_in_episode:
                log.error(
                    "outcome buffer full (%d waiting): the database is not keeping up; "
                    "dropping new outcomes until it does",
                    len(items),
                )
            self._dropped_in_episode += lost
            self.dropped += lost
        if before < self.flush_at <= len(items) and self.wake is not None:
            self.wake()

    def take(self, limit: int) -> list[ItemOutcome]:
        """Remove and return up to ``limit`` of the oldest outcomes."""
        if len(self._items) <= limit:
            batch, self._items = self._items, []
        else:
            batch = self._items[:limit]
            del self._items[:limit]
        return batch

    def put_back(self, batch: list[ItemOutcome]) -> None:
        """Return a batch that could not be written to the front of the buffer."""
        self._items[:0] = batch

    def written(self) -> None:
        """A write succeeded: end an episode of drops, if any, with its total."""
        if self._dropped_in_episode and len(self._items) < self.capacity:
            log.error(
                "%d outcomes were dropped while the database was not keeping up",
                self._dropped_in_episode,
            )
            self._dropped_in_episode = 0

    def oldest(self) -> ItemOutcome | None:
        """The oldest buffered outcome, if any."""
        return self._items[0] if self._items else None

    def peek(self) -> list[ItemOutcome]:
        """The buffered outcomes, oldest first (a copy)."""
        return list(self._items)
