"""Throughput and latency figures kept cheaply on the hot path, summarised on demand."""

from __future__ import annotations

from collections import deque
from time import monotonic

from novaconsole.engine.snapshot import Latency, Percentiles


class Throughput:
    """Outcomes per second in a bounded window of one-second buckets."""

    def __init__(self, window: int = 120) -> None:
        self._window = window
        self._buckets: deque[list[int]] = deque(maxlen=window)

    def add(self, count: int = 1, now: float | None = None) -> None:
        second = int(monotonic() if now is None else now)
        buckets = self._buckets
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += count
        else:
            buckets.append([second, count])

    def series(self, now: float | None = None) -> tuple[float, ...]:
        """Counts per second for the last ``window`` complete seconds, oldest first."""
        current = int(monotonic() if now is None else now)
        counts = {second: count for second, count in self._buckets}
        start = current - self._window
        return tuple(float(counts.get(second, 0)) for second in range(start, current))

    def rate(self, seconds: int = 5, now: float | None = None) -> float:
        series = self.series(now)
        recent = series[-seconds:]
        return sum(recent) / len(recent) if recent else 0.0


class LatencySamples:
    """The most recent latency samples, split into fetch, queue wait and processing."""

    def __init__(self, keep: int = 2048) -> None:
        self.fetch: deque[float] = deque(maxlen=keep)
        self.queue: deque[float] = deque(maxlen=keep)
        self.process: deque[float] = deque(maxlen=keep)

    def summary(self) -> Latency:
        return Latency(
            fetch=percentiles(self.fetch),
            queue=percentiles(self.queue),
            process=percentiles(self.process),
        )


def percentiles(samples: deque[float] | list[float]) -> Percentiles:
    if not samples:
        return Percentiles()
    ordered = sorted(samples)
    last = len(ordered) - 1

    def at(fraction: float) -> float:
        return ordered[min(last, round(fraction * last))]

    return Percentiles(p50=at(0.50), p95=at(0.95), p99=at(0.99))
