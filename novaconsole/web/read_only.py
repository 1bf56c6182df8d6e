"""A console service that shows everything and changes nothing (``serve --read-only``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from novaconsole.console.runner import HostedService
    from novaconsole.engine.events import EventSubscription
    from novaconsole.engine.outcomes import CycleReport, ItemOutcome
    from novaconsole.engine.snapshot import Snapshot


class ReadOnlyError(PermissionError):
    """A control call refused because the console is read-only."""


class ReadOnlyService:
    """``service`` seen through a window: snapshots, events and results pass; every control
    call (pause, resume, run once, batch size, concurrency, retry) raises
    :class:`ReadOnlyError`. The console hides those keys when ``read_only`` is true; this
    refuses them even if something calls them anyway."""

    read_only = True

    def __init__(self, service: HostedService) -> None:
        self.service = service

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ReadOnlyService]:
        async with self.service.running():
            yield self

    def snapshot(self) -> Snapshot:
        """The service's snapshot (the console says read-only itself: see ``read_only``)."""
        return self.service.snapshot()

    def events(self, max_buffer: int = 10_000) -> EventSubscription:
        return self.service.events(max_buffer)

    def recent_outcomes(self) -> list[ItemOutcome]:
        return self.service.recent_outcomes()

    async def drain(self) -> None:
        await self.service.drain()

    async def audit(self, limit: int = 50) -> list[Any]:
        """The audit history (a read: shown, as in any console)."""
        audit = getattr(self.service, "audit", None)
        if audit is None:
            return []
        entries: list[Any] = await audit(limit)
        return entries

    def pause(self) -> None:
        _refuse("pause")

    def resume(self) -> None:
        _refuse("resume")

    def pause_handler(self, name: str) -> None:
        _refuse(f"pause {name}")

    def resume_handler(self, name: str) -> None:
        _refuse(f"resume {name}")

    def set_batch_size(self, name: str, size: int) -> None:
        _refuse(f"set the batch size of {name}")

    def set_concurrency(self, workers: int) -> None:
        _refuse("set the concurrency")

    async def run_once(self) -> CycleReport:
        _refuse("run a cycle")

    async def retry_item(self, handler: str, item_id: Any) -> bool:
        _refuse(f"retry {handler} item {item_id}")


def _refuse(what: str) -> NoReturn:
    raise ReadOnlyError(f"read-only console: cannot {what}")
