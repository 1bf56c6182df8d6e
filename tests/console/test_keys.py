"""Every key of the console, pressed on a real service, asserted on the service's state."""

from __future__ import annotations

import pytest

from novaconsole.console import NovaConsole, capture_logs
from novaconsole.console.screens.help import HelpScreen
from novaconsole.console.screens.result_detail import ResultDetailScreen
from novaconsole.console.view_models import ResultFilter
from novaconsole.console.widgets.log_pane import LogPane
from novaconsole.console.widgets.status_bar import StatusBar
from novaconsole.engine.outcomes import OutcomeStatus
from novaconsole.engine.service import ProcessingService
from tests.console.support import Source, build_service, wait_until

pytestmark = pytest.mark.anyio


def console(service: ProcessingService, refresh_interval: float | None = None) -> NovaConsole:
    return NovaConsole(service, refresh_interval=refresh_interval)


def footer_actions(app: NovaConsole) -> set[str]:
    """Actions the footer shows as enabled now."""
    return {b.binding.action for b in app.screen.active_bindings.values() if b.enabled}


async def test_p_pauses_and_resumes_everything_and_the_footer_follows() -> None:
    service = build_service({"A": Source([1])})
    async with service.running():
        app = console(service)
        async with app.run_test() as pilot:
            assert "pause_all" in footer_actions(app)
            await pilot.press("p", "enter")  # the pause dialog: no reason, no expiry
            assert service.snapshot().paused
            await pilot.pause()
            assert "resume_all" in footer_actions(app)
            assert "pause_all" not in footer_actions(app)
            assert "PAUSED" in str(app.query_one(StatusBar).render())
            await pilot.press("p")
            assert not service.snapshot().paused
            await pilot.pause()
            assert "pause_all" in footer_actions(app)


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
async def test_space_pauses_and_resumes_the_selected_handler() -> None:
    service = build_service({"A": Source([1]), "B": Source([2])})
    async with service.running():
        app = console(service)
        async with app.run_test() as pilot:
            await pilot.press("down")
            assert app.selected_handler == "B"
            await pilot.press("space", "enter")
            assert service.snapshot().handlers["B"].paused
            assert not service.snapshot().handlers["A"].paused
            await pilot.pause()
            assert "resume_handler" in footer_actions(app)
            await pilot.press("space")
            assert not service.snapshot().handlers["B"].paused


async def test_r_runs_one_cycle_even_while_paused() -> None:
    source = Source([1, 2, 3])
    service = build_service({"A": source})
    async with service.running():
        app = console(service)
        async with app.run_test() as pilot:
            await pilot.press("p", "enter")
            cycles = service.snapshot().cycles
            await pilot.press("r")
            await wait_until(pilot, lambda: source.done == [1, 2, 3])
            assert service.snapshot().cycles == cycles + 1
            await app.workers.wait_for_complete()
            app.refresh_view()
            assert [o.item_id for o in app.results.rows] == [3, 2, 1]


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
async def test_plus_and_minus_change_the_selected_handlers_batch_size() -> None:
    source = Source([1])
    service = build_service({"A": source})
    async with service.running():
        app = console(service)
        async with app.run_test(size=(160, 40)) as pilot:  # wide enough for Batch
            await pilot.press("plus")
            assert service.snapshot().handlers["A"].batch_size == 11
            await pilot.press("plus", "minus", "minus", "minus")
            assert service.snapshot().handlers["A"].batch_size == 9
            cell = app.handlers_table.get_cell("A", "batch")
            assert cell.plain == "9*"
            await pilot.press("r")
            await wait_until(pilot, lambda: source.done == [1])
            assert source.fetch_sizes[-1] == 9


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
async def test_brackets_change_concurrency_never_below_one() -> None:
    service = build_service({"A": Source([])})
    async with service.running():
        app = console(service)
        async with app.run_test() as pilot:
            await pilot.press("right_square_bracket")
            assert service.snapshot().concurrency == 5
            for _ in range(6):
                await pilot.press("left_square_bracket")
            assert service.snapshot().concurrency == 1


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
async def test_f_cycles_all_failed_only_and_selected_handler() -> None:
    a, b = Source([1, 2], fail={2}), Source([10])
    service = build_service({"A": a, "B": b})
    async with service.running():
        app = console(service)
        async with app.run_test() as pilot:
            await pilot.press("r")
            await wait_until(pilot, lambda: 1 in a.done and 10 in b.done)
            await app.workers.wait_for_complete()
            app.refresh_view()
            assert len(app.results.rows) == 3
            await pilot.press("f")
            assert app.results.mode is ResultFilter.FAILED
            assert [(o.handler, o.item_id) for o in app.results.rows] == [("A", 2)]
            await pilot.press("down", "f")
            assert app.results.mode is ResultFilter.HANDLER
            assert [o.item_id for o in app.results.rows] == [10]
            await pilot.press("f")
            assert app.results.mode is ResultFilter.ALL
            assert len(app.results.rows) == 3


