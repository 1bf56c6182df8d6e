"""The results pane: a bounded window, newest first, that keeps the operator's place."""

from __future__ import annotations

from dataclasses import replace

import pytest

from novaconsole.console import NovaConsole
from novaconsole.console.view_models import ResultFilter
from novaconsole.engine.outcomes import ItemOutcome, OutcomeStatus
from tests.console.support import FIXED_OUTCOMES, FixedService

pytestmark = pytest.mark.anyio


def numbered(start: int, count: int) -> list[ItemOutcome]:
    base = FIXED_OUTCOMES[0]
    return [replace(base, item_id=i) for i in range(start, start + count)]


async def test_window_is_bounded_and_newest_first() -> None:
    app = NovaConsole(FixedService(outcomes=()), refresh_interval=None, max_results=100)
    async with app.run_test():
        app.results.add(numbered(0, 250))
        ids = [o.item_id for o in app.results.outcomes]
        assert ids == list(range(249, 149, -1))
        assert app.results.title == "Results (100)"


async def test_cursor_keeps_its_row_when_new_results_arrive() -> None:
    app = NovaConsole(FixedService(outcomes=()), refresh_interval=None)
    async with app.run_test() as pilot:
        app.results.add(numbered(0, 50))
        app.results.focus()
        await pilot.press("down", "down", "down")
        chosen = app.results.selected
        assert chosen is not None and chosen.item_id == 46
        app.results.add(numbered(50, 10))
        assert app.results.selected is chosen
        await pilot.press("home")
        app.results.add(numbered(60, 5))
        assert app.results.selected is not None and app.results.selected.item_id == 64


async def test_filters_apply_to_rows_already_shown_and_to_new_ones() -> None:
    app = NovaConsole(FixedService(), refresh_interval=None)
    async with app.run_test():
        results = app.results
        results.set_filter(ResultFilter.FAILED)
        statuses = {o.status for o in results.rows}
        assert statuses == {OutcomeStatus.FAILED, OutcomeStatus.TIMED_OUT, OutcomeStatus.CANCELLED}
        results.add(numbered(0, 3))  # succeeded: not shown under "failed only"
        assert len(results.rows) == 3
        assert results.title == "Results · failed only (3 of 11)"


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_wide_characters_keep_the_columns_in_line(size: tuple[int, int]) -> None:
    """An item id and an error in Japanese (two cells a character): each column still
    starts under its heading, cut at its width in cells, and the row is the pane's width.
    Cut by characters, the id took 23 cells of its 12 and pushed Try and Error aside."""
    from rich.cells import cell_len

    wide = replace(
        FIXED_OUTCOMES[0],
        item_id="東京の夜景を撮影した写真アルバム第十二巻",
        status=OutcomeStatus.FAILED,
        error="SourceError: ファイルが見つかりません /データ/音楽",
    )
    app = NovaConsole(FixedService(outcomes=(*FIXED_OUTCOMES[1:], wide)), refresh_interval=None)
    async with app.run_test(size=size) as pilot:
        view = app.query_one("#results")
        await pilot.pause()
        screen = app.screen._compositor.render_strips()  # what is on screen
        x, y, width, height = view.region
        lines = [screen[y + row].crop(x, x + width) for row in range(height)]
        header = next(line.text for line in lines if "Error" in line.text)
        row = next(line.text for line in lines if "東京" in line.text)
        assert all(line.cell_length == width for line in lines)
        at = row.index("SourceError")
        assert cell_len(row[:at]) == header.index("Error"), (header, row)
