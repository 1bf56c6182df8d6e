"""``ctx.write()``: an item's statements, queued while ``process`` runs and handed with the
item's outcome to the store's one writer.

The engine does not write: it hands an :class:`ItemWriter` (the store) the item's
:class:`ItemWrites` and its success outcome, and moves on. The writer runs the statements of
every item waiting, the outcome rows and (when work is shared) the claims' completion in one
transaction; so an item is never done at its source without its result, nor recorded without
its writes. ``done(error)`` tells the engine how it went: ``None`` (committed, outcome written)
or the item's own error (its statements failed: only they were rolled back, nothing recorded).
A database that cannot be written (unreachable, full, locked) is not the item's error: the
writer holds the item and retries; ``done`` waits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy.sql import Executable

    from novaconsole.engine.outcomes import ItemOutcome

Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None

WriteDone = Callable[["BaseException | None"], None]
"""Called once by the writer with ``None`` (committed) or the item's error."""


class ItemWrites:
    """What one item will write: statements run after its block, in its group's transaction."""

    __slots__ = ("statements",)

    def __init__(self) -> None:
        self.statements: list[tuple[Executable, Params]] = []

    def execute(self, statement: Executable | str, params: Params = None) -> None:
        """Queue ``statement``: any SQLAlchemy statement (Core or ``text()``), or SQL text with
        ``:name`` parameters; a list of parameter mappings runs it once for each."""
        if isinstance(statement, str):
            from sqlalchemy import text

            statement = text(statement)
        self.statements.append((statement, params))


class ItemWriter(Protocol):
    """The store's writer, as the engine sees it."""

    def submit_writes(
        self, writes: ItemWrites, outcome: ItemOutcome | None, done: WriteDone
    ) -> None:
        """Write ``writes`` and ``outcome`` (if any) in one transaction, then call ``done``."""


class WritesHolder:
    """Per slot: the writes the item in hand queued with ``ctx.write()``."""

    __slots__ = ("writes",)

    def __init__(self) -> None:
        self.writes: ItemWrites | None = None

    def add(self, statement: Executable | str, params: Params) -> None:
        if self.writes is None:
            self.writes = ItemWrites()
        self.writes.execute(statement, params)

    def take(self) -> ItemWrites | None:
        writes, self.writes = self.writes, None
        return writes


current_writes: ContextVar[WritesHolder | None] = ContextVar("novaconsole_writes", default=None)
"""Set by each slot: ``ctx.write()`` queues into it for the item being processed."""