async def test_enter_opens_the_detail_with_attempts_and_t_retries_the_item() -> None:
    source = Source([7], fail={7})
    service = build_service({"A": source})
    async with service.running():
        app = console(service)
        async with app.run_test() as pilot:
            await pilot.press("r")
            await app.workers.wait_for_complete()
            app.refresh_view()
            app.results.focus()
            await pilot.press("enter")
            assert isinstance(app.screen, ResultDetailScreen)
            outcome = app.screen.outcome
            assert outcome.status is OutcomeStatus.FAILED
            assert len(outcome.history) == 2
            assert "item 7 is broken" in str(app.screen.query_one("#detail-error").render())
            assert await service.store.item_states("A", ["7"])
            await pilot.press("t")
            assert not isinstance(app.screen, ResultDetailScreen)
            await app.workers.wait_for_complete()
            assert not await service.store.item_states("A", ["7"])


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
async def test_question_mark_shows_help_with_every_key() -> None:
    service = build_service({"A": Source([])})
    async with service.running():
        app = console(service)
        async with app.run_test() as pilot:
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            keys = {row[0] for row in app.key_help()}
            assert {"p", "space", "r", "+", "-", "]", "[", "f", "enter", "ctrl+p", "?", "q"} <= keys
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)


async def test_the_timer_shows_results_and_logs_without_being_asked() -> None:
    source = Source([1, 2])
    service = build_service({"A": source})
    async with service.running():
        app = console(service, refresh_interval=0.05)
        with capture_logs(app.log_sink):
            async with app.run_test() as pilot:
                report = await service.run_once()
                assert report.succeeded == 2
                await wait_until(pilot, lambda: len(app.results.rows) == 2)
                log = app.query_one(LogPane)
                await wait_until(pilot, lambda: any("did 2" in line for line in log.lines))
                # counts repaint at most once a second (count_interval)
                table = app.handlers_table
                await wait_until(pilot, lambda: table.get_cell("A", "succeeded").plain == "2")


@pytest.mark.slow  # one app drawn per built-in theme: seconds
async def test_every_builtin_theme_renders() -> None:
    """Styles use theme variables only: switching through every theme renders without error
    and recolours the state cells."""
    service = build_service({"A": Source([])})
    async with service.running():
        app = console(service)
        async with app.run_test() as pilot:
            colours = set()
            for name in sorted(app.available_themes):
                app.theme = name
                await pilot.pause()
                app.refresh_view()
                await pilot.pause()
                colours.add(app.handlers_table.get_cell("A", "state").style)
            assert len(colours) > 1


async def test_a_console_opened_late_shows_what_already_happened() -> None:
    service = build_service({"A": Source([1, 2])})
    async with service.running():
        await service.run_once()
        app = console(service)
        async with app.run_test():
            assert sorted(row.item_id for row in app.results.rows) == [1, 2]


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
async def test_the_narrow_footer_offers_resume_while_paused() -> None:
    """At 80 columns the footer has room for few keys: while paused, `p Resume` takes the
    place of `p Pause` instead of losing it to a shorter, less important key."""
    from textual.widgets._footer import FooterKey

    from novaconsole.console.widgets.keys_footer import KeysFooter

    service = build_service({"A": Source([1])})
    async with service.running():
        app = console(service)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("p", "enter")
            await wait_until(pilot, lambda: service.snapshot().paused)
            await pilot.pause()
            shown = {key.action for key in app.query_one(KeysFooter).query(FooterKey)}
            assert "resume_all" in shown
