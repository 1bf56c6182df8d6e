"""Measuring helpers: percentiles, event-loop lag, sampled RSS, progress output."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from time import perf_counter
from typing import Self

import anyio


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``samples`` (0.0 when there are none)."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def progress(message: str) -> None:
    """One progress line on stderr (the table alone goes to stdout), with the machine's load
    average (1, 5, 15 minutes) at the time: figures measured on a busy machine say so."""
    load = "/".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"  {message}  [load {load}]", file=sys.stderr, flush=True)


class LagProbe:
    """Sleeps ``interval`` seconds again and again and records how late each wake-up was."""

    def __init__(self, interval: float = 0.010) -> None:
        self.interval = interval
        self.lags: list[float] = []

    async def run(self) -> None:
        """Until cancelled."""
        while True:
            started = perf_counter()
            await anyio.sleep(self.interval)
            self.lags.append(max(0.0, perf_counter() - started - self.interval))


class RssSampler:
    """Samples this process's resident set size from a thread, so a busy loop cannot skew it."""

    def __init__(self, interval: float = 0.02) -> None:
        import psutil  # type: ignore[import-untyped]  # no stubs installed

        self._process = psutil.Process()
        self.interval = interval
        self.peak = 0
        self.latest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> int:
        rss = int(self._process.memory_info().rss)
        self.latest = rss
        self.peak = max(self.peak, rss)
        return rss

    def __enter__(self) -> Self:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


MB = 1024 * 1024
