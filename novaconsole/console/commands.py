"""Command palette entries: fixed console commands and per-handler ones."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.app import SystemCommand
from textual.command import DiscoveryHit, Hit, Hits, Provider

from novaconsole.console.view_models import ResultFilter, distinct_failed
from novaconsole.engine.handler import HandlerPurpose

if TYPE_CHECKING:
    from novaconsole.console.app import NovaConsole
    from novaconsole.engine.snapshot import HandlerView


@dataclass(frozen=True, slots=True)
class Command:
    """One palette entry: its title (what the operator types), help and what it does."""

    title: str
    help: str
    callback: Callable[[], object]


def console_commands(app: NovaConsole) -> Iterator[Command]:
    """The fixed commands: everything the keys do, plus filters. While the console drains,
    only what its keys still allow (detail, help, quit): nothing may steer the service."""
    if not app.quitting:
        if not app.read_only:
            yield from _steering_commands(app)
        yield from _filter_commands(app)
        yield from _finding_commands(app)
    yield Command(
        "Result detail",
        "Error, traceback and attempts of the selected result (enter)",
        app.action_show_detail,
    )
    if not app.quitting:
        yield Command(
            "Failure groups",
            "Failed items grouped by handler, exception and message; retry a group (e)",
            app.action_failure_groups,
        )
        yield Command(
            "Audit history",
            "Who changed which control, when, old → new (A)",
            app.action_audit,
        )
    yield Command("Help", "Keys and commands (?)", app.action_help)
    yield Command("Quit", "Stop fetching, drain in-flight items, exit (q)", app.action_quit)


def _finding_commands(app: NovaConsole) -> Iterator[Command]:
    """Search, zoom, freeze, copy and stats."""
    yield Command("Search results", "By item id, handler or error text (/)", app.action_search)
    yield Command("Zoom focused pane", "Full screen and back (z)", app.action_zoom)
    if app.frozen:
        yield Command("Unfreeze results", "Show the rows held back (F)", app.action_unfreeze)
    else:
        yield Command("Freeze results", "Hold new rows back while reading (F)", app.action_freeze)
    if app.results.selected is not None:
        yield Command(
            "Copy item id", "Of the selected result, to the clipboard (c)", app.action_copy_id
        )
    yield Command("Stats", "Items/s per handler and latency over 10 minutes (s)", app.action_stats)


def _steering_commands(app: NovaConsole) -> Iterator[Command]:
    snapshot = app.last_snapshot
    if snapshot.paused:
        yield Command("Resume all", "Resume fetching and processing (p)", app.action_resume_all)
    else:
        yield Command(
            "Pause all", "Stop fetching; in-flight items finish (p)", app.action_pause_all
        )
    handler = app.selected_handler
    if handler is not None:
        view = snapshot.handlers.get(handler)
        verb = "Resume" if view is not None and view.paused else "Pause"
        yield Command(
            f"{verb} selected handler",
            f"{verb} {handler} (space)",
            app.action_resume_handler if verb == "Resume" else app.action_pause_handler,
        )
        yield Command("Batch size up", f"Batch size of {handler} up (+)", app.action_batch_up)
        yield Command("Batch size down", f"Batch size of {handler} down (-)", app.action_batch_down)
    yield Command(
        "Run one cycle now", "Fetch and process once, even while paused (r)", app.action_run_once
    )
    yield Command("Concurrency up", "One more worker (])", app.action_concurrency_up)
    yield Command("Concurrency down", "One worker fewer ([)", app.action_concurrency_down)


def _filter_commands(app: NovaConsole) -> Iterator[Command]:
    yield Command(
        "Cycle results filter", "All, failed only, selected handler (f)", app.action_cycle_filter
    )
    for mode in ResultFilter:
        yield Command(
            f"Show results: {mode.value}",
            "Filter the results pane",
            partial(app.set_result_filter, mode),
        )
    yield Command("Show handlers: all", "Every handler", partial(app.set_purpose_filter, None))
    for purpose in HandlerPurpose:
        yield Command(
            f"Show handlers: {purpose.value}",
            f"Only {purpose.value} handlers",
            partial(app.set_purpose_filter, purpose),
        )


def system_commands(app: NovaConsole) -> Iterable[SystemCommand]:
    """:func:`console_commands` as Textual system commands."""
    for command in console_commands(app):
        yield SystemCommand(command.title, command.help, command.callback)


def handler_commands(app: NovaConsole) -> Iterator[Command]:
    """Commands naming a handler or a failed item: pause, resume, batch size, results, retry
    (none while the console drains)."""
    if app.quitting:
        return
    for name, view in app.last_snapshot.handlers.items():
        if not app.read_only:
            yield from _handler_steering(app, name, view)
        yield Command(
            f"Show results of {name}",
            "Filter the results pane",
            partial(app.show_handler_results, name),
        )
        yield Command(
            f"Peek {name}",
            "What its fetch_next would return now, rolled back: nothing claimed (d)",
            partial(app.peek_handler, name),
        )
    if app.read_only:
        return
    for handler, item_id in distinct_failed(app.results.outcomes):
        yield Command(
            f"Retry {handler} item {item_id}",
            "Forget its attempts so it is processed again",
            partial(app.retry_item, handler, item_id),
        )


def _handler_steering(app: NovaConsole, name: str, view: HandlerView) -> Iterator[Command]:
    if view.tripped and callable(getattr(app.service, "reset_breaker", None)):
        yield Command(
            f"Reset breaker of {name}",
            "Close its tripped circuit breaker now (audited)",
            partial(reset_breaker, app, name),
        )
    if view.paused:
        yield Command(
            f"Resume handler {name}", "Fetch its items again", partial(app.resume_handler, name)
        )
    else:
        yield Command(
            f"Pause handler {name}", "Stop fetching its items", partial(app.pause_handler, name)
        )
    yield Command(
        f"Batch size of {name} up",
        f"now {view.batch_size}",
        partial(app.change_batch_size, name, 1),
    )
    yield Command(
        f"Batch size of {name} down",
        f"now {view.batch_size}",
        partial(app.change_batch_size, name, -1),
    )


def reset_breaker(app: NovaConsole, name: str) -> None:
    """Close ``name``'s tripped breaker (a hosted service at once; an attached fleet asks its
    workers, and says how many) and say so."""
    from novaconsole.console.steering import steer

    title = f"Breaker of {name}"
    if steer(app.service, "reset_breaker", name):
        app.notify("reset requested", title=title)
    else:
        app.notify("not tripped: nothing to reset", title=title, severity="warning")
    app.refresh_view()


class HandlerCommands(Provider):
    """Palette provider for :func:`handler_commands`."""

    def _commands(self) -> list[Command]:
        from novaconsole.console.app import NovaConsole

        return list(handler_commands(cast(NovaConsole, self.app)))

    async def discover(self) -> Hits:
        for command in self._commands():
            yield DiscoveryHit(
                command.title, command.callback, text=command.title, help=command.help
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands():
            score = matcher.match(command.title)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(command.title),
                    command.callback,
                    text=command.title,
                    help=command.help,
                )
