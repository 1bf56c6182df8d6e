"""The poll loop and cycles: which handlers are due, and ``run_once()``."""

from __future__ import annotations

import logging
from time import monotonic

import anyio

from novaconsole.engine.core import EngineCore, now
from novaconsole.engine.events import CycleFinished, CycleStarted
from novaconsole.engine.outcomes import CycleReport
from novaconsole.engine.runtime import HandlerRuntime
from novaconsole.engine.scheduling import Tracker

log = logging.getLogger("novaconsole.engine")


class Poller:
    """Starts a cycle for each handler whose poll interval is over; runs cycles on demand."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core

    async def run(self) -> None:
        core = self.core
        delay = core.options.startup_delay.total_seconds()
        if delay:
            log.info("waiting %ss before the first cycle", delay)
            with anyio.move_on_after(delay):
                await self._sleep_until_stopping()
        while not core.stopping:
            at = monotonic()
            due: list[HandlerRuntime] = []
            if not core.paused:
                due = [
                    rt
                    for rt in core.runtimes.values()
                    if rt.enabled
                    and not rt.paused
                    and not rt.busy
                    and rt.gate != 1
                    and rt.next_due <= at
                ]
            if due:
                self._start_cycle(due)
            waits = [
                rt.next_due - at
                for rt in core.runtimes.values()
                if rt.enabled
                and not rt.paused
                and not rt.busy
                and rt.gate != 1
                and rt.next_due > at
            ]
            core.poll_wake = anyio.Event()
            if core.paused or not waits:
                await core.poll_wake.wait()
            else:
                with anyio.move_on_after(min(waits)):
                    await core.poll_wake.wait()

    async def _sleep_until_stopping(self) -> None:
        core = self.core
        while not core.stopping:
            core.poll_wake = anyio.Event()
            await core.poll_wake.wait()

    def _start_cycle(self, due: list[HandlerRuntime]) -> None:
        core = self.core
        assert core.task_group is not None
        core.cycles += 1
        cycle = core.cycles
        names = tuple(rt.name for rt in due)
        log.debug("cycle %d: fetching from %s", cycle, ", ".join(names))
        core.hub.publish(CycleStarted(cycle, names))
        tracker = Tracker(CycleReport(cycle=cycle, started_at=now()))
        tracker.fetching = len(due)
        for rt in due:
            rt.busy = True
            core.task_group.start_soon(core.fetcher.fetch_into_queue, rt, tracker, False)
        core.task_group.start_soon(self._finish_cycle, tracker)

    async def _finish_cycle(self, tracker: Tracker) -> None:
        await tracker.done.wait()
        self._close_report(tracker)

    def _close_report(self, tracker: Tracker) -> None:
        core = self.core
        report = tracker.report
        report.finished_at = now()
        core.last_cycle_duration = report.duration
        items = len(report.outcomes) or tracker.items
        core.hub.publish(CycleFinished(report.cycle, report.duration, items))
        log.debug("cycle %d done in %.3fs: %d items", report.cycle, report.duration, items)

    async def run_once(self, handler: str | None = None) -> CycleReport:
        core = self.core
        if not core.is_running or core.stopping:
            raise RuntimeError("run_once() needs a running service: use `async with running()`")
        if handler is not None:
            core.runtime(handler)  # KeyError naming the handlers there are
        core.cycles += 1
        runtimes = [
            rt
            for rt in core.runtimes.values()
            if rt.enabled
            and (rt.name == handler or (handler is None and not rt.paused and not rt.gate))
        ]
        tracker = Tracker(CycleReport(cycle=core.cycles, started_at=now()))
        tracker.fetching = len(runtimes)
        core.hub.publish(CycleStarted(core.cycles, tuple(rt.name for rt in runtimes)))
        async with anyio.create_task_group() as group:
            for rt in runtimes:
                group.start_soon(core.fetcher.fetch_into_queue, rt, tracker, True)
        tracker.settle()
        await tracker.done.wait()
        self._close_report(tracker)
        return tracker.report

    def handler_settled(
        self, rt: HandlerRuntime, *, more_waiting: bool = False, due_in: float | None = None
    ) -> None:
        """A poll-loop batch is through its first pass: the handler is due after its interval,
        at once when the batch was full and is half through (``more_waiting``), or after
        ``due_in`` seconds when given."""
        rt.busy = False
        if due_in is None:
            due_in = 0.0 if more_waiting else rt.poll_interval.total_seconds()
        rt.next_due = monotonic() + due_in
        self.core.poll_wake.set()
