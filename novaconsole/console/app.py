"""The console app: live panes over a hosted service, and the keys that steer it."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from functools import partial
from typing import Any, ClassVar, Protocol

import anyio
from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Input

from novaconsole.console.commands import HandlerCommands, system_commands
from novaconsole.console.screens.audit import AUDIT_TIP, open_audit
from novaconsole.console.screens.help import HelpScreen
from novaconsole.console.screens.pause_dialog import PauseDialog, PauseRequest
from novaconsole.console.screens.result_detail import ResultDetailScreen
from novaconsole.console.screens.stats import StatsScreen
from novaconsole.console.stats import StatsHistory
from novaconsole.console.steering import steer
from novaconsole.console.triage_actions import BINDINGS as TRIAGE_BINDINGS
from novaconsole.console.triage_actions import TriageActions
from novaconsole.console.view_models import (
    ResultFilter,
    counts_label,
    filter_label,
    fleet_rows,
    handler_rows,
    next_batch_size,
    queue_view,
    shows_fleet,
    status_view,
)
from novaconsole.console.widgets.fleet_pane import FleetPane
from novaconsole.console.widgets.handlers_table import HandlersTable
from novaconsole.console.widgets.keys_footer import KeysFooter
from novaconsole.console.widgets.log_pane import LogPane, LogSink
from novaconsole.console.widgets.no_handlers import NoHandlers
from novaconsole.console.widgets.queue_panel import QueuePanel
from novaconsole.console.widgets.results_view import ResultsView
from novaconsole.console.widgets.search_bar import SearchBar
from novaconsole.console.widgets.status_bar import StatusBar
from novaconsole.engine.events import EventSubscription, ItemFinished, RetryProgress
from novaconsole.engine.handler import HandlerPurpose
from novaconsole.engine.operator import RetryStatus
from novaconsole.engine.outcomes import CycleReport, ItemOutcome
from novaconsole.engine.snapshot import Snapshot

Clock = Callable[[], datetime]

_TIPS = {
    "p": "Pause (asks why and for how long, both optional) or resume everything; "
    "in-flight items finish",
    "space": "Pause (asks why and for how long) or resume the selected handler",
    "r": "Run one cycle now, even while paused; a note says how it went",
    "f": "Results filter: all, failed only, selected handler only",
    "/": "Search the results (item id, handler, error) or, from the log pane, the logs",
    "n": "Next match of the search (N: previous)",
    "z": "Zoom: the focused pane fills the screen; z again (or escape) to go back",
    "F": "Freeze the results: new rows are counted in the title, the view stays still",
    "c": "Copy the selected result's item id to the clipboard",
    "s": "Stats: items/s per handler and latency p50/p95 over the last 10 minutes",
    "enter": "Detail of the selected result: error, traceback, every attempt",
    "?": "This help",
    "q": "Quit: stop fetching, let in-flight items finish (draining…), then exit; "
    "q again cancels them (recorded cancelled)",
    "+": "Batch size of the selected handler up (steps of about 10 %)",
    "-": "Batch size of the selected handler down (steps of about 10 %)",
    "]": "Concurrency up by one",
    "[": "Concurrency down by one",
    "tab": "Focus the next pane (shift+tab: the previous one)",
}

_BATCH = Binding.Group("Batch", compact=True)
_CONCURRENCY = Binding.Group("Concurrency", compact=True)


def utc_now() -> datetime:
    return datetime.now(UTC)


class ConsoleService(Protocol):
    """What the console uses of a service (``ProcessingService`` is one)."""

    def snapshot(self) -> Snapshot: ...
    def events(self, max_buffer: int = ...) -> EventSubscription: ...
    def recent_outcomes(self) -> list[ItemOutcome]: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def pause_handler(self, name: str) -> None: ...
    def resume_handler(self, name: str) -> None: ...
    def set_batch_size(self, name: str, size: int) -> None: ...
    def set_concurrency(self, workers: int) -> None: ...
    async def run_once(self) -> CycleReport: ...
    async def drain(self) -> None: ...
    async def retry_item(self, handler: str, item_id: Any) -> bool: ...


class HostableService(ConsoleService, Protocol):
    """A console service the app can run itself (``ProcessingService``, ``AttachedFleet``)."""

    def running(self) -> AbstractAsyncContextManager[Any]: ...


def can_host(service: ConsoleService) -> bool:
    """Whether the app should run ``service`` itself: it can be run and nobody runs it yet
    (``is_running`` when the service has it; otherwise a snapshot that has not started)."""
    if not callable(getattr(service, "running", None)):
        return False
    is_running = getattr(service, "is_running", None)
    if isinstance(is_running, bool):
        return not is_running
    return service.snapshot().state in ("starting", "stopped")


@dataclass(frozen=True, slots=True)
class _Panes:
    status: StatusBar
    handlers: HandlersTable
    queue: QueuePanel
    fleet: FleetPane
    results: ResultsView
    logs: LogPane


class NovaConsole(TriageActions, App[int]):
    """The operations console. ``app.service`` is the service it hosts, shows and steers.

    Running the app (``app.run()``, ``app.run_test()``) starts the service when the app mounts,
    unless it runs already; quitting then drains and stops it. A service someone else runs
    (already running when the app mounts, or ``host=False``) is only shown and steered:
    quitting leaves it running.

    ``refresh_interval=None`` turns the refresh timer off (call :meth:`refresh_view`
    yourself, as snapshot tests do); ``clock`` and ``tz`` make relative and wall-clock times
    deterministic; ``config`` names the config file when no handler is registered.
    """

    CSS_PATH = "console.tcss"
    TITLE = "novaconsole"
    COMMANDS = App.COMMANDS | {HandlerCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    ALLOW_IN_MAXIMIZED_VIEW = "#status, #search, KeysFooter"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "pause_all", "Pause", id="pause-all", priority=True, tooltip=_TIPS["p"]),
        Binding("p", "resume_all", "Resume", id="resume-all", priority=True, tooltip=_TIPS["p"]),
        Binding(
            "space",
            "pause_handler",
            "Pause handler",
            id="pause-handler",
            priority=True,
            tooltip=_TIPS["space"],
        ),
        Binding(
            "space",
            "resume_handler",
            "Resume handler",
            id="resume-handler",
            priority=True,
            tooltip=_TIPS["space"],
        ),
        Binding("r", "run_once", "Run once", id="run-once", priority=True, tooltip=_TIPS["r"]),
        Binding(
            "f", "cycle_filter", "Filter", id="filter-results", priority=True, tooltip=_TIPS["f"]
        ),
        Binding("slash", "search", "Search", key_display="/", id="search", tooltip=_TIPS["/"]),
        Binding("n", "search_next", "Next match", id="search-next", tooltip=_TIPS["n"]),
        Binding(
            "N",
            "search_previous",
            "Previous match",
            show=False,
            id="search-previous",
            tooltip=_TIPS["n"],
        ),
        Binding("z", "zoom", "Zoom", id="zoom", tooltip=_TIPS["z"]),
        Binding("F", "freeze", "Freeze", id="freeze-results", tooltip=_TIPS["F"]),
        Binding("F", "unfreeze", "Unfreeze", id="unfreeze-results", tooltip=_TIPS["F"]),
        Binding("c", "copy_id", "Copy id", id="copy-id", tooltip=_TIPS["c"]),
        Binding("s", "stats", "Stats", id="stats", tooltip=_TIPS["s"]),
        Binding("enter", "show_detail", "Detail", id="result-detail", tooltip=_TIPS["enter"]),
        # Priority, so that it (not the screen's hidden tab binding) is what the footer shows.
        Binding(
            "tab", "focus_next", "Next pane", id="next-pane", priority=True, tooltip=_TIPS["tab"]
        ),
        Binding(
            "question_mark",
            "help",
            "Help",
            key_display="?",
            id="help",
            priority=True,
            tooltip=_TIPS["?"],
        ),
        Binding("q", "quit", "Quit", id="quit", priority=True, tooltip=_TIPS["q"]),
        Binding(
            "ctrl+c",
            "cut_drain",
            "Stop draining",
            show=False,
            id="cut-drain",
            priority=True,
            tooltip="While draining: cancel what is still in flight and exit",
        ),
        Binding(
            "plus",
            "batch_up",
            "Batch size up",
            key_display="+",
            group=_BATCH,
            id="batch-up",
            priority=True,
            tooltip=_TIPS["+"],
        ),
        Binding(
            "minus",
            "batch_down",
            "Batch size down",
            key_display="-",
            group=_BATCH,
            id="batch-down",
            priority=True,
            tooltip=_TIPS["-"],
        ),
        Binding(
            "right_square_bracket",
            "concurrency_up",
            "Concurrency up",
            key_display="]",
            group=_CONCURRENCY,
            id="concurrency-up",
            priority=True,
            tooltip=_TIPS["]"],
        ),
        Binding(
            "left_square_bracket",
            "concurrency_down",
            "Concurrency down",
            key_display="[",
            group=_CONCURRENCY,
            id="concurrency-down",
            priority=True,
            tooltip=_TIPS["["],
        ),
        *TRIAGE_BINDINGS,
        Binding("A", "audit", "Audit", show=False, id="audit", tooltip=AUDIT_TIP),
    ]
    """
    | Key | Does |
    | --- | --- |
    | p | pause / resume everything |
    | space | pause / resume the selected handler |
    | r | run one cycle now |
    | f | results filter: all, failed only, selected handler |
    | / , n , N | search results or logs; next / previous match |
    | z | zoom the focused pane |
    | F | freeze / unfreeze the results |
    | c | copy the selected item id |
    | s | stats screen |
    | enter | result detail (on a handler: its results) |
    | tab | next pane |
    | ? | help |
    | q | quit (drains a hosted service) |
    | + / - | batch size of the selected handler |
    | ] / [ | concurrency |
    | A | audit history: who changed which control, when |
    """

    paused: reactive[bool] = reactive(False, bindings=True)
    """The service is paused (the footer offers Resume)."""
    handler_paused: reactive[bool | None] = reactive(None, bindings=True)
    """The selected handler is paused; None when no handler is selected."""
    quitting: reactive[bool] = reactive(False, bindings=True)
    """Quit was asked for: the service is draining and the app exits when it is done."""
    frozen: reactive[bool] = reactive(False, bindings=True)
    """The results pane holds new rows back (the footer offers Unfreeze)."""

    def __init__(
        self,
        service: ConsoleService,
        *,
        refresh_interval: float | None = 0.25,
        clock: Clock = utc_now,
        tz: tzinfo | None = None,
        max_results: int = 2000,
        max_log_lines: int = 1000,
        log_sink: LogSink | None = None,
        host: bool | None = None,
        config: str | None = None,
    ) -> None:
        super().__init__()
        self.service = service
        self.host = host
        """Run the service while the app runs: None decides on mount (:func:`can_host`)."""
        self.config = config
        """The config file the handlers came from (named when none is registered)."""
        self.refresh_interval = refresh_interval
        self.clock = clock
        self.tz = tz
        self.max_results = max_results
        self.max_log_lines = max_log_lines
        self.log_sink = log_sink or LogSink(capacity=max_log_lines)
        """Records put here (see ``capture_logs``) appear in the log pane."""
        self.read_only = bool(getattr(service, "read_only", False))
        """The service refuses every change (``serve --read-only``): no key offers one."""
        self.purpose_filter: HandlerPurpose | None = None
        self.last_snapshot = service.snapshot()
        self._events: EventSubscription | None = None
        self._timer: Timer | None = None
        self._panes: _Panes | None = None
        self.stats = StatsHistory()
        """Samples of the snapshots this console read (the stats screen plots them)."""
        self._retries: dict[tuple[str, str], str] = {}
        """Retries asked from this console, by (handler, item id): followed to their end."""
        self._search_target = "results"
        self._counts_label = ""
        self._handler_names: tuple[str, ...] | None = None
        self._host_stop: anyio.Event | None = None  # made in the app's loop, on mount
        self._host_done: anyio.Event | None = None
        self.host_error: BaseException | None = None
        """Why the hosted service did not start or stopped running (the app then exits with
        2 or 1); :func:`~novaconsole.console.serve_console` raises it after the app ends."""
        self.print_host_error = True
        """Print ``host_error`` in one line when the app ends (off when the caller raises it)."""

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield NoHandlers(self.config, id="no-handlers")
        with Horizontal(id="top"):
            yield HandlersTable(id="handlers")
            yield QueuePanel(id="queue")
        yield FleetPane(id="fleet")
        yield ResultsView(max_rows=self.max_results, tz=self.tz, id="results")
        yield LogPane(max_lines=self.max_log_lines, tz=self.tz, id="logs")
        yield SearchBar(id="search")
        yield KeysFooter(id="footer")

    @property
    def handlers_table(self) -> HandlersTable:
        return self.query_one("#handlers", HandlersTable)

    @property
    def results(self) -> ResultsView:
        return self.query_one("#results", ResultsView)

    @property
    def hosting(self) -> bool:
        """The app runs its service (and stops it when it quits)."""
        return self._host_done is not None

    def _wants_host(self) -> bool:
        return self.host if self.host is not None else can_host(self.service)

    async def run_async(self, **kwargs: Any) -> int | None:
        """Run the app; a service it hosts is started first, in a task group beside the app,
        so a service that cannot start raises here before anything is drawn."""
        if self._host_done is not None or not self._wants_host():
            return await super().run_async(**kwargs)
        self._host_stop, self._host_done = anyio.Event(), anyio.Event()
        result: int | None = None
        async with anyio.create_task_group() as group:
            await group.start(self._host)
            try:
                result = await super().run_async(**kwargs)
            finally:
                self._host_stop.set()  # however the app ended
        return result

    async def on_mount(self) -> None:
        # run_test() and other callers of the message loop: host from a worker of the app.
        if self._host_done is None and self._wants_host() and not await self._start_hosting():
            return
        self._open_panes()

    async def _start_hosting(self) -> bool:
        """Start the service in a worker of the app; False (and exit 2) when it cannot start."""
        self._host_stop, self._host_done = anyio.Event(), anyio.Event()
        ready = anyio.Event()

        class Started:
            def started(self, value: object = None) -> None:
                ready.set()

        async def host() -> None:
            try:
                await self._host(task_status=Started())
            except Exception:
                pass  # kept in host_error
            finally:
                ready.set()

        self.run_worker(host(), name="service", group="service", exit_on_error=False)
        await ready.wait()
        if self.host_error is not None:
            self._exit_for("the service did not start", self.host_error, 2)
            return False
        return True

    async def _host(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the service until ``_host_stop`` is set. A failure to start is raised; a
        failure while running ends the app (status 1). Either is kept in ``host_error``."""
        assert self._host_stop is not None and self._host_done is not None
        service: HostableService = self.service
        started = False
        try:
            async with service.running():
                started = True
                task_status.started()
                await self._host_stop.wait()
        except Exception as error:  # a store that cannot open, a bad URL, a crash
            self.host_error = error
            if not started:
                raise
            self._exit_for("the service stopped", error, 1)  # the console must not go on
        finally:
            self._host_done.set()

    def _exit_for(self, what: str, error: BaseException, code: int) -> None:
        message = _failure(what, error) if self.print_host_error else None
        self.exit(return_code=code, message=message)

    def _open_panes(self) -> None:
        # Held, not queried, by the refresh: a tick during shutdown must find nothing missing.
        self._panes = _Panes(
            status=self.query_one(StatusBar),
            handlers=self.handlers_table,
            queue=self.query_one(QueuePanel),
            fleet=self.query_one(FleetPane),
            results=self.results,
            logs=self.query_one(LogPane),
        )
        self._events = self.service.events(max_buffer=max(10_000, self.max_results * 2))
        if recent := self.service.recent_outcomes():
            self.results.add(recent)  # what happened before the console opened
        self.query_one("#queue").border_title = "Queue"
        self.query_one("#fleet").border_title = "Workers sharing the database"
        self.query_one("#logs").border_title = "Logs"
        self.refresh_view()
        self.results.border_title = self.results.title
        self.handlers_table.focus()
        if self.refresh_interval:
            self._timer = self.set_interval(self.refresh_interval, self.refresh_view)
        # Everything alive after start-up (Textual, SQLAlchemy, the app) lives to the end:
        # frozen, full collections stop rescanning it (measured: 150 ms pauses -> 27-61 ms).
        self.call_after_refresh(gc.freeze)

    async def on_unmount(self) -> None:
        # However the app ends, a hosted service is stopped before the app is gone.
        if self._host_stop is not None and self._host_done is not None:
            self._host_stop.set()
            await self._host_done.wait()
        self._panes = None
        if self._timer is not None:
            self._timer.stop()
        if self._events is not None:
            self._events.close()

    # ------------------------------------------------------------------ refresh

    def refresh_view(self) -> None:
        """Read a snapshot, take the events and log records since the last call, and show
        them in one batch. Called by the timer; unchanged values touch no widget."""
        snapshot = self.service.snapshot()
        self.last_snapshot = snapshot
        outcomes: list[ItemOutcome] = []
        retries: list[RetryStatus] = []
        if self._events is not None:
            for event in self._events.drain():
                if isinstance(event, ItemFinished):
                    outcomes.append(event.outcome)
                elif isinstance(event, RetryProgress) and self._retries:
                    retries.append(event.status)
        records = self.log_sink.take()
        panes = self._panes
        if panes is None or not panes.status.is_attached:
            return  # shutting down
        if retries:
            self._follow_retries(retries)
        now = self.clock()
        if self.stats.offer(snapshot, now) and isinstance(self.screen, StatsScreen):
            self.screen.show(self.stats.samples)
        with self.batch_update():
            panes.status.show(
                status_view(
                    snapshot,
                    quitting=self.quitting,
                    filter=self.results_filter_label,
                    now=now,
                    tz=self.tz,
                    read_only=self.read_only,
                )
            )
            self._show_handlers_or_hint(snapshot)
            panes.handlers.show(handler_rows(snapshot, now, self.purpose_filter, self.tz))
            panes.queue.show(queue_view(snapshot))
            if shows_fleet(snapshot) or panes.fleet.display:
                panes.fleet.show(shows_fleet(snapshot), fleet_rows(snapshot, self.clock()))
            if outcomes:
                panes.results.add(outcomes)
                panes.results.border_title = panes.results.title
            panes.logs.write_records(records)
        self.paused = snapshot.paused
        self._sync_handler_state()

    @property
    def results_filter_label(self) -> str:
        """The results filter and search in words, ``frozen`` when frozen; "" for none."""
        # The refresh asks every tick: the held pane, not a DOM query.
        results = self._panes.results if self._panes is not None else self.results
        label = filter_label(results.mode, results.filter_handler, results.search_text)
        if results.frozen:
            label = f"{label} · frozen" if label else "frozen"
        return label

    def _show_handlers_or_hint(self, snapshot: Snapshot) -> None:
        names = tuple(snapshot.handlers)
        label = counts_label(snapshot)
        if names != self._handler_names:
            self._handler_names = names
            self.query_one("#no-handlers").display = not names
            self.query_one("#top").display = bool(names)
        if label != self._counts_label:
            self._counts_label = label
            self._title_handlers()

    def _title_handlers(self) -> None:
        purpose = "" if self.purpose_filter is None else f" · {self.purpose_filter.value}"
        self.handlers_table.border_title = f"Handlers{purpose}"
        self.handlers_table.border_subtitle = f"counts {self._counts_label}"

    def _retitle_results(self) -> None:
        results = self.results
        results.border_title = results.title
        if self._panes is not None:
            self._panes.status.show(
                status_view(
                    self.last_snapshot,
                    quitting=self.quitting,
                    filter=self.results_filter_label,
                    now=self.clock(),
                    tz=self.tz,
                    read_only=self.read_only,
                )
            )

    def _sync_handler_state(self) -> None:
        name = self.selected_handler
        view = self.last_snapshot.handlers.get(name) if name is not None else None
        self.handler_paused = view.paused if view is not None else None

    @property
    def selected_handler(self) -> str | None:
        """The handler under the handlers table's cursor."""
        return self._panes.handlers.selected_handler if self._panes is not None else None

    @on(DataTable.RowHighlighted, "#handlers")
    def _handler_highlighted(self) -> None:
        self._sync_handler_state()
        results = self.results
        if results.mode is ResultFilter.HANDLER and results.filter_handler != self.selected_handler:
            self.set_result_filter(ResultFilter.HANDLER)

    @on(DataTable.RowSelected, "#handlers")
    def _handler_selected(self) -> None:
        """enter on a handler: its results."""
        self.set_result_filter(ResultFilter.HANDLER)
        self.results.focus()

    @on(ResultsView.ResultSelected)
    def _result_selected(self, event: ResultsView.ResultSelected) -> None:
        self.open_detail(event.outcome)

    # ------------------------------------------------------------------ keys

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "focus_next":
            return True  # tab moves through the fields of a dialog too
        if action in _PRIORITY_ACTIONS and (
            len(self.screen_stack) > 1 or isinstance(self.focused, Input)
        ):
            return False  # a modal, help, the palette or the search line has the keys
        if action in _MAIN_SCREEN_ACTIONS and len(self.screen_stack) > 1:
            return False  # they act on the main screen's panes: not from the failure groups
        if self.read_only and action in _CHANGING_ACTIONS:
            return False
        if action == "cut_drain":
            return self.quitting and self.hosting
        if self.quitting and action not in ("quit", "help", "show_detail", "command_palette"):
            return None  # shown disabled while draining
        if action == "pause_all":
            return not self.paused
        if action == "resume_all":
            return self.paused
        if action == "pause_handler":
            return None if self.handler_paused is None else not self.handler_paused
        if action == "resume_handler":
            return self.handler_paused is True
        if action == "freeze":
            return not self.frozen
        if action == "unfreeze":
            return self.frozen
        if action == "copy_id":
            return self.results.selected is not None or None
        if action in ("batch_up", "batch_down", "peek"):
            return self.handler_paused is not None or None
        return True

    def action_pause_all(self) -> None:
        self.ask_pause("everything", partial(steer, self.service, "pause"))

    def action_resume_all(self) -> None:
        steer(self.service, "resume")
        self.refresh_view()

    def action_pause_handler(self) -> None:
        if (name := self.selected_handler) is not None:
            self.pause_handler(name)

    def action_resume_handler(self) -> None:
        if (name := self.selected_handler) is not None:
            self.resume_handler(name)

    def action_batch_up(self) -> None:
        if (name := self.selected_handler) is not None:
            self.change_batch_size(name, 1)

    def action_batch_down(self) -> None:
        if (name := self.selected_handler) is not None:
            self.change_batch_size(name, -1)

    def action_concurrency_up(self) -> None:
        steer(self.service, "set_concurrency", self.last_snapshot.concurrency + 1)
        self.refresh_view()

    def action_concurrency_down(self) -> None:
        if self.last_snapshot.concurrency > 1:
            steer(self.service, "set_concurrency", self.last_snapshot.concurrency - 1)
            self.refresh_view()

    def action_run_once(self) -> None:
        self.run_worker(self._run_once(), group="run-once")

    async def _run_once(self) -> None:
        self.notify("Running one cycle…", timeout=2)
        try:
            report = await self.service.run_once()
        except RuntimeError as error:
            self.notify(str(error), title="Run once", severity="error")
            return
        describe = getattr(self.service, "describe_run_once", None)
        if describe is not None:  # attached: the cycle runs on a worker of the fleet
            self.notify(describe(report), title="Run once")
            return
        failed = report.failed
        self.notify(
            f"Cycle {report.cycle}: {len(report.outcomes)} items, {failed} failed"
            + (f", {len(report.fetch_errors)} fetch errors" if report.fetch_errors else ""),
            title="Run once",
            severity="warning" if failed or report.fetch_errors else "information",
        )
        self.refresh_view()

    def action_search(self) -> None:
        """Open the search line for the log pane when it has focus, else for the results."""
        target = "logs" if isinstance(self.focused, LogPane) else "results"
        self._search_target = target
        query = (
            self.results.search_text if target == "results" else self.query_one(LogPane).search_text
        )
        self.query_one(SearchBar).open(target, query)

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        if self._search_target == "results":
            self.results.set_query(event.value)
            self._retitle_results()
        else:
            self._search_logs(event.value, 1)

    @on(Input.Submitted, "#search")
    def _search_submitted(self) -> None:
        self._close_search()

    @on(SearchBar.Cancelled)
    def _search_cancelled(self) -> None:
        if self._search_target == "results":
            self.results.set_query("")
            self._retitle_results()
        else:
            self._search_logs("", 1)
        self._close_search()

    def _close_search(self) -> None:
        self.query_one(SearchBar).display = False
        target = self.results if self._search_target == "results" else self.query_one(LogPane)
        target.focus()

    def _search_logs(self, query: str, direction: int) -> None:
        logs = self.query_one(LogPane)
        found = logs.search(query, direction)
        title = "Logs"
        if query:
            count = logs.match_count()
            title = f"Logs · /{query} ({count} rows)" if found is not None else f"Logs · /{query}"
        logs.border_title = title

    def action_search_next(self) -> None:
        self._next_match(1)

    def action_search_previous(self) -> None:
        self._next_match(-1)

    def _next_match(self, direction: int) -> None:
        logs = self.query_one(LogPane)
        if isinstance(self.focused, LogPane) or (
            self._search_target == "logs" and logs.search_text
        ):
            if logs.search_text:
                self._search_logs(logs.search_text, direction)
        elif self.results.search_text:
            self.results.focus()
            self.results.move(direction)  # the rows shown all match: the next one

    def action_zoom(self) -> None:
        """The focused pane fills the screen, or goes back."""
        screen = self.screen
        if screen.maximized is not None:
            screen.minimize()
        elif self.focused is not None:
            screen.maximize(self.focused, container=False)

    def action_freeze(self) -> None:
        self.results.freeze(True)
        self.frozen = True
        self._retitle_results()

    def action_unfreeze(self) -> None:
        self.results.freeze(False)
        self.frozen = False
        self._retitle_results()

    def action_copy_id(self) -> None:
        if (outcome := self.results.selected) is not None:
            self.copy_text(str(outcome.item_id), "item id")

    def copy_text(self, text: str, what: str) -> None:
        """Put ``text`` on the clipboard (OSC 52: the terminal must allow it) and say so."""
        self.copy_to_clipboard(text)
        shown = text if len(text) <= 40 else text[:39] + "…"
        self.notify(f"Copied {what}: {shown}", title="Clipboard", timeout=3)

    def action_stats(self) -> None:
        if not isinstance(self.screen, StatsScreen):
            self.push_screen(StatsScreen(self.stats.samples))

    def action_cycle_filter(self) -> None:
        self.set_result_filter(self.results.mode.next())

    def action_show_detail(self) -> None:
        if (outcome := self.results.selected) is not None:
            self.open_detail(outcome)

    def action_audit(self) -> None:
        """The audit history: who changed which control, when (``novaconsole audit``)."""
        self.run_worker(open_audit(self, self.service), group="audit", exclusive=True)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.key_help()))

    async def action_quit(self) -> None:
        """Hosting: stop fetching, let in-flight items finish (draining…), then exit; asked
        again while draining, cut the drain short. Not hosting: exit, the service runs on."""
        if not self.hosting:
            self.exit(0)
            return
        if self.quitting:
            self.cut_drain_short()
            return
        self.quitting = True
        self.refresh_view()
        self.run_worker(self._drain_and_exit(), group="quit", exclusive=True)

    def action_cut_drain(self) -> None:
        """ctrl+c while draining (at other times ctrl+c copies, or says how to quit)."""
        self.cut_drain_short()

    def cut_drain_short(self) -> None:
        """Cancel what is still in flight (it stays pending at its source) and exit now."""
        stop_now = getattr(self.service, "cancel_drain", None)
        if not callable(stop_now):
            stop_now = getattr(self.service, "cancel_in_flight", None)  # older services
        if callable(stop_now):
            stop_now()
            self.notify("Cancelling what is still in flight (recorded cancelled)…", timeout=3)
        else:
            self.notify(
                "Still draining: in-flight items are finishing (up to the shutdown grace)",
                timeout=2,
            )

    async def _drain_and_exit(self) -> None:
        if self._host_stop is not None and self._host_done is not None:
            self._host_stop.set()  # running() drains, then stops
            await self._host_done.wait()
        self.refresh_view()
        self.exit(0)

    # ------------------------------------------------------------------ operations

    def pause_handler(self, name: str) -> None:
        """Ask why and for how long (the pause dialog), then pause ``name``."""
        self.ask_pause(name, partial(steer, self.service, "pause_handler", name))

    def resume_handler(self, name: str) -> None:
        steer(self.service, "resume_handler", name)
        self.refresh_view()

    def ask_pause(self, subject: str, pause: Callable[..., Any]) -> None:
        """Open the pause dialog for ``subject``; on Enter call ``pause(reason=, until=)``."""

        def answered(request: PauseRequest | None) -> None:
            if request is None or self.quitting:
                return
            try:
                pause(reason=request.reason, until=request.until)
            except ValueError as error:  # a control the service refuses: say why
                self.notify(str(error), title="Pause", severity="error")
            self.refresh_view()

        self.push_screen(PauseDialog(subject), answered)

    def change_batch_size(self, name: str, direction: int) -> None:
        """Batch size of ``name`` one step up (1) or down (-1)."""
        view = self.last_snapshot.handlers[name]
        steer(self.service, "set_batch_size", name, next_batch_size(view.batch_size, direction))
        self.refresh_view()

    def show_handler_results(self, name: str) -> None:
        self.handlers_table.select_handler(name)
        self.set_result_filter(ResultFilter.HANDLER, name)

    def set_result_filter(self, mode: ResultFilter, handler: str | None = None) -> None:
        self.results.set_filter(mode, handler or self.selected_handler)
        self._retitle_results()

    def set_purpose_filter(self, purpose: HandlerPurpose | None) -> None:
        self.purpose_filter = purpose
        self._title_handlers()
        self.refresh_view()

    def retry_item(self, handler: str, item_id: Any) -> None:
        """Forget a failed item's attempts so its source hands it out again."""
        self.run_worker(self._retry(handler, item_id), group="retry")

    async def _retry(self, handler: str, item_id: Any) -> None:
        title = f"Retry {handler} item {item_id}"
        request = getattr(self.service, "request_retry", None)
        if not callable(request):  # an attached fleet: forget the attempts
            forgotten = await steer(self.service, "retry_item", handler, item_id)
            said = "will be processed again" if forgotten else "nothing to retry"
            self.notify(said, title=title)
            return
        status = await steer(self.service, "request_retry", handler, item_id)
        if status is None:
            self.notify("nothing to retry", title=title, severity="warning")
            return
        self._retries[(status.handler, status.item_id)] = title
        self.notify(status.message(), title=title)

    def _follow_retries(self, statuses: list[RetryStatus]) -> None:
        """Say how each retry asked from here ended (``RetryProgress`` events)."""
        for status in statuses:
            key = (status.handler, status.item_id)
            if status.state in _RETRY_ENDS and (title := self._retries.pop(key, None)):
                failed = status.state != "succeeded"
                self.notify(
                    status.message(), title=title, severity="warning" if failed else "information"
                )

    def open_detail(self, outcome: ItemOutcome) -> None:
        def retry_if_asked(retry: bool | None) -> None:
            if retry and not self.read_only:
                self.retry_item(outcome.handler, outcome.item_id)

        self.push_screen(ResultDetailScreen(outcome, self.tz, copy=self.copy_text), retry_if_asked)

    # ------------------------------------------------------------------ help and palette

    def key_help(self) -> list[tuple[str, str, str]]:
        """(key, action, explanation) of every console key, from the bindings themselves."""
        rows: dict[str, tuple[str, str, str]] = {}
        for binding in self.BINDINGS:
            if not isinstance(binding, Binding):
                continue
            key = binding.key_display or binding.key
            if key in rows:
                _, action, tip = rows[key]
                rows[key] = (key, f"{action} / {binding.description}", tip)
            else:
                rows[key] = (key, binding.description, binding.tooltip)
        rows["enter "] = ("enter", "Its results", "On a handler: show only its results")
        rows["N"] = ("N", "Previous match", "Previous match of the search")
        rows["shift+tab"] = ("shift+tab", "Previous pane", "Focus the previous pane")
        rows["escape"] = ("escape", "Back", "Close a screen, clear the search, leave the zoom")
        rows["ctrl+p"] = ("ctrl+p", "Palette", "Every action above, and per handler, by name")
        rows["ctrl+q"] = ("ctrl+q", "Quit", "Same as q")
        return list(rows.values())

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from system_commands(self)
        for command in super().get_system_commands(screen):
            if command.title not in ("Quit the application",):
                yield command


