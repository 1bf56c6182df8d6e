"""A sparkline with a scale given from outside, so that several of them compare."""

from __future__ import annotations

from collections.abc import Sequence

from rich.style import Style
from rich.text import Text
from textual.app import RenderResult
from textual.reactive import reactive
from textual.widgets import Sparkline

from novaconsole.console.view_models import scaled_bars


class ScaledSparkline(Sparkline):
    """Textual's Sparkline (its colours and component classes) drawn on the scale 0 to
    :attr:`top` rather than between its own lowest and highest value: a handler doing
    2 items/s beside one doing 2,000 shows low bars, not bars as tall (see
    ``view_models.scaled_bars``). One line high."""

    top = reactive(0.0)
    """The value of a full bar; 0 draws lowest bars."""

    def plot(self, data: Sequence[float], top: float) -> None:
        """Show ``data`` on the scale 0 to ``top``."""
        self.top = top
        self.data = list(data)

    def render(self) -> RenderResult:
        _, base = self.background_colors
        low = base + self.get_component_styles("sparkline--min-color").color
        high = base + self.get_component_styles("sparkline--max-color").color
        text = Text()
        for bar, height in scaled_bars(self.data or (), self.size.width, self.top):
            text.append(bar, Style(color=low.blend(high, height).rich_color))
        return text
