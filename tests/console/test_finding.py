"""The keys that find and keep things: search (/, n, N), zoom (z), freeze (F), copy (c, y),
stats (s), tab between panes, enter on a handler, and the hint when no handler exists."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from textual.pilot import Pilot

from novaconsole.console import NovaConsole
from novaconsole.console.screens.result_detail import ResultDetailScreen
from novaconsole.console.screens.stats import StatsScreen
from novaconsole.console.view_models import STATS_BUCKET, ResultFilter, format_seconds
from novaconsole.console.widgets.handlers_table import HandlersTable
from novaconsole.console.widgets.log_pane import LogPane
from novaconsole.console.widgets.results_view import ResultsView
from novaconsole.console.widgets.search_bar import SearchBar
from novaconsole.console.widgets.status_bar import StatusBar
from novaconsole.engine.outcomes import OutcomeStatus
from tests.console.support import (
    FIXED_OUTCOMES,
    T0,
    FixedService,
    Source,
    build_service,
    fixed_app,
    fixed_snapshot,
    wait_until,
)

pytestmark = pytest.mark.anyio


class Clipboard:
    def __init__(self, app: NovaConsole) -> None:
        self.texts: list[str] = []
        app.copy_to_clipboard = self.texts.append  # type: ignore[method-assign]


async def open_stats(app: NovaConsole, pilot: Pilot[None]) -> StatsScreen:
    """Press ``s`` and wait for the stats screen's first frame."""
    await pilot.press("s")
    screen = app.screen
    assert isinstance(screen, StatsScreen)
    await pilot.pause()
    return screen


async def test_slash_searches_results_by_item_id_handler_or_error_and_escape_clears() -> None:
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("slash")
        assert isinstance(app.focused, SearchBar)
        await pilot.press(*"isrc")
        assert [o.item_id for o in app.results.rows] == ["batch-17/row-4"]
        assert "/isrc" in str(app.query_one(StatusBar).render())
        assert "/isrc" in app.results.title
        await pilot.press("p")  # typed into the search, not a pause
        assert not app.service.snapshot().paused
        await pilot.press("backspace", "enter")
        assert app.focused is app.results
        await pilot.press("slash", "escape")
        assert len(app.results.rows) == len(FIXED_OUTCOMES)
        assert "/isrc" not in str(app.query_one(StatusBar).render())


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
async def test_slash_in_the_log_pane_searches_logs_and_n_moves_between_matches() -> None:
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        logs = app.query_one(LogPane)
        logs.focus()
        await pilot.pause()
        await pilot.press("slash")
        assert isinstance(app.focused, SearchBar)  # typing goes to the search from here on
        await pilot.press(*"cataloguei", "enter")
        assert logs.search_text == "cataloguei"
        first = logs.match_line
        assert first is not None and "catalogueimport" in logs.lines[first].casefold()
        await pilot.press("n")
        second = logs.match_line
        assert second != first and "catalogueimport" in logs.lines[second].casefold()
        await pilot.press("N")
        assert logs.match_line == first
        assert "rows" in str(logs.border_title)


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
async def test_z_zooms_the_focused_pane_and_back() -> None:
    app = fixed_app()
    async with app.run_test(size=(80, 24)) as pilot:
        app.results.focus()
        await pilot.press("z")
        assert app.screen.maximized is app.results
        assert app.results.size.height > 15
        await pilot.press("z")
        assert app.screen.maximized is None
        for pane in (app.query_one(LogPane), app.handlers_table):
            pane.focus()
            await pilot.press("z")
            assert app.screen.maximized is pane
            assert pane.size.height > 15, f"{pane.id} fills the screen"
            await pilot.press("z")


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
async def test_shift_f_freezes_results_counting_new_rows_in_the_title() -> None:
    app = fixed_app(FixedService(outcomes=FIXED_OUTCOMES[:4]))
    async with app.run_test(size=(120, 40)) as pilot:
        app.results.focus()
        await pilot.press("down")
        before = app.results.rows
        selected = app.results.selected
        await pilot.press("F")
        assert app.frozen
        app.results.add(FIXED_OUTCOMES[4:])
        app.refresh_view()
        assert app.results.rows == before, "frozen: the rows stay as they were"
        assert "frozen, 4 new" in app.results.title
        assert "frozen" in str(app.query_one(StatusBar).render())
        await pilot.press("F")
        assert not app.frozen
        assert len(app.results.rows) == len(FIXED_OUTCOMES)
        assert app.results.selected is selected, "the cursor stays on the row being read"


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
async def test_c_copies_the_item_id_and_the_detail_copies_id_and_traceback() -> None:
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        clipboard = Clipboard(app)
        app.results.focus()
        index = next(i for i, o in enumerate(app.results.rows) if o.status is OutcomeStatus.FAILED)
        app.results.cursor = index
        await pilot.press("c")
        assert clipboard.texts == ["batch-17/row-4"]
        await pilot.press("enter")
        assert isinstance(app.screen, ResultDetailScreen)
        await pilot.press("c", "y")
        assert clipboard.texts[1] == "batch-17/row-4"
        assert clipboard.texts[2].startswith("Traceback (most recent call last)")
        assert "ValueError: bad ISRC" in clipboard.texts[2]


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
async def test_s_opens_stats_with_a_plot_per_handler() -> None:
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("s")
        assert isinstance(app.screen, StatsScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, StatsScreen)


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
async def test_tab_moves_focus_between_panes() -> None:
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        assert isinstance(app.focused, HandlersTable)
        assert "focus_next" in {
            b.binding.action for b in app.screen.active_bindings.values() if b.binding.show
        }, "tab is documented in the footer"
        await pilot.press("tab")
        assert isinstance(app.focused, ResultsView)
        await pilot.press("tab")
        assert isinstance(app.focused, LogPane)


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
async def test_enter_on_a_handler_shows_its_results() -> None:
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("down", "enter")
        assert app.results.mode is ResultFilter.HANDLER
        assert {o.handler for o in app.results.rows} == {"CatalogueImport"}
        assert app.focused is app.results


