"""Pictures of every documented console state, from fixed data (no clock, no pids, no timer).

Regenerate after a deliberate change with ``pytest tests/console --snapshot-update`` and
look at the SVGs before committing them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from textual.command import CommandList

from novaconsole.engine.outcomes import OutcomeStatus
from tests.console.support import (
    FixedService,
    every_handler_paused,
    fill_stats,
    fixed_app,
    fixed_snapshot,
    wait_until,
)


async def _focus_results(pilot: Any) -> None:
    pilot.app.results.focus()
    await pilot.pause()


def _sizes(*sizes: tuple[int, int]) -> pytest.MarkDecorator:
    """The first size in the quick run (``-m "not slow"``), the others in the full one: a
    picture costs about a second on a quiet machine."""
    return pytest.mark.parametrize(
        "size",
        [
            pytest.param(size, id=str(size), marks=pytest.mark.slow if n else ())
            for n, size in enumerate(sizes)
        ],
    )


SIZES = _sizes((80, 24), (120, 40), (200, 60))
"""Every screen at the smallest supported terminal, a common one and a large one."""


@SIZES
def test_main_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    """Handlers table focused on PhysicalDeletion: active (green), failing CatalogueImport
    (red), paused NotificationExport (yellow), disabled LegacySync (muted); columns by
    width (80: name, state, succeeded, failed; 200: all, with the last error), never a
    horizontal scrollbar; "counts since start" under the table. Queue: depth bar, sparkline,
    148.5/s, busy 6/8, latency. Results newest first, one row of every status ("succeeded"
    green, failed/timeout red, cancelled yellow, skipped muted); at 80 no Duration column.
    Logs wrap (↳). Footer: as many keys as fit, help and quit first, no clipped key."""
    assert snap_compare(fixed_app(), terminal_size=size)


PAUSE_KEYS = ["p", *"db maintenance", "tab", *"30m"]
"""``p``, a reason, tab, a duration: the pause dialog filled in, not yet sent."""


def test_paused(snap_compare: Any) -> None:
    """After ``p``, a reason, enter: the status bar says PAUSED (warning colours),
    "everything paused by console@ops1 3 min ago: db maintenance" (no expiry: its wall-clock
    time would depend on the machine's zone), next poll "paused", and the footer offers
    "p Resume" instead of "p Pause"."""
    keys = ["p", *"db maintenance", "enter"]
    assert snap_compare(fixed_app(), press=keys, terminal_size=(120, 36))


PAUSE_WITH_REASONS = [
    "down",
    "space",
    *"vendor fixing the ISRC feed",
    "tab",
    *"1h",
    "enter",
    "p",
    *"db maintenance: vacuum of the results table after the 2.3 migration",
    "tab",
    *"10m",
    "enter",
]
"""CatalogueImport paused for an hour with a reason, then everything for ten minutes with a
long one (the fixed service dates them 1 and 3 minutes before the fixed clock)."""


@pytest.mark.slow  # about 100 keys typed; the fit itself is unit-tested in test_view_models
@SIZES
def test_paused_with_reasons(snap_compare: Any, size: tuple[int, int]) -> None:
    """Everything paused with a reason and an expiry, and one handler too: the status bar is
    one line that never runs off the screen, fields kept by priority. 80x24: "PAUSED  reason
    db maintenance: vacuum of …  until 12:07  paused CatalogueIm…" (no cycle, concurrency,
    worker or database). 120x40: more of the reason, "paused CatalogueImport: vendor fixin…",
    concurrency 8. 200x60: the reason whole, "paused CatalogueImport: vendor fixing the ISRC
    feed, until 12:59", cycle and concurrency. The handlers table's last column, "Why / last
    error", starts with CatalogueImport's reason over two lines ("vendor fixing the / ISRC
    feed · until…" at 80x24, beside the counts at 120x40, "… by console@ops1 1 / min ago"
    at 200x60; times in UTC)."""
    assert snap_compare(fixed_app(), press=PAUSE_WITH_REASONS, terminal_size=size)


@SIZES
def test_every_handler_paused_with_reasons(snap_compare: Any, size: tuple[int, int]) -> None:
    """Three handlers paused, each with a reason, LegacySync disabled: the last column,
    "Why / last error", comes before the counts; each why wraps onto a second line and ends
    in "…" when cut. 80x24: Handler, State, Why only ("db maintenance / until the nightly…",
    the hostile reason's escapes shown as text "feed broken\\x1b[2J", "smtp relay rate /
    limit · until 13:…"). 120x40: Succeeded and Failed back, the why 24 wide. 200x60: every
    column, the first reason whole with "by console@ops1 1 min ago"."""
    assert snap_compare(fixed_app(every_handler_paused()), terminal_size=size)


@_sizes((80, 24), (120, 40))
def test_pause_dialog(snap_compare: Any, size: tuple[int, int]) -> None:
    """``p`` opens "Pause everything": a reason ("db maintenance") and a duration ("30m")
    typed in, the hint "enter: pause · escape: cancel", the main screen dimmed behind."""
    assert snap_compare(fixed_app(), press=PAUSE_KEYS, terminal_size=size)


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
def test_handler_failing(snap_compare: Any) -> None:
    """Cursor on the failing CatalogueImport (``down``) and ``f`` twice: results of that
    handler only, titled "Results · CatalogueImport (4 of 8)", its failure on top in red."""
    assert snap_compare(fixed_app(), press=["down", "f", "f"], terminal_size=(120, 36))


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
def test_failed_only_filter(snap_compare: Any) -> None:
    """``f`` once: "Results · failed only (3 of 8)": failed, timeout and cancelled rows."""
    assert snap_compare(fixed_app(), press=["f"], terminal_size=(120, 36))


@SIZES
def test_result_detail(snap_compare: Any, size: tuple[int, int]) -> None:
    """The detail of the failed CatalogueImport item: handler, item, status, 3 attempts,
    timings, the error in red, every attempt (folded, never cut) and the traceback; footer
    offers Retry item, Copy id, Copy traceback."""

    async def open_failed(pilot: Any) -> None:
        await _focus_results(pilot)
        rows = pilot.app.results.rows
        index = next(i for i, o in enumerate(rows) if o.status is OutcomeStatus.FAILED)
        pilot.app.results.cursor = index
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(fixed_app(), terminal_size=size, run_before=open_failed)


@SIZES
def test_help(snap_compare: Any, size: tuple[int, int]) -> None:
    """``?``: every key with its action and what it does, the last column wrapped (never
    cut); tab/focus explained; then the per-handler palette commands (scroll at 80x24)."""
    assert snap_compare(fixed_app(), press=["question_mark"], terminal_size=size)


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
@SIZES
def test_stats(snap_compare: Any, size: tuple[int, int]) -> None:
    """``s`` after ten minutes of samples: one items/s sparkline per handler with its last
    and peak rate, all on one scale said in the heading ("one scale: █ 180/s"):
    CatalogueImport's bars reach the top, NotificationExport's (29/s at most, from half-way)
    stay low, PhysicalDeletion's (7/s) at the bottom, LegacySync flat at 0/s; then process
    latency p50 and p95, then per handler its own p50 and p95 side by side with "now p50 /
    p95", every latency plot on one scale said in both latency headings ("one scale: █ 495
    ms", the service's slow patch): the patch reaches the top of p95 and a third of p50, the
    service's p95 (95 ms) stays low and its p50 at the bottom; per handler, CatalogueImport's
    patch stands out, NotificationExport's p95 (60-75 ms) just above PhysicalDeletion's
    (20-35 ms) at the bottom, LegacySync flat and "-". Names that do not fit end in "…"
    (80x24); nothing is cut at the right edge; at 80x24 the body scrolls."""
    app = fixed_app()
    fill_stats(app)
    assert snap_compare(app, press=["s"], terminal_size=size)


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
@SIZES
def test_no_handlers(snap_compare: Any, size: tuple[int, int]) -> None:
    """A service with no handler: instead of empty panes, a warning box naming the config
    file looked in and how to add a handler."""
    service = FixedService(replace(fixed_snapshot(), handlers={}), outcomes=())
    app = fixed_app(service)
    app.config = "/srv/app/config.toml"
    assert snap_compare(app, terminal_size=size)


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
def test_search_results(snap_compare: Any) -> None:
    """80x24, ``/`` then "isrc": the search line at the bottom, results narrowed to the
    failed CatalogueImport row, the status bar says "filter /isrc"."""
    assert snap_compare(fixed_app(), press=["slash", *"isrc"], terminal_size=(80, 24))


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
def test_frozen(snap_compare: Any) -> None:
    """80x24, ``F``: results titled "· frozen", footer offers Unfreeze, status "frozen"."""
    assert snap_compare(fixed_app(), press=["tab", "F"], terminal_size=(80, 24))


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
def test_zoomed_results(snap_compare: Any) -> None:
    """80x24, tab then ``z``: the results pane fills the screen between status and footer."""
    assert snap_compare(fixed_app(), press=["tab", "z"], terminal_size=(80, 24))


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
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


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
def test_draining(snap_compare: Any) -> None:
    """What ``q`` shows while a hosted service drains (the keys themselves are tested in
    test_hosting): DRAINING… in reverse warning colours; the footer greys out every key but
    help and quit."""

    async def draining(pilot: Any) -> None:
        pilot.app.quitting = True  # what q sets before it stops the hosted service
        pilot.app.refresh_view()
        await pilot.pause()

    assert snap_compare(fixed_app(), terminal_size=(120, 36), run_before=draining)
