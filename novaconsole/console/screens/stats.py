"""The stats screen: items per second and process latency per handler, over ten minutes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Static

from novaconsole.console.view_models import (
    StatsSample,
    fit,
    format_count,
    format_seconds,
    handler_latencies,
    handler_rates,
    latency_heading,
    latency_scale,
    latency_series,
    rate_scale,
    rates_heading,
)
from novaconsole.console.widgets.scaled_sparkline import ScaledSparkline

NAME_WIDTH = 20
"""Cells of a handler's name on the stats screen (14 on a narrow terminal, see the CSS)."""
NARROW_NAME_WIDTH = 14
VALUE_WIDTH = 17
"""Cells of a figure at the right of a plot, after its padding (14 on a narrow terminal)."""
NARROW_VALUE_WIDTH = 14
SERVICE_LATENCY = "Process latency, all handlers"
HANDLER_LATENCY = "Process latency per handler"


class StatsScreen(ModalScreen[None]):
    """One sparkline per handler (items/s, all on one scale: the highest rate of any, said in
    the heading), two for the whole service's process latency (p50, p95), then two per
    handler (its own p50 and p95): every latency plot on one scale, the highest p50 or p95
    of any (said in both latency headings), so p50 never draws taller than p95 and handlers
    compare. From the samples the console keeps (see ``console.stats.StatsHistory``);
    :meth:`show` updates them."""

    DEFAULT_CSS = """
    StatsScreen .stats-half { width: 1fr; margin: 0 1 0 0; }
    StatsScreen .stats-columns { color: $text-muted; }
    StatsScreen .stats-columns Label { color: $text-muted; }
    StatsScreen .stats-note { color: $text-muted; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="close-stats"),
        Binding("s", "close", "Close", show=False, id="close-stats-key"),
    ]

    def __init__(self, samples: Sequence[StatsSample]) -> None:
        super().__init__()
        self._samples = tuple(samples)
        self._names = tuple(rate.name for rate in handler_rates(self._samples))
        self._latency_names = tuple(s.name for s in handler_latencies(self._samples))

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="stats-body") as body:
            body.border_title = "novaconsole · stats"
            yield Static("", id="stats-window", classes="stats-heading")
            for index, name in enumerate(self._names):
                with Horizontal(classes="stats-row"):
                    yield Label(name, classes="stats-name handler-name")
                    yield ScaledSparkline([], id=f"stats-rate-{index}", classes="stats-spark")
                    yield Label("", id=f"stats-rate-text-{index}", classes="stats-value")
            yield Static(SERVICE_LATENCY, id="stats-latency", classes="stats-heading")
            for key in ("p50", "p95"):
                with Horizontal(classes="stats-row"):
                    yield Label(key, classes="stats-name")
                    yield ScaledSparkline([], id=f"stats-{key}", classes="stats-spark")
                    yield Label("", id=f"stats-{key}-text", classes="stats-value")
            yield Static(HANDLER_LATENCY, id="stats-handler-latency", classes="stats-heading")
            with Horizontal(classes="stats-row stats-columns"):
                yield Label("", classes="stats-name")
                yield Label("p50", classes="stats-half")
                yield Label("p95", classes="stats-half")
                yield Label("now p50 / p95", classes="stats-value")
            for index, name in enumerate(self._latency_names):
                with Horizontal(classes="stats-row"):
                    yield Label(name, classes="stats-name handler-name")
                    yield ScaledSparkline([], id=f"stats-lat50-{index}", classes="stats-half")
                    yield ScaledSparkline([], id=f"stats-lat95-{index}", classes="stats-half")
                    yield Label("", id=f"stats-lat-text-{index}", classes="stats-value")
            yield Static(
                "0: it finished nothing in the minute before.",
                classes="stats-note",
            )
        yield Footer()

    def on_mount(self) -> None:
        self.show(self._samples)

    def on_resize(self) -> None:
        self.show(self._samples)

    def _fit_names(self) -> None:
        """Long handler names end in an ellipsis rather than run into their plot."""
        narrow = self.app.size.width < 120
        width = (NARROW_NAME_WIDTH if narrow else NAME_WIDTH) - 1
        names = (*self._names, *self._latency_names)
        for label, name in zip(self.query(".handler-name").results(Label), names, strict=False):
            label.update(fit(name, width).rstrip())

    def show(self, samples: Sequence[StatsSample]) -> None:
        """Plot ``samples`` (handlers that appeared since opening wait for the next opening)."""
        self._samples = tuple(samples)
        every_rate = handler_rates(self._samples)
        top = rate_scale(every_rate)
        self.query_one("#stats-window", Static).update(rates_heading(self._samples, top))
        rates = {rate.name: rate for rate in every_rate}
        for index, name in enumerate(self._names):
            rate = rates.get(name)
            plotted = rate.rates if rate is not None else ()
            self.query_one(f"#stats-rate-{index}", ScaledSparkline).plot(plotted, top)
            now = rate.now if rate is not None else 0.0
            peak = rate.peak if rate is not None else 0.0
            self.query_one(f"#stats-rate-text-{index}", Label).update(
                f"{format_count(now)}/s ↑{format_count(peak)}"
            )
        p50, p95 = latency_series(self._samples)
        every_latency = handler_latencies(self._samples)
        scale = latency_scale((p50, p95), every_latency)
        for heading, title in (
            ("#stats-latency", SERVICE_LATENCY),
            ("#stats-handler-latency", HANDLER_LATENCY),
        ):
            self.query_one(heading, Static).update(latency_heading(title, scale))
        for key, series in (("p50", p50), ("p95", p95)):
            values = list(series)
            self.query_one(f"#stats-{key}", ScaledSparkline).plot(values, scale)
            last = values[-1] if values else None
            self.query_one(f"#stats-{key}-text", Label).update(
                f"{format_seconds(last)} ↑{format_seconds(max(values, default=None))}"
            )
        latencies = {series.name: series for series in every_latency}
        value_width = NARROW_VALUE_WIDTH if self.app.size.width < 120 else VALUE_WIDTH
        for index, name in enumerate(self._latency_names):
            found = latencies.get(name)
            for key, plotted in (
                ("lat50", found.p50 if found else ()),
                ("lat95", found.p95 if found else ()),
            ):
                self.query_one(f"#stats-{key}-{index}", ScaledSparkline).plot(plotted, scale)
            self.query_one(f"#stats-lat-text-{index}", Label).update(
                found.text_within(value_width) if found else "-"
            )
        self._fit_names()

    def action_close(self) -> None:
        self.dismiss(None)
