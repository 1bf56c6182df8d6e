"""The operator's side of the console on a real service: the pause dialog (reason, expiry,
who), the honest retry followed to its end, and what a handler row says about pauses and
dead items."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from textual.widgets.data_table import ColumnKey

from novaconsole.console import NovaConsole
from novaconsole.console.screens.pause_dialog import PauseDialog
from novaconsole.console.steering import CONSOLE, parse_duration
from novaconsole.console.view_models import handler_note
from novaconsole.engine.operator import PauseInfo
from tests.console.support import (
    T0,
    WHYS,
    FixedService,
    Source,
    build_service,
    every_handler_paused,
    wait_until,
)

pytestmark = pytest.mark.anyio


async def test_p_pauses_with_the_reason_and_expiry_typed_and_who_did_it() -> None:
    service = build_service({"A": Source([])})
    async with service.running():
        app = NovaConsole(service, refresh_interval=None)
        async with app.run_test() as pilot:
            await pilot.press("p")
            assert isinstance(app.screen, PauseDialog)
            await pilot.press(*"db maintenance", "tab", *"1h30m", "enter")
            assert not isinstance(app.screen, PauseDialog)
            snapshot = service.snapshot()
            assert snapshot.paused
            assert snapshot.pause is not None
            assert snapshot.pause.reason == "db maintenance"
            assert snapshot.pause.by == CONSOLE
            assert snapshot.pause.at is not None and snapshot.pause.resumes_at is not None
            assert snapshot.pause.resumes_at - snapshot.pause.at == timedelta(hours=1, minutes=30)


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
async def test_a_bad_duration_keeps_the_dialog_open_and_says_why() -> None:
    service = build_service({"A": Source([])})
    async with service.running():
        app = NovaConsole(service, refresh_interval=None)
        async with app.run_test() as pilot:
            await pilot.press("space", "tab", *"soon", "enter")
            assert isinstance(app.screen, PauseDialog)
            assert "not a duration" in str(app.screen.query_one("#pause-error").render())
            assert not service.snapshot().handlers["A"].paused
            await pilot.press("escape")
            assert not isinstance(app.screen, PauseDialog)
            assert not service.snapshot().handlers["A"].paused


async def test_retry_says_nothing_to_retry_then_follows_a_real_retry_to_its_end() -> None:
    source = Source([7], fail={7})
    service = build_service({"A": source})
    async with service.running():
        app = NovaConsole(service, refresh_interval=None)
        said: list[str] = []
        notify = app.notify
        app.notify = lambda message, **kw: (said.append(message), notify(message, **kw))[1]  # type: ignore[method-assign]
        async with app.run_test() as pilot:
            app.retry_item("A", 99)
            await wait_until(pilot, lambda: "nothing to retry" in said)
            await pilot.press("r")
            await wait_until(pilot, lambda: service.snapshot().handlers["A"].failed == 1)
            app.retry_item("A", 7)
            await wait_until(pilot, lambda: said[-1].startswith("retry requested"))
            await pilot.press("r")  # the cycle that fetches it again

            def ended() -> bool:
                app.refresh_view()
                return any(m.startswith("ran again: failed") for m in said)

            await wait_until(pilot, ended, limit=20)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("1h30m", 5400), ("90s", 90), ("01:30:00", 5400), ("2:00", 120), ("", None)],
)
def test_parse_duration(text: str, seconds: int | None) -> None:
    parsed = parse_duration(text)
    assert (None if parsed is None else parsed.total_seconds()) == seconds


@pytest.mark.parametrize("text", ["soon", "0m", "1x", "1:2:3:4", "-5m"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_handler_note_says_pause_then_dead_items_before_the_last_error() -> None:
    view = FixedService().snapshot().handlers["PhysicalDeletion"]
    dead = replace(view, dead_items=3, last_error="boom")
    assert handler_note(dead, T0) == "3 dead items returned by fetch_next"
    paused = replace(
        dead,
        paused=True,
        pause=PauseInfo(by="cli@ops1", at=T0 - timedelta(minutes=12), reason="db maintenance"),
    )
    # the why first, so that a narrow column keeps it; who and when after it
    assert handler_note(paused, T0) == "db maintenance · by cli@ops1 12 min ago"
    assert handler_note(replace(view, last_error="boom"), T0) == "boom"


def table_text(app: NovaConsole) -> list[str]:
    table = app.handlers_table
    return [table.render_line(y).text for y in range(table.size.height)]


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)])
async def test_every_paused_handler_says_why_at_every_size(size: tuple[int, int]) -> None:
    """The why column comes before the counts when handlers are paused with a reason: at
    80x24 each reason's beginning is on screen (it was dropped with the last error column),
    the rest wraps onto a second line, and nothing runs off the table."""
    app = NovaConsole(every_handler_paused(), refresh_interval=None, clock=lambda: T0)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        table = app.handlers_table
        assert "last_error" in table.column_keys
        assert table.columns[ColumnKey("last_error")].label.plain == "Why / last error"
        shown = " ".join(" ".join(table_text(app)).split())  # the lines of a why run on
        assert "db maintenance until the nightly" in shown
        assert "feed broken" in shown
        assert "smtp relay rate limit · until 13:" in shown
        assert "\x1b" not in shown and "\x07" not in shown  # escapes shown, never sent
        assert "\\x1b[2J" in shown  # as visible text
        assert all(len(line) <= table.size.width for line in table_text(app))
        assert table.virtual_size.width <= table.scrollable_content_region.width
        for name in WHYS:
            assert table.get_row_height(name) == 2  # wrapped, then cut with an ellipsis
        if size[0] >= 200:  # room for all of the first reason, who and when
            assert "finishes, ask ops · by console@ops1 1 min ago" in shown
        if size[0] == 80:  # the counts made room for the why
            assert "succeeded" not in table.column_keys
