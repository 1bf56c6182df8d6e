"""The rows every benchmark returns and the one table they are printed in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median


@dataclass(frozen=True, slots=True)
class Row:
    """One measured figure, its baseline measured in the same run, and its target."""

    bench: str
    measure: str
    value: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None
    """Target met (None: no target, the figure is there for reference)."""
    text: str = ""
    """Shown instead of ``value`` when set (e.g. several percentiles in one cell)."""


def ratio_row(
    bench: str,
    measure: str,
    values: Sequence[float],
    baselines: Sequence[float],
    unit: str,
    at_least: float | None,
) -> Row:
    """Interleaved rounds of novaconsole (``values``) against a baseline, higher is better.

    The ratio is the median of the per-round ratios (each pair ran back to back, so drifting
    machine load cancels out); the absolute figures are the best round of each side. Without
    ``at_least`` the row is there for reference.
    """
    ratio = median(v / b if b else 0.0 for v, b in zip(values, baselines, strict=True))
    if at_least is None:
        return Row(bench, measure, max(values), unit, max(baselines), ratio)
    return Row(
        bench,
        measure,
        max(values),
        unit,
        max(baselines),
        ratio,
        f"≥ {at_least:g}x",
        ratio >= at_least,
    )


def limit_row(bench: str, measure: str, value: float, unit: str, at_most: float | None) -> Row:
    """A row with an absolute ceiling (lower is better), or none (reference figure)."""
    if at_most is None:
        return Row(bench, measure, value, unit)
    return Row(bench, measure, value, unit, target=f"≤ {at_most:g} {unit}", ok=value <= at_most)


def spread(p50: float, p95: float, p99: float, unit: str) -> str:
    """Three percentiles in one cell: ``p50 / p95 / p99 unit``."""
    return f"{_number(p50)} / {_number(p95)} / {_number(p99)} {unit}"


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


HEADER = ("bench", "measure", "novaconsole", "baseline", "ratio", "target", "met")


def cells(row: Row) -> tuple[str, ...]:
    return (
        row.bench,
        row.measure,
        row.text or f"{_number(row.value)} {row.unit}",
        "" if row.baseline is None else f"{_number(row.baseline)} {row.unit}",
        "" if row.ratio is None else f"{row.ratio:.2f}",
        row.target,
        {True: "yes", False: "NO", None: ""}[row.ok],
    )


def render(rows: Sequence[Row]) -> str:
    """The rows as one Markdown table, columns padded so it reads in a terminal too."""
    table = [HEADER, *(cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(table[0]), rule, *(line(values) for values in table[1:])])
