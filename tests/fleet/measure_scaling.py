"""Throughput of 1, 2 and 4 worker processes on one PostgreSQL database (a measurement, not a
test): ``python -m tests.fleet.measure_scaling [--counts 1,2,4] [--per-worker 400]``.

Each item is I/O-bound: the handler records that it started, awaits ``anyio.sleep(0.05)``,
then marks the item done (see ``worker.py``); concurrency per worker is fixed. The workers
are started and ready before the items appear; the clock runs from the insert of the items to
the last one done. Prints items/s per worker count and the ratio to N x one worker.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import anyio

from novaconsole.store.database import create_engine
from tests.fleet.conftest import Fleet
from tests.postgres import throwaway_database


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine so far (Linux /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class Run:
    rate: float
    worker_cpu_ms: float
    """Worker CPU time per item."""
    machine_busy: float
    """Share of the machine's CPU in use during the run (every process, not only ours)."""


async def _run(count: int, items: int, options: list[str], folder: Path) -> Run:
    async with throwaway_database("novaconsole_scaling") as url:
        return await _measure(Fleet(url, create_engine(url), folder), count, items, options)


async def _measure(fleet: Fleet, count: int, items: int, options: list[str]) -> Run:
    try:
        await fleet.setup()
        workers = fleet.start(count, *options)
        await fleet.ready(workers, within=60)
        cpu_before = sum(_cpu_seconds(w.process.pid) for w in workers)
        busy_before, total_before = _machine_busy()
        started = time.perf_counter()
        await fleet.add_items(range(1, items + 1), duration=0.05)

        async def done() -> bool:
            left = await fleet.scalar("SELECT count(*) FROM fleet_items WHERE NOT done")
            return bool(left == 0)

        await fleet.until(done, 300, "every item done")
        elapsed = time.perf_counter() - started
        cpu = sum(_cpu_seconds(w.process.pid) for w in workers) - cpu_before
        busy_after, total_after = _machine_busy()
        runs = await fleet.scalar("SELECT count(*) FROM fleet_runs")
        if runs != items:
            print(f"  note: {runs - items} duplicate runs with {count} workers")
        await fleet.stop()
        busy = (busy_after - busy_before) / max(total_after - total_before, 1)
        return Run(items / elapsed, 1000 * cpu / items, busy)
    finally:
        await fleet.engine.dispose()


async def main(args: argparse.Namespace) -> None:
    options = [
        "--order", args.order, "--concurrency", str(args.concurrency),
        "--batch", str(args.batch), "--poll", str(args.poll), "--lease", "10",
        *(["--light"] if args.light else []),
    ]  # fmt: skip
    counts = [int(part) for part in args.counts.split(",")]
    print(
        f"I/O-bound items (sleep 0.05 s), concurrency {args.concurrency} per worker, "
        f"batch {args.batch}, poll {args.poll} s, source order: {args.order}, "
        f"writes: {'one transaction per batch' if args.light else 'two transactions per item'}"
    )
    runs: dict[int, Run] = {}
    with TemporaryDirectory() as folder:
        for count in counts:
            runs[count] = await _run(count, args.per_worker * count, options, Path(folder))
    one = runs[1].rate if 1 in runs else None
    print(
        f"{'workers':>7} {'items/s':>9} {'ratio to N x one':>17} "
        f"{'worker CPU ms/item':>19} {'machine CPU busy':>17}"
    )
    for count, run in runs.items():
        ratio = f"{run.rate / (count * one):.2f}" if one else "-"
        print(
            f"{count:>7} {run.rate:>9.1f} {ratio:>17} {run.worker_cpu_ms:>19.1f} "
            f"{run.machine_busy:>16.0%}"
        )
    print(f"machine: {os.cpu_count()} CPUs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--counts", default="1,2,4")
    parser.add_argument("--per-worker", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--poll", type=float, default=0.05)
    parser.add_argument("--order", choices=("random", "head"), default="random")
    parser.add_argument("--light", action="store_true", help="the batch's shared transaction")
    anyio.run(main, parser.parse_args())
