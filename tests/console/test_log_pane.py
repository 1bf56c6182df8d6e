"""The log pane follows the newest records, whatever size the terminal is."""

from __future__ import annotations

import logging

import pytest

from novaconsole.console import capture_logs
from novaconsole.console.widgets.log_pane import LogPane
from tests.console.support import fixed_app, wait_until

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("size", [(80, 24), pytest.param((160, 45), marks=pytest.mark.slow)])
async def test_the_log_pane_shows_the_newest_line_at_every_terminal_size(
    size: tuple[int, int],
) -> None:
    """At 80x24 the pane is laid out tall first and shrinks to 3 rows when the narrow layout
    applies; the records written before that shrink must not stop it following the tail."""
    app = fixed_app()
    with capture_logs(app.log_sink):
        async with app.run_test(size=size) as pilot:
            logs = app.query_one(LogPane)
            await wait_until(pilot, lambda: logs.size.height > 0 and logs.line_count > 0)
            for batch in range(4):
                for n in range(3):
                    logging.getLogger("novaconsole.engine").info("batch %d record %d", batch, n)
                app.refresh_view()
                await pilot.pause()
                newest = f"batch {batch} record 2"
                assert newest in logs.lines[-1]
                assert logs.scroll_offset.y == logs.max_scroll_y > 0
                top = logs.scroll_offset.y
                shown = logs.lines[top : top + logs.scrollable_content_region.height]
                assert any(newest in line for line in shown)
