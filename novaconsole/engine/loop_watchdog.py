"""A watchdog outside the event loop that says when something blocks it.

A handler that calls ``time.sleep`` or blocking I/O in ``async def process`` stops everything
the loop runs: other items, heartbeats, lease renewal, item timeouts, the console. Nothing
inside the loop can notice, so a daemon thread does: the loop pets it every ``BEAT`` seconds,
and when the pets stop for longer than the threshold the thread looks at the loop thread's
stack, finds the item (or fetch) in hand and logs one warning naming it and the fix (one more
if, still blocked, another item takes over). When the loop runs again, one more line says how
long it was blocked.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from time import monotonic
from types import CodeType, FrameType
from typing import Any

import anyio

from novaconsole.engine.outcomes import shown_id

log = logging.getLogger("novaconsole.engine")

BEAT = 0.13
"""Seconds between the loop's pets (and between the thread's looks). Not 0.1: anyio's
``wait_all_tasks_blocked`` on asyncio looks every 0.1 s, and a task woken at that same period
falls into step with it and is found runnable at every look, so the wait (in a user's tests
of their handlers, as in ours) does not return for minutes."""

FIX = (
    "make the blocking call awaitable, run it with `await anyio.to_thread.run_sync(...)`, "
    "or write a plain `def process` (the engine runs it in a thread)"
)

Culprit = Callable[[FrameType], str | None]
"""Given one frame of the blocked loop thread's stack, what it is working on (or None)."""


_running: LoopWatchdog | None = None


def running_watchdog() -> LoopWatchdog | None:
    """The watchdog of the service running in this process, if any."""
    return _running


class LoopWatchdog:
    """Warns when the event loop has not run for ``threshold`` seconds.

    Args:
        threshold: seconds without a pet before the warning (0: no warning; the loop still
            pets it, so :meth:`blocked_for` can tell a blocked loop, e.g. to a force quit).
        culprits: by code object, how to name what a frame of that code is working on
            (``handler Foo, item 17``); the innermost match on the blocked stack wins.
    """

    def __init__(self, threshold: float, culprits: dict[CodeType, Culprit]) -> None:
        self.threshold = threshold
        self.culprits = culprits
        self._beat = monotonic()
        self._loop_thread = 0
        self._warned_at: float | None = None
        """The beat the thread warned about (set by the thread, cleared by the loop)."""

    async def run(self) -> None:
        """Pet the watchdog until cancelled; its thread lives exactly as long."""
        global _running
        self._loop_thread = threading.get_ident()
        self._beat = monotonic()
        stop = threading.Event()
        if self.threshold > 0:
            thread = threading.Thread(
                target=self._watch, args=(stop,), name="novaconsole-loop-watchdog", daemon=True
            )
            thread.start()
        previous, _running = _running, self
        try:
            while True:
                await anyio.sleep(BEAT)
                now = monotonic()
                warned, blocked_since = self._warned_at, self._beat
                self._beat = now
                if warned is not None:
                    self._warned_at = None
                    log.warning(
                        "the event loop ran again after being blocked for %.1f s",
                        now - blocked_since,
                    )
        finally:
            stop.set()
            _running = previous

    def blocked_for(self) -> float:
        """Seconds since the loop last ran this watchdog's pet."""
        return monotonic() - self._beat

    def culprit_of(self, frame: FrameType | None) -> str | None:
        """What the loop thread, at ``frame`` (a signal handler's), is working on."""
        while frame is not None:
            describe = self.culprits.get(frame.f_code)
            if describe is not None:
                found = describe(frame)
                if found:
                    return found
            frame = frame.f_back
        return None

    def _watch(self, stop: threading.Event) -> None:
        named: str | None = None
        while not stop.wait(BEAT / 2):
            beat = self._beat
            ongoing = self._warned_at == beat
            if not ongoing and monotonic() - beat < self.threshold:
                continue
            try:
                doing, where = self._culprit()
            except Exception:  # never let the watchdog die of an odd frame
                doing, where = None, None
            if self._beat != beat or stop.is_set():
                continue  # the loop ran again meanwhile
            if ongoing and doing == named:
                continue  # one warning per episode, unless the blocker changed
            self._warned_at, named = beat, doing
            log.warning(
                "the event loop has been blocked for %.1f s%s%s: nothing else runs meanwhile "
                "(other items, heartbeats, lease renewal, timeouts, the console); %s",
                monotonic() - beat,
                f" by {doing}" if doing else " (no handler in hand)",
                f", at {where}" if where else "",
                FIX,
            )

    def _culprit(self) -> tuple[str | None, str | None]:
        """What the blocked loop thread is working on, and where it is (innermost frame)."""
        frame: FrameType | None = sys._current_frames().get(self._loop_thread)
        where = _where(frame) if frame is not None else None
        return self.culprit_of(frame), where


def _where(frame: FrameType) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


def local(frame: FrameType, name: str) -> Any:
    """A local variable of a frame of the (blocked) loop thread."""
    return frame.f_locals.get(name)


def describe_item(handler: str, item_id: Any, what: str = "process") -> str:
    return f"handler {handler}, item {shown_id(item_id)} ({what})"


def engine_culprits() -> dict[CodeType, Culprit]:
    """How to name what the engine's own frames are working on: an item's attempt, its
    ``on_failure``, or a handler's fetch."""
    from novaconsole.engine.failures import Failures
    from novaconsole.engine.fetching import Fetcher
    from novaconsole.engine.slots import SlotRunner

    def job(what: str) -> Culprit:
        def culprit(frame: FrameType) -> str | None:
            held = local(frame, "job")
            if held is None:
                return None
            return describe_item(held.scope.runtime.name, held.item_id, what)

        return culprit

    def fetch(frame: FrameType) -> str | None:
        runtime = local(frame, "rt")
        return None if runtime is None else f"handler {runtime.name} (fetch_next)"

    return {
        SlotRunner._attempt.__code__: job("process"),
        Failures._call_on_failure.__code__: job("on_failure"),
        Fetcher._fetch.__code__: fetch,
    }
