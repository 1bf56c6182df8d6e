"""Starting a service, draining it and leaving it stopped."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio

from novaconsole.engine.core import RECENT, EngineCore, now, wake
from novaconsole.engine.fleet_protocol import Claim
from novaconsole.engine.outcomes import OutcomeStatus
from novaconsole.engine.scheduling import Job

log = logging.getLogger("novaconsole.engine")
_S = TypeVar("_S")


class Lifecycle:
    """``running()`` and ``drain()``: the service's task group from start to stop."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core

    @asynccontextmanager
    async def running(self, service: _S, *, poll: bool) -> AsyncIterator[_S]:
        core = self.core
        if core.state != "stopped":
            raise RuntimeError("the service is already running")
        self._reset_events()
        core.state = "starting"
        core.started_at = now()
        await core.store.open()
        core.controls.apply(await core.store.load_controls())
        recorded = getattr(core.store, "recent_outcomes", None)
        if recorded is not None and not core.recent:
            core.recent.extend(await recorded(RECENT))
        try:
            async with anyio.create_task_group() as group:
                core.task_group = group
                await group.start(core.slot_runner.run)
                group.start_soon(core.slot_runner.watchdog)
                group.start_soon(core.failures.retry_loop)
                group.start_soon(core.store.run)
                group.start_soon(core.fleet_sync.run)
                if poll:
                    group.start_soon(core.poller.run)
                core.set_state("paused" if core.paused else "running")
                log.info(
                    "novaconsole started: %d handlers, concurrency %d, database %s",
                    len(core.runtimes),
                    core.concurrency,
                    core.database_display,
                )
                try:
                    yield service
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.drain()
                    group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._close_scopes()
                await core.fleet_sync.release_unfinished()
                await core.store.close()
                core.task_group = None
                core.set_state("stopped")
                log.info("novaconsole stopped")
                core.hub.close()

    def _reset_events(self) -> None:
        core = self.core
        core.work = anyio.Event()
        core.poll_wake = anyio.Event()
        core.retry_wake = anyio.Event()
        core.idle = anyio.Event()
        core.drained = None
        core.stopping = False

    async def drain(self) -> None:
        core = self.core
        if core.drained is not None:
            await core.drained.wait()
            return
        core.drained = drained = anyio.Event()
        core.stopping = True
        core.set_state("draining")
        log.info("draining: %d items in flight", core.in_flight)
        wake(core.poll_wake, core.retry_wake, core.work)
        for job in core.queue.remove_all():
            self.abandon(job)
        for _, _, job in core.retry_heap:
            job.scope.runtime.retrying -= 1
            self.abandon(job)
        core.retry_heap.clear()
        # Fetches and items under way finish (cancelling database work mid-statement can
        # strand connections); whatever is still running after the grace is cancelled.
        with anyio.move_on_after(core.options.shutdown_grace.total_seconds()):
            await self._until_idle()
        if core.in_flight or core.fetch_scopes:
            log.warning(
                "shutdown grace of %ss over: cancelling %d items in flight and %d fetches",
                core.options.shutdown_grace.total_seconds(),
                core.in_flight,
                len(core.fetch_scopes),
            )
            for scope in list(core.fetch_scopes):
                scope.cancel()
            if core.slot_group is not None:
                core.slot_group.cancel_scope.cancel()
            # Writes still held (a database that is down) are the store's to flush at close.
            await self._until_idle(committing=False)
        drained.set()

    async def _until_idle(self, *, committing: bool = True) -> None:
        core = self.core
        while core.in_flight or core.fetch_scopes or (committing and core.committing):
            core.idle = anyio.Event()
            await core.idle.wait()

    def abandon(self, job: Job) -> None:
        """A job dropped at shutdown: its source keeps it pending; a run-once still hears of it."""
        core = self.core
        runtime = job.scope.runtime
        runtime.active.pop(job.key, None)
        if core.crashes.ledger is not None:
            core.crashes.ledger.forget_started(runtime.name, (job.key,))
        if job.token is not None and not job.lost:
            core.unfinished.append(Claim(runtime.name, job.key, job.token))
        if job.trackers:
            core.reporter.finish(
                job, OutcomeStatus.CANCELLED, "service stopped before the item ran"
            )
        else:
            core.fetcher.settle_scope(job)

    async def _close_scopes(self) -> None:
        for runtime in self.core.runtimes.values():
            for scope in list(runtime.scopes):
                await self.core.fetcher.close_scope(scope)
