"""Starting a service, draining it and leaving it stopped."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio

from novaconsole.engine.core import RECENT, EngineCore, now, wake
from novaconsole.engine.fleet_protocol import Claim
from novaconsole.engine.loop_watchdog import LoopWatchdog, engine_culprits
from novaconsole.engine.outcomes import OutcomeStatus, shown_id
from novaconsole.engine.scheduling import Job

log = logging.getLogger("novaconsole.engine")
_S = TypeVar("_S")


NAMED = 10
"""Items named in a drain's log lines; the rest are counted."""


class Lifecycle:
    """``running()`` and ``drain()``: the service's task group from start to stop."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core
        self.forced = False
        """``cancel_drain()`` was called: the drain cancels what is left at once."""
        self._grace: anyio.CancelScope | None = None

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
                group.start_soon(core.breakers.run)
                group.start_soon(core.store.run)
                group.start_soon(core.fleet_sync.run)
                # Run even with no warning (0): a force quit asks it whether the loop is blocked.
                blocked = max(core.options.blocked_loop_warning.total_seconds(), 0.0)
                group.start_soon(LoopWatchdog(blocked, engine_culprits()).run)
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
        self.forced = False

    async def drain(self) -> None:
        core = self.core
        if core.drained is not None:
            await core.drained.wait()
            return
        core.drained = drained = anyio.Event()
        core.stopping = True
        core.set_state("draining")
        grace = core.options.shutdown_grace.total_seconds()
        if core.in_flight or core.fetch_scopes:
            log.info("draining: waiting up to %gs for %s", grace, self._left())
        else:
            log.info("draining: nothing in flight")
        wake(core.poll_wake, core.retry_wake, core.work)
        for job in core.queue.remove_all():
            self.abandon(job)
        for _, _, job in core.retry_heap:
            job.scope.runtime.retrying -= 1
            self.abandon(job)
        core.retry_heap.clear()
        core.breakers.abandon_held()
        # Fetches and items under way finish (cancelling database work mid-statement can
        # strand connections); whatever is still running after the grace is cancelled.
        with anyio.move_on_after(grace) as self._grace:
            if self.forced:
                self._grace.cancel()
            await self._until_idle()
        self._grace = None
        if core.in_flight or core.fetch_scopes:
            log.warning(
                "%s: cancelling %s",
                "force quit" if self.forced else f"shutdown grace of {grace:g}s over",
                self._left(),
            )
            for scope in list(core.fetch_scopes):
                scope.cancel()
            if core.slot_group is not None:
                core.slot_group.cancel_scope.cancel()
            # Writes still held (a database that is down) are the store's to flush at close.
            await self._until_idle(committing=False)
        drained.set()

    def cancel_drain(self) -> bool:
        """Force quit: end the grace now (or, before the drain, give it none)."""
        self.forced = True
        if self._grace is not None:
            self._grace.cancel()
        drained = self.core.drained
        return drained is not None and not drained.is_set()

    def _left(self) -> str:
        """What the drain waits for, by name: ``3 items (A#17, A#18, B#2) and 1 fetch``."""
        core = self.core
        names = [
            f"{slot.job.scope.runtime.name}#{shown_id(slot.job.item_id)}"
            for slot in core.slots
            if slot.job is not None
        ]
        names.sort()
        shown = ", ".join(names[:NAMED])
        if len(names) > NAMED:
            shown += f", and {len(names) - NAMED} more"
        parts = [f"{len(names)} item{'' if len(names) == 1 else 's'} ({shown})"] if names else []
        if core.fetch_scopes:
            count = len(core.fetch_scopes)
            parts.append(f"{count} fetch{'' if count == 1 else 'es'}")
        return " and ".join(parts) or "nothing"

    async def _until_idle(self, *, committing: bool = True) -> None:
        core = self.core
        while core.in_flight or core.fetch_scopes or (committing and core.committing):
            core.idle = anyio.Event()
            await core.idle.wait()

    def give_back_paused(self) -> None:
        """With workers sharing work, a pause hands the items this worker queued but has not
        started back to the fleet: dropped here, their claims released, so that a run-once on
        any worker can take them (the source keeps them pending; after the resume a fetch
        returns them). Alone, queued items wait here for the resume."""
        core = self.core
        if core.coordinator is None or core.task_group is None or core.stopping:
            return
        jobs = core.queue.remove_paused()
        if not jobs:
            return
        for job in jobs:
            self.abandon(job)
        log.debug("paused: %d queued items given back to the fleet", len(jobs))
        core.task_group.start_soon(core.fleet_sync.release_unfinished)

    def abandon(self, job: Job) -> None:
        """A job dropped before it ran (shutdown, a pause in a fleet): its source keeps it
        pending; a run-once still hears of it."""
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