async def test_no_handler_shows_where_it_looked_and_how_to_fix_it() -> None:
    service = build_service({})
    app = NovaConsole(service, refresh_interval=None, config="/srv/app/config.toml")
    async with app.run_test(size=(80, 24)) as pilot:
        hint = app.query_one("#no-handlers")
        await wait_until(pilot, lambda: hint.display)
        text = str(hint.render())
        assert "No handler is registered" in text
        assert "/srv/app/config.toml" in text
        assert "[[handlers]]" in text
        assert not app.query_one("#top").display


async def test_a_handler_hides_the_hint() -> None:
    app = NovaConsole(build_service({"A": Source([])}), refresh_interval=None)
    async with app.run_test() as pilot:
        await pilot.pause()
        assert not app.query_one("#no-handlers").display
        assert app.query_one("#top").display


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(size, id=str(size), marks=pytest.mark.slow if size != (80, 24) else ())
        for size in [(80, 24), (100, 30), (120, 40), (160, 45), (200, 60)]
    ],  # the smallest in the quick run; every size in the full one
)
async def test_no_pane_is_wider_than_the_terminal(size: tuple[int, int]) -> None:
    """Handler columns are chosen for the width: the table never needs to scroll sideways;
    log lines wrap."""
    app = fixed_app()
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        table = app.handlers_table
        assert table.virtual_size.width <= table.scrollable_content_region.width
        assert {"name", "state", "succeeded", "failed"} <= set(table.column_keys)
        logs = app.query_one(LogPane)
        assert max(len(line) for line in logs.lines) <= logs.scrollable_content_region.width


async def test_stats_shows_each_handlers_own_latency_from_a_live_service() -> None:
    """A real service: after ``r``, the handler that processed items has its own latency on
    the stats screen; the one that had nothing says "-"."""
    service = build_service({"Busy": Source(ids=[1, 2, 3]), "Idle": Source(ids=[])})
    moments = [T0]
    app = NovaConsole(service, refresh_interval=None, clock=lambda: moments[-1], tz=UTC)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("r")
        await wait_until(pilot, lambda: service.snapshot().succeeded == 3)
        moments.append(T0 + timedelta(seconds=STATS_BUCKET))
        app.refresh_view()  # a bucket later: a new sample
        screen = await open_stats(app, pilot)
        texts = [str(label.render()) for label in screen.query("#stats-body Label").results()]
        # each name shows twice: its items/s row, then its latency row (the last)
        busy = max(i for i, text in enumerate(texts) if text == "Busy")
        idle = max(i for i, text in enumerate(texts) if text == "Idle")
        assert texts[idle + 1] == "-"
        assert texts[busy + 1] != "-" and " / " in texts[busy + 1], texts[busy + 1]


