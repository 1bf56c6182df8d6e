"""The queue pane: depth against capacity, workers, throughput and latency."""

from __future__ import annotations

from textual.app import ComposeResult, RenderResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Label, ProgressBar, Sparkline

from novaconsole.console.view_models import QueueView, busy_line, latency_table


class LatencyTable(Widget):
    """Latency p50 and p95 per stage, as ``view_models.latency_table`` lays them out for
    this widget's width (drawn again when the width changes)."""

    rows: reactive[tuple[tuple[str, str, str], ...]] = reactive(())
    """(stage, p50, p95) per stage."""

    def render(self) -> RenderResult:
        lines = [
            Content.assemble((label, "$text-muted"), figures)
            for label, figures in latency_table(self.rows, self.size.width)
        ]
        lines[0] = lines[0].stylize("$text-muted")
        return Content("\n").join(lines)


class BusyLine(Widget):
    """Items in flight against concurrency and the last cycle's duration, as
    ``view_models.busy_line`` fits them to this widget's width."""

    figures: reactive[tuple[str, str]] = reactive(("", ""))
    """(in flight / concurrency, last cycle)."""

    def render(self) -> RenderResult:
        workers, cycle = self.figures
        return Content.assemble(
            *(
                (text, "$text-muted") if label else text
                for text, label in busy_line(workers, cycle, self.size.width)
            )
        )


class QueuePanel(Vertical):
    """Depth bar, in flight against concurrency, a throughput sparkline and latency p50/p95.

    Each child is updated only when its value changed since the last :meth:`show`, and
    without a layout pass: every child has a fixed size (see console.tcss), and a layout
    of the whole screen several times a second costs the hosted service dearly.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._view: QueueView | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="queue-row"):
            yield Label("depth", classes="queue-label")
            yield ProgressBar(total=1, show_eta=False, show_percentage=False, id="queue-depth-bar")
            yield Label("", id="queue-depth")
        with Horizontal(classes="queue-row"):
            yield Label("items/s", classes="queue-label")
            yield Sparkline([], id="queue-throughput")
            yield Label("", id="queue-rate")
        yield BusyLine(id="queue-workers")
        yield LatencyTable(id="queue-latency")

    def on_mount(self) -> None:
        self._bar = self.query_one("#queue-depth-bar", ProgressBar)
        self._depth = self.query_one("#queue-depth", Label)
        self._sparkline = self.query_one("#queue-throughput", Sparkline)
        self._rate = self.query_one("#queue-rate", Label)
        self._workers = self.query_one("#queue-workers", BusyLine)
        self._latency = self.query_one("#queue-latency", LatencyTable)

    def show(self, view: QueueView) -> None:
        """Display ``view``, touching only the parts that differ from what is shown."""
        before = self._view
        if view == before:
            return
        self._view = view
        if before is None or (before.depth, before.capacity) != (view.depth, view.capacity):
            self._bar.update(total=view.capacity, progress=view.depth)
        if before is None or before.depth_text != view.depth_text:
            self._depth.update(view.depth_text, layout=False)
        if before is None or before.throughput != view.throughput:
            self._sparkline.data = list(view.throughput)
        if before is None or before.rate_text != view.rate_text:
            self._rate.update(view.rate_text, layout=False)
        self._workers.figures = (view.workers_text, view.last_cycle)
        if before is None or before.latency != view.latency:
            self._latency.rows = view.latency
