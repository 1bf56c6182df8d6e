"""Every action by name in the command palette, on a real service.

Each case: a service with handlers Alpha (items 1 and 2; 2 always fails) and Beta (export,
item 3), an optional setup, the command chosen in the palette, and a check of the effect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from textual.command import Command, CommandInput, CommandList, CommandPalette

from novaconsole.console import NovaConsole
from novaconsole.console.screens.help import HelpScreen
from novaconsole.console.screens.pause_dialog import PauseDialog
from novaconsole.console.screens.result_detail import ResultDetailScreen
from novaconsole.console.screens.stats import StatsScreen
from novaconsole.console.view_models import ResultFilter
from novaconsole.console.widgets.search_bar import SearchBar
from novaconsole.engine.handler import HandlerPurpose
from novaconsole.engine.service import ProcessingService
from tests.console.support import Source, build_service, wait_until

pytestmark = pytest.mark.anyio

Step = Callable[[NovaConsole, ProcessingService], Awaitable[None]]


async def run_command(pilot: Any, title: str) -> None:
    """Open the palette, enter ``title``, wait for it to be the top hit, choose it."""
    app = pilot.app
    await pilot.press("ctrl+p")
    await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
    # Typing key by key costs ~0.1 s a key in a pilot: set the text as a paste would.
    app.screen.query_one(CommandInput).value = title
    commands = app.screen.query_one(CommandList)

    def top_hit_is_title() -> bool:
        if commands.option_count == 0 or commands.highlighted is None:
            return False
        option = commands.get_option_at_index(commands.highlighted)
        return isinstance(option, Command) and option.hit.text == title

    await wait_until(pilot, top_hit_is_title)
    await pilot.press("enter")
    await wait_until(pilot, lambda: not isinstance(app.screen, CommandPalette))
    await app.workers.wait_for_complete()


async def nothing(app: NovaConsole, service: ProcessingService) -> None:
    return None


async def one_cycle(app: NovaConsole, service: ProcessingService) -> None:
    await service.run_once()
    app.refresh_view()


async def paused(app: NovaConsole, service: ProcessingService) -> None:
    service.pause()
    app.refresh_view()


async def alpha_paused(app: NovaConsole, service: ProcessingService) -> None:
    service.pause_handler("Alpha")
    app.refresh_view()


async def beta_paused(app: NovaConsole, service: ProcessingService) -> None:
    service.pause_handler("Beta")
    app.refresh_view()


async def cycle_and_focus_results(app: NovaConsole, service: ProcessingService) -> None:
    await one_cycle(app, service)
    app.results.focus()


def check(predicate: Callable[[NovaConsole, ProcessingService], bool]) -> Step:
    async def step(app: NovaConsole, service: ProcessingService) -> None:
        assert predicate(app, service)

    return step


async def alpha_2_forgotten(app: NovaConsole, service: ProcessingService) -> None:
    assert not await service.store.item_states("Alpha", ["2"])


def handler(service: ProcessingService, name: str) -> Any:
    return service.snapshot().handlers[name]


@dataclass(frozen=True)
class Case:
    title: str
    setup: Step
    verify: Step


CASES = [
    # per handler (the Provider)
    Case("Pause handler Beta", nothing, check(lambda a, s: handler(s, "Beta").paused)),
    Case("Resume handler Beta", beta_paused, check(lambda a, s: not handler(s, "Beta").paused)),
    Case("Batch size of Beta up", nothing, check(lambda a, s: handler(s, "Beta").batch_size == 11)),
    Case(
        "Batch size of Beta down", nothing, check(lambda a, s: handler(s, "Beta").batch_size == 9)
    ),
    Case(
        "Show results of Beta",
        one_cycle,
        check(lambda a, s: [o.item_id for o in a.results.rows] == [3]),
    ),
    Case("Retry Alpha item 2", one_cycle, alpha_2_forgotten),
    # fixed (system commands)
    Case("Pause all", nothing, check(lambda a, s: s.snapshot().paused)),
    Case("Resume all", paused, check(lambda a, s: not s.snapshot().paused)),
    Case("Pause selected handler", nothing, check(lambda a, s: handler(s, "Alpha").paused)),
    Case(
        "Resume selected handler", alpha_paused, check(lambda a, s: not handler(s, "Alpha").paused)
    ),
    Case("Batch size up", nothing, check(lambda a, s: handler(s, "Alpha").batch_size == 11)),
    Case("Batch size down", nothing, check(lambda a, s: handler(s, "Alpha").batch_size == 9)),
    Case("Concurrency up", nothing, check(lambda a, s: s.snapshot().concurrency == 5)),
    Case("Concurrency down", nothing, check(lambda a, s: s.snapshot().concurrency == 3)),
    Case("Run one cycle now", nothing, check(lambda a, s: handler(s, "Alpha").succeeded == 1)),
    Case(
        "Show results: failed only",
        one_cycle,
        check(lambda a, s: [o.item_id for o in a.results.rows] == [2]),
    ),
    Case(
        "Cycle results filter", one_cycle, check(lambda a, s: a.results.mode is ResultFilter.FAILED)
    ),
    Case(
        "Show results: selected handler",
        one_cycle,
        check(lambda a, s: {o.handler for o in a.results.rows} == {"Alpha"}),
    ),
    Case("Show handlers: export", nothing, check(lambda a, s: a.selected_handler == "Beta")),
    Case(
        "Result detail",
        cycle_and_focus_results,
        check(lambda a, s: isinstance(a.screen, ResultDetailScreen)),
    ),
    Case("Help", nothing, check(lambda a, s: isinstance(a.screen, HelpScreen))),
    Case("Stats", nothing, check(lambda a, s: isinstance(a.screen, StatsScreen))),
    Case("Freeze results", nothing, check(lambda a, s: a.frozen and a.results.frozen)),
    Case("Search results", nothing, check(lambda a, s: isinstance(a.focused, SearchBar))),
    Case(
        "Zoom focused pane",
        nothing,
        check(lambda a, s: a.screen.maximized is a.handlers_table),
    ),
    Case("Quit", nothing, check(lambda a, s: a.return_code == 0)),
]


QUICK = {"Retry Alpha item 2", "Pause all", "Quit"}
"""The cases of the quick run (``-m "not slow"``): a pause with its dialog, a retry, quit.
Each case costs about a second on a quiet machine, so the others run in the full suite."""


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, id=case.title, marks=() if case.title in QUICK else pytest.mark.slow)
        for case in CASES
    ],
)
async def test_palette_command(case: Case) -> None:
    service = build_service(
        {"Alpha": Source([1, 2], fail={2}), "Beta": Source([3])},
        purposes={"Beta": HandlerPurpose.EXPORT},
    )
    async with service.running():
        app = NovaConsole(service, refresh_interval=None)
        async with app.run_test() as pilot:
            await case.setup(app, service)
            await run_command(pilot, case.title)
            if isinstance(app.screen, PauseDialog):  # a pause asks why and how long first
                await pilot.press("enter")
            await case.verify(app, service)


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
async def test_show_handlers_all_after_a_purpose_filter() -> None:
    service = build_service(
        {"Alpha": Source([]), "Beta": Source([])}, purposes={"Beta": HandlerPurpose.EXPORT}
    )
    async with service.running():
        app = NovaConsole(service, refresh_interval=None)
        async with app.run_test() as pilot:
            await run_command(pilot, "Show handlers: export")
            assert app.handlers_table.row_count == 1
            await run_command(pilot, "Show handlers: all")
            assert app.handlers_table.row_count == 2


async def test_while_draining_the_palette_offers_nothing_that_steers() -> None:
    from novaconsole.console.commands import console_commands, handler_commands

    service = build_service({"Alpha": Source([1])})
    async with service.running():
        app = NovaConsole(service, refresh_interval=None)
        async with app.run_test():
            assert "Pause all" in {c.title for c in console_commands(app)}
            app.quitting = True  # what q sets while the service drains
            assert [c.title for c in console_commands(app)] == ["Result detail", "Help", "Quit"]
            assert list(handler_commands(app)) == []


async def test_no_selected_handler_no_pause_handler_key() -> None:
    service = build_service({})
    async with service.running():
        app = NovaConsole(service, refresh_interval=None)
        async with app.run_test():
            assert app.selected_handler is None
            assert app.check_action("pause_handler", ()) is None
            assert app.check_action("resume_handler", ()) is False