def _rates_apart(app: NovaConsole) -> None:
    """Ten minutes of samples: CatalogueImport finishing 1,000 times more items a second
    than PhysicalDeletion, in the same rhythm (1-2 against 1,000-2,000)."""
    from dataclasses import replace

    base = app.service.snapshot()
    totals = {"PhysicalDeletion": 0, "CatalogueImport": 0}
    for step in range(120):
        slow = 5 * (1 + step % 2)  # 1 or 2 items/s over a 5 s bucket
        totals["PhysicalDeletion"] += slow
        totals["CatalogueImport"] += slow * 1000
        handlers = {
            name: replace(view, succeeded=totals.get(name, 0), failed=0, skipped=0)
            for name, view in base.handlers.items()
        }
        app.stats.offer(replace(base, handlers=handlers), T0 - timedelta(seconds=5 * (119 - step)))


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)])
async def test_stats_plots_every_handlers_rate_on_one_scale(size: tuple[int, int]) -> None:
    """2 items/s beside 2,000 items/s: the slow handler's bars stay at the bottom and the
    fast one's reach the top (each plot on its own scale drew the two alike), and the
    heading says the scale."""
    from textual.widgets import Sparkline

    app = fixed_app()
    _rates_apart(app)
    async with app.run_test(size=size) as pilot:
        screen = await open_stats(app, pilot)
        plots = list(screen.query(Sparkline).results())  # the items/s ones first
        slow, fast = (plot.render_line(0).text for plot in plots[:2])
        assert set(slow) == {"▁"}, slow
        assert "█" in fast and "▁" not in fast, fast
        assert slow != fast
        heading = str(screen.query_one("#stats-window").render())
        assert "one scale: █ 2,000/s" in heading, heading
        for plot in plots[:4]:  # every bar drawn, none past the plot's edge
            assert len(plot.render_line(0).text) == plot.size.width > 0
        texts = [str(label.render()) for label in screen.query("#stats-body Label").results()]
        assert "2.0/s ↑2.0" in texts or "2/s ↑2" in texts, texts
        assert "2,000/s ↑2,000" in texts, texts