def _failure(what: str, error: BaseException) -> str:
    """The one line printed when the app ends because of its service."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]  # a task group's wrapping says nothing to an operator
    return f"novaconsole: {what}: {type(error).__name__}: {error}"


_PRIORITY_ACTIONS = frozenset(
    binding.action
    for binding in NovaConsole.BINDINGS
    if isinstance(binding, Binding) and binding.priority
)
"""Keys bound with priority (handled by the app on arrival, before any widget: a key takes
effect within one turn of the event loop even while the service keeps it busy), so they
must step aside whenever another screen is on top."""

_RETRY_ENDS = frozenset({"succeeded", "failed", "not_offered"})

_MAIN_SCREEN_ACTIONS = frozenset(
    {"search", "search_next", "search_previous", "zoom", "freeze", "unfreeze", "copy_id"}
    | {"stats", "show_detail"}
)
"""Keys that act on the main screen's panes: hidden while another screen is on top (a
modal hides the app's keys by itself; a full screen such as the failure groups does not)."""

_CHANGING_ACTIONS = frozenset(
    {"pause_all", "resume_all", "pause_handler", "resume_handler", "run_once"}
    | {"batch_up", "batch_down", "concurrency_up", "concurrency_down"}
)
"""Actions that change the service: absent from the footer of a read-only console."""
