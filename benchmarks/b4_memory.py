"""B4 memory: a source of 1,000,000 pending items, generated lazily, through the engine.

Runs in a child process (``python -m benchmarks.b4_memory N DB``) so that nothing the other
benchmarks allocated counts. A thread samples the RSS (psutil) every 20 ms together with the
number of items processed; the parent reads the peak and the RSS when 10 %, 50 % and 90 % of
the items were done. Outcomes are recorded in a SQLite store (default retention).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from time import perf_counter
from typing import Any

import anyio

from benchmarks.measure import MB, RssSampler, progress
from benchmarks.report import Row, limit_row
from benchmarks.workloads import Counter, no_op_service

PEAK_TARGET_MB = 150.0


class _Progress(RssSampler):
    """An RSS sampler that also notes how far the run was at each sample."""

    def __init__(self, counter: Counter) -> None:
        super().__init__(interval=0.02)
        self.counter = counter
        self.samples: list[tuple[int, int]] = []

    def sample(self) -> int:
        rss = super().sample()
        self.samples.append((self.counter.processed, rss))
        return rss

    def at(self, fraction: float) -> int:
        wanted = fraction * (self.counter.total or 0)
        return next((rss for done, rss in self.samples if done >= wanted), self.latest)


async def measure(total: int, database: Path) -> dict[str, Any]:
    counter = Counter(total)
    service = no_op_service(counter.handler(), database_url=f"sqlite+aiosqlite:///{database}")
    with _Progress(counter) as sampler:
        before = sampler.sample()
        started = perf_counter()
        async with service.running():
            await counter.done.wait()
        elapsed = perf_counter() - started
    return {
        "items": total,
        "seconds": elapsed,
        "before": before,
        "peak": sampler.peak,
        "at": {str(f): sampler.at(f) for f in (0.1, 0.5, 0.9)},
        "dropped": getattr(service.store, "dropped_outcomes", 0),
    }


def run(total: int, workdir: Path) -> list[Row]:
    """Start the child, read its JSON line, make the rows."""
    database = workdir / "b4.db"
    database.unlink(missing_ok=True)
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.b4_memory", str(total), str(database)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    result = json.loads(child.stdout.strip().splitlines()[-1])
    at = {fraction: result["at"][fraction] / MB for fraction in ("0.1", "0.5", "0.9")}
    progress(
        f"B4: {total:,} items in {result['seconds']:.1f}s, RSS before {result['before'] / MB:.0f}"
        f" MB, peak {result['peak'] / MB:.0f} MB, {result['dropped']:,} outcomes dropped"
    )
    return [
        limit_row(
            "B4",
            f"peak RSS, {total:,} lazily generated items",
            result["peak"] / MB,
            "MB",
            PEAK_TARGET_MB,
        ),
        Row(
            "B4",
            "RSS at 10 % / 50 % / 90 % of the run (before: baseline column)",
            at["0.9"],
            "MB",
            baseline=result["before"] / MB,
            text=f"{at['0.1']:.0f} / {at['0.5']:.0f} / {at['0.9']:.0f} MB",
            target="flat",
            ok=at["0.9"] - at["0.1"] <= 0.1 * at["0.1"],
        ),
    ]


def main() -> None:
    total, database = int(sys.argv[1]), Path(sys.argv[2])
    print(json.dumps(anyio.run(measure, total, database)))


if __name__ == "__main__":
    main()