def _latencies_apart(app: NovaConsole) -> None:
    """Ten minutes of samples: PhysicalDeletion's p50 2-3 ms under a flat p95 of 30 ms,
    CatalogueImport's p50 100 ms under a flat p95 of 300 ms, the service's p50 10-15 ms under
    a flat p95 of 95 ms; the other handlers finish nothing."""
    from dataclasses import replace

    from novaconsole.engine.snapshot import Latency, Percentiles

    base = app.service.snapshot()
    apart = {
        "PhysicalDeletion": lambda step: Percentiles(0.002 + (step % 2) / 1000, 0.030),
        "CatalogueImport": lambda step: Percentiles(0.100, 0.300),
    }
    for step in range(120):
        handlers = {
            name: replace(
                view,
                latency=apart[name](step) if name in apart else Percentiles(),
                latency_samples=50 if name in apart else 0,
            )
            for name, view in base.handlers.items()
        }
        latency = replace(base.latency, process=Percentiles(0.010 + (step % 6) / 1000, 0.095))
        assert isinstance(latency, Latency)
        app.stats.offer(
            replace(base, handlers=handlers, latency=latency),
            T0 - timedelta(seconds=5 * (119 - step)),
        )


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)])
async def test_stats_plots_every_latency_on_one_scale(size: tuple[int, int]) -> None:
    """p50 never draws taller than p95 beside it (each plot stretched between its own lowest
    and highest value drew 2-3 ms full and a flat 30 ms at the bottom), a 30 ms handler draws
    lower than a 300 ms one, and both latency headings say the scale."""
    from textual.widgets import Sparkline

    from novaconsole.console.view_models import SPARK_BARS

    def heights(plot_id: str) -> list[int]:
        plot = screen.query_one(plot_id, Sparkline)
        text = plot.render_line(0).text
        assert len(text) == plot.size.width > 0, "every bar drawn, none past the plot's edge"
        return [SPARK_BARS.index(bar) for bar in text]

    app = fixed_app()
    _latencies_apart(app)
    async with app.run_test(size=size) as pilot:
        screen = await open_stats(app, pilot)
        # rows: PhysicalDeletion, CatalogueImport, NotificationExport, LegacySync
        pairs = [("#stats-p50", "#stats-p95")] + [
            (f"#stats-lat50-{i}", f"#stats-lat95-{i}") for i in range(4)
        ]
        for p50_id, p95_id in pairs:
            p50, p95 = heights(p50_id), heights(p95_id)
            assert max(p50) <= min(p95), (p50_id, p50, p95)  # every p95 here is flat
        quick, slow = heights("#stats-lat95-0"), heights("#stats-lat95-1")
        assert set(slow) == {len(SPARK_BARS) - 1}, "the highest latency fills the bar"
        assert max(quick) < min(slow), (quick, slow)
        assert set(heights("#stats-lat95-3")) == {0}, "finished nothing: lowest bars"
        for heading in ("#stats-latency", "#stats-handler-latency"):
            text = str(screen.query_one(heading).render())
            assert text.endswith("one scale: █ 300 ms"), text


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)])
async def test_queue_pane_shows_every_latency_figure_whole(size: tuple[int, int]) -> None:
    """Long figures in the queue pane (a queue backed up for minutes): each stage's p50 and
    p95 are on screen whole, none cut at the pane's edge ('process 165 ms / 293 ms' took the
    pane's 24 cells at 80 columns; '5m 10s / 12m 05s' ran past them)."""
    from dataclasses import replace

    from novaconsole.engine.snapshot import Latency, Percentiles

    figures = {
        "fetch": ("800 µs", "165 ms"),
        "queue": ("5m 10s", "12m 05s"),
        "process": ("165 ms", "293 ms"),
    }
    latency = Latency(
        fetch=Percentiles(0.0008, 0.165),
        queue=Percentiles(310.0, 725.0),
        process=Percentiles(0.165, 0.293),
    )
    app = fixed_app(FixedService(replace(fixed_snapshot(), latency=latency)))
    async with app.run_test(size=size) as pilot:
        pane = app.query_one("#queue-latency")
        await wait_until(pilot, lambda: bool(pane.render_line(1).text.strip()))
        await pilot.pause()
        screen = app.screen._compositor.render_strips()  # what is on screen, cut where cut
        x, y, width, height = pane.region
        assert height == 4 and x + width < size[0], pane.region
        lines = [screen[y + row].crop(x, x + width).text.rstrip() for row in range(height)]
        assert "p50" in lines[0] and "p95" in lines[0], lines
        for line in lines[1:]:
            stage = line.split()[0]
            packed = line.replace(" ", "").replace("/", "")  # any form, not cut
            p50, p95 = (figure.replace(" ", "") for figure in figures[stage])
            assert packed.endswith(p50 + p95), (line, pane.size.width)


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)])
@pytest.mark.parametrize(("busy", "cycle"), [((4, 0), 0.513), ((16, 16), 12.5)])
async def test_queue_pane_shows_busy_and_the_cycle_whole(
    size: tuple[int, int], busy: tuple[int, int], cycle: float
) -> None:
    """'busy 0/4  cycle 513 ms' in the queue pane: the cycle's figure whole, unit too (at 80
    columns the pane's 24 cells showed 'cycle 513')."""
    from dataclasses import replace

    concurrency, in_flight = busy
    snapshot = replace(
        fixed_snapshot(),
        concurrency=concurrency,
        in_flight=in_flight,
        last_cycle_duration=cycle,
    )
    app = fixed_app(FixedService(snapshot))
    async with app.run_test(size=size) as pilot:
        pane = app.query_one("#queue-workers")
        await wait_until(pilot, lambda: "cycle" in pane.render_line(0).text)
        await pilot.pause()
        screen = app.screen._compositor.render_strips()  # what is on screen, cut where cut
        x, y, width, _ = pane.region
        line = screen[y].crop(x, x + width).text.strip()
        figure = format_seconds(cycle)
        assert line.split()[:2] == ["busy", f"{in_flight}/{concurrency}"], line
        assert line.replace(" ", "").endswith("cycle" + figure.replace(" ", "")), line


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)])
async def test_stats_latency_figures_are_whole(size: tuple[int, int]) -> None:
    """Each handler's 'now p50 / p95' is on screen whole: '100 ms / 300 ms' took 15 cells
    where the column has 14 at 80 columns, and showed '100 ms / 300'."""
    app = fixed_app()
    _latencies_apart(app)
    async with app.run_test(size=size) as pilot:
        screen = await open_stats(app, pilot)
        lines = screen._compositor.render_strips()  # what is on screen, cut where cut
        shown = []
        for index in range(2):
            x, y, width, _ = screen.query_one(f"#stats-lat-text-{index}").region
            shown.append(lines[y].crop(x, x + width).text.strip())
        quick, slow = (text.replace(" ", "").replace("/", "") for text in shown)
        assert quick.startswith("3") and quick.endswith("30ms"), shown
        assert slow.startswith("100") and slow.endswith("300ms"), shown
