"""The stats screen: items per second per handler and process latency, over ten minutes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Sparkline, Static

from novaconsole.console.view_models import (
    StatsSample,
    format_count,
    format_seconds,
    handler_rates,
    latency_series,
    window_label,
)


class StatsScreen(ModalScreen[None]):
    """One sparkline per handler (items/s) and two for latency (p50, p95), from the samples
    the console keeps (see ``console.stats.StatsHistory``); :meth:`show` updates them."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="close-stats"),
        Binding("s", "close", "Close", show=False, id="close-stats-key"),
    ]

    def __init__(self, samples: Sequence[StatsSample]) -> None:
        super().__init__()
        self._samples = tuple(samples)
        self._names = tuple(rate.name for rate in handler_rates(self._samples))

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="stats-body") as body:
            body.border_title = "novaconsole · stats"
            yield Static("", id="stats-window", classes="stats-heading")
            for index, name in enumerate(self._names):
                with Horizontal(classes="stats-row"):
                    yield Label(name, classes="stats-name")
                    yield Sparkline([], id=f"stats-rate-{index}", classes="stats-spark")
                    yield Label("", id=f"stats-rate-text-{index}", classes="stats-value")
            yield Static("Process latency", classes="stats-heading")
            for key in ("p50", "p95"):
                with Horizontal(classes="stats-row"):
                    yield Label(key, classes="stats-name")
                    yield Sparkline([], id=f"stats-{key}", classes="stats-spark")
                    yield Label("", id=f"stats-{key}-text", classes="stats-value")
        yield Footer()

    def on_mount(self) -> None:
        self.show(self._samples)

    def show(self, samples: Sequence[StatsSample]) -> None:
        """Plot ``samples`` (handlers that appeared since opening wait for the next opening)."""
        self._samples = tuple(samples)
        window = window_label(self._samples)
        self.query_one("#stats-window", Static).update(f"Items per second per handler · {window}")
        rates = {rate.name: rate for rate in handler_rates(self._samples)}
        for index, name in enumerate(self._names):
            rate = rates.get(name)
            values = list(rate.rates) if rate is not None else []
            self.query_one(f"#stats-rate-{index}", Sparkline).data = values
            now = rate.now if rate is not None else 0.0
            peak = rate.peak if rate is not None else 0.0
            self.query_one(f"#stats-rate-text-{index}", Label).update(
                f"{format_count(now)}/s ↑{format_count(peak)}"
            )
        p50, p95 = latency_series(self._samples)
        for key, series in (("p50", p50), ("p95", p95)):
            values = list(series)
            self.query_one(f"#stats-{key}", Sparkline).data = list(values)
            last = values[-1] if values else None
            self.query_one(f"#stats-{key}-text", Label).update(
                f"{format_seconds(last)} ↑{format_seconds(max(values, default=None))}"
            )

    def action_close(self) -> None:
        self.dismiss(None)
