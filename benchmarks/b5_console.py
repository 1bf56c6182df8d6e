"""B5 console under load: the same workload with and without the console attached.

The console is ``NovaConsole(service)`` run headless (``app.run_test()``, 120x40) in the
service's own event loop, refresh timer on (4 Hz), as ``novaconsole`` runs it. Services here
use the in-memory store, so the console's cost is not mixed with the database's.

- Throughput: endless no-op items, saturated, outcomes per second over a fixed window after
  a warm-up, with and without the console (interleaved, best of ``repeat``).
- At a steady 10,000 items/s (a producer task, poll every 10 ms): key press to effect —
  ``]`` / ``[`` pressed through the pilot, timed until ``service.snapshot().concurrency``
  changed (polled every millisecond) — and event-loop lag: a task sleeping 10 ms again and
  again records its overshoot, with and without the console. The CPU time the process
  used per outcome in the same window, with and without the console, is shown too: unlike
  the rates, it hardly moves when other processes on the machine take the CPU.
"""

from __future__ import annotations

import gc
from time import perf_counter, process_time

import anyio

from benchmarks.measure import LagProbe, percentile, progress
from benchmarks.report import Row, ratio_row, spread
from benchmarks.workloads import Arrivals, Counter, no_op_service
from novaconsole.console import NovaConsole
from novaconsole.engine.service import ProcessingService

SIZE = (120, 40)
KEY_TARGET_MS = 100.0
KEY_GIVE_UP = 10.0
"""Seconds after which a key press that changed nothing fails the benchmark."""
MS = 1000.0


async def _rate(service: ProcessingService, seconds: float, warm_up: float) -> float:
    await anyio.sleep(warm_up)
    before, started = service.snapshot().succeeded, perf_counter()
    await anyio.sleep(seconds)
    return (service.snapshot().succeeded - before) / (perf_counter() - started)


async def saturated(seconds: float, warm_up: float, *, console: bool) -> float:
    """Outcomes per second of endless no-op items, with or without the console."""
    service = no_op_service(Counter(None).handler())
    async with service.running():
        if not console:
            return await _rate(service, seconds, warm_up)
        async with NovaConsole(service).run_test(size=SIZE):
            return await _rate(service, seconds, warm_up)


class _Paced:
    """One run at a steady arrival rate; what it measured."""

    def __init__(self) -> None:
        self.lag = LagProbe()
        self.keys: list[float] = []
        self.rate = 0.0
        self.cpu_per_item = 0.0
        """CPU seconds this process used per outcome in the measured window."""


async def paced(
    rate: float, seconds: float, presses: int, warm_up: float, *, console: bool
) -> _Paced:
    source = Arrivals()
    service = no_op_service(source.handler(), poll_interval=0.010)
    result = _Paced()
    async with service.running(), anyio.create_task_group() as group:
        group.start_soon(source.produce, rate, None)
        await anyio.sleep(warm_up)
        group.start_soon(result.lag.run)
        before, started, cpu = source.processed, perf_counter(), process_time()
        if console:
            async with NovaConsole(service).run_test(size=SIZE) as pilot:
                await anyio.sleep(warm_up)  # the first frames are drawn
                gap = seconds / max(presses, 1)
                for press in range(presses):
                    key = "right_square_bracket" if press % 2 == 0 else "left_square_bracket"
                    was = service.snapshot().concurrency
                    pressed = perf_counter()
                    group.start_soon(pilot.press, key)
                    # Polled, as a front end would see it; 1 ms is the resolution.
                    with anyio.fail_after(KEY_GIVE_UP):
                        while service.snapshot().concurrency == was:  # noqa: ASYNC110
                            await anyio.sleep(0.001)
                    result.keys.append(perf_counter() - pressed)
                    await anyio.sleep(gap)
        else:
            await anyio.sleep(seconds)
        result.rate = (source.processed - before) / (perf_counter() - started)
        result.cpu_per_item = (process_time() - cpu) / max(source.processed - before, 1)
        group.cancel_scope.cancel()
    return result


async def run(
    seconds: float, rate: float, presses: int, repeat: int, warm_up: float = 0.5
) -> list[Row]:
    bare: list[float] = []
    shown: list[float] = []
    for round_ in range(repeat):
        gc.collect()
        bare.append(await saturated(seconds, warm_up, console=False))
        gc.collect()
        shown.append(await saturated(seconds, warm_up, console=True))
        progress(f"B5 round {round_ + 1}: {bare[-1]:,.0f}/s alone, {shown[-1]:,.0f}/s with console")
    gc.collect()
    alone = await paced(rate, seconds, 0, warm_up, console=False)
    gc.collect()
    steered = await paced(rate, seconds, presses, warm_up, console=True)
    progress(
        f"B5 paced: {alone.rate:,.0f}/s alone, {steered.rate:,.0f}/s with console, "
        f"{len(steered.keys)} key presses"
    )
    keys = [k * MS for k in steered.keys]
    lag_alone = [x * MS for x in alone.lag.lags]
    lag_console = [x * MS for x in steered.lag.lags]
    return [
        ratio_row("B5", "throughput with console vs without", shown, bare, "items/s", 0.8),
        Row(
            "B5",
            f"outcomes/s while pressing keys (producer at {rate:,.0f}/s)",
            steered.rate,
            "items/s",
            baseline=alone.rate,
        ),
        Row(
            "B5",
            f"key press → effect p50/p95/max ({len(keys)} presses of ] [)",
            percentile(keys, 0.95),
            "ms",
            target=f"p95 ≤ {KEY_TARGET_MS:g} ms",
            ok=percentile(keys, 0.95) <= KEY_TARGET_MS,
            text=spread(percentile(keys, 0.5), percentile(keys, 0.95), max(keys, default=0), "ms"),
        ),
        Row(
            "B5",
            "CPU per outcome while pressing keys (baseline: no console)",
            steered.cpu_per_item * 1_000_000,
            "µs",
            baseline=alone.cpu_per_item * 1_000_000,
        ),
        Row(
            "B5",
            "event-loop lag p99 (10 ms sleeps; baseline: no console)",
            percentile(lag_console, 0.99),
            "ms",
            baseline=percentile(lag_alone, 0.99),
        ),
    ]
