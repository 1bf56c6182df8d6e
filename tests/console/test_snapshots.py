"""Pictures of every documented console state, from fixed data (no clock, no pids, no timer).

Regenerate after a deliberate change with ``pytest tests/console --snapshot-update`` and
look at the SVGs before committing them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from textual.command import CommandList

from novaconsole.engine.outcomes import OutcomeStatus
from tests.console.support import FixedService, fixed_app, wait_until


async def _focus_results(pilot: Any) -> None:
    pilot.app.results.focus()
    await pilot.pause()


def test_main_screen(snap_compare: Any) -> None:
    """160x45, handlers table focused on PhysicalDeletion. Handlers: active (green),
    failing CatalogueImport (red, batch 80* marked as changed, last error), paused
    NotificationExport (yellow), disabled LegacySync (muted). Queue: depth 312/1,000 bar,
    a sparkline, 148.5/s, busy 6/8, latency p50/p95. Results newest first with one row of
    every status, coloured (ok green, failed/timeout red, cancelled yellow, skipped muted).
    Logs: info, a warning and an error coloured by level, with handler and item id."""
    assert snap_compare(fixed_app(), terminal_size=(160, 45))


def test_paused(snap_compare: Any) -> None:
    """After ``p``: the status bar says PAUSED (warning colours), next poll "paused", and
    the footer offers "p Resume" instead of "p Pause"."""
    assert snap_compare(fixed_app(), press=["p"], terminal_size=(120, 36))


def test_handler_failing(snap_compare: Any) -> None:
    """Cursor on the failing CatalogueImport (``down``) and ``f`` twice: results of that
    handler only, titled "Results · CatalogueImport (4 of 8)", its failure on top in red."""
    assert snap_compare(fixed_app(), press=["down", "f", "f"], terminal_size=(120, 36))


def test_failed_only_filter(snap_compare: Any) -> None:
    """``f`` once: "Results · failed only (3 of 8)": failed, timeout and cancelled rows."""
    assert snap_compare(fixed_app(), press=["f"], terminal_size=(120, 36))


def test_result_detail(snap_compare: Any) -> None:
    """The detail of the failed CatalogueImport item: handler, item, status, 3 attempts,
    timings, the error in red, a table with every attempt (time, duration, result) and the
    traceback."""

    async def open_failed(pilot: Any) -> None:
        await _focus_results(pilot)
        rows = pilot.app.results.rows
        index = next(i for i, o in enumerate(rows) if o.status is OutcomeStatus.FAILED)
        pilot.app.results.cursor = index
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(fixed_app(), terminal_size=(120, 40), run_before=open_failed)


def test_help(snap_compare: Any) -> None:
    """``?``: every key with its action, then the per-handler palette commands."""
    assert snap_compare(fixed_app(), press=["question_mark"], terminal_size=(120, 40))


def test_palette(snap_compare: Any) -> None:
    """ctrl+p and "pause handler": per-handler commands ("Pause handler PhysicalDeletion",
    …) and the fixed "Pause selected handler", matched letters highlighted."""

    async def search(pilot: Any) -> None:
        await pilot.press("ctrl+p")
        await pilot.press(*"pause handler")
        commands = pilot.app.screen.query_one(CommandList)
        await wait_until(pilot, lambda: commands.option_count >= 4)
        await pilot.pause()

    assert snap_compare(fixed_app(), terminal_size=(120, 36), run_before=search)


def test_narrow_terminal(snap_compare: Any) -> None:
    """80x24: still readable: the status bar shortens the database, handlers keep name,
    state, batch and counts, the queue panel is compact, results show an error column."""
    assert snap_compare(fixed_app(), terminal_size=(80, 24))


def test_wide_terminal(snap_compare: Any) -> None:
    """200x60: every handler column including purpose and last error, wider results."""
    assert snap_compare(fixed_app(), terminal_size=(200, 60))


def test_draining(snap_compare: Any) -> None:
    """After ``q`` (a hosted fake service whose drain never ends): DRAINING… in reverse
    warning colours; the footer greys out every key but help and quit."""

    class SlowDrain(FixedService):
        @asynccontextmanager
        async def running(self) -> AsyncIterator[SlowDrain]:
            try:
                yield self
            finally:
                await self.drain()
                await anyio.sleep_forever()

    assert snap_compare(fixed_app(SlowDrain()), press=["q"], terminal_size=(120, 36))
