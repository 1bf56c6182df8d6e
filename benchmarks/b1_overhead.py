"""B1 engine overhead: no-op items through the engine against a bare anyio memory stream.

Engine: one handler handing out batches of 1,000 items, polled back to back, 8 workers,
outcomes recorded in a SQLite store (``build(database_url=...)``) and, for the store's share,
in the in-memory store. The clock runs from entering ``service.running()`` to leaving it, so
the last outcomes are written before it stops. Baseline: one producer sending the same items
through ``anyio.create_memory_object_stream(1000)`` to 8 consumers calling the same ``process``.

Each round also runs the stream and the engine with its SQLite store inside
:func:`novaconsole.gc_tuning.tuned_gc`, the collector the ``novaconsole`` command runs with
(``[process] tune_gc``): the library leaves the collector alone, so the main rows use
CPython's defaults on both sides.

Where uvloop is installed (``pip install 'novaconsole[peers]'``), each round also runs the
stream and the engine with its SQLite store on a uvloop event loop (in a thread of its own),
each against itself on asyncio: the faster loop as an option, measured (issue 16).

Where the engine's time goes with its SQLite store: the CPU of the event loop's thread and of
the process's other threads (the store's writer, above all) per item, and the share of the
run the loop spent on the CPU. Less than one core between them, and a loop that is often
idle, say that the two take turns (the GIL, and admission waiting for its start marks)
rather than work side by side.
"""

from __future__ import annotations

import gc
import importlib.util
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from time import perf_counter, process_time, thread_time
from typing import TypeVar

import anyio
import anyio.to_thread

from benchmarks.measure import progress
from benchmarks.report import Row, ratio_row
from benchmarks.workloads import Counter, Item, no_op_service
from novaconsole.gc_tuning import tuned_gc

BATCH = 1000
_IPS = "items/s"
WORKERS = 8
UVLOOP = importlib.util.find_spec("uvloop") is not None
_T = TypeVar("_T")


async def on_uvloop(work: Callable[[], Awaitable[_T]]) -> _T:
    """``work()`` run to its end on a uvloop event loop in a thread of its own (this loop
    waits, idle)."""
    return await anyio.to_thread.run_sync(
        partial(anyio.run, work, backend_options={"use_uvloop": True})
    )


async def bare_stream(total: int) -> float:
    """Items per second through one producer, a bounded memory stream and 8 consumers."""
    counter = Counter(total)
    send, receive = anyio.create_memory_object_stream[Item](max_buffer_size=BATCH)

    async def produce() -> None:
        async with send:
            while items := counter.take(BATCH):
                for item in items:
                    await send.send(item)

    async def consume(stream: anyio.abc.ObjectReceiveStream[Item]) -> None:
        async with stream:
            async for item in stream:
                await counter.process(item)

    started = perf_counter()
    async with anyio.create_task_group() as group:
        group.start_soon(produce)
        for _ in range(WORKERS):
            group.start_soon(consume, receive.clone())
        receive.close()
    elapsed = perf_counter() - started
    assert counter.processed == total
    return total / elapsed


@dataclass(frozen=True, slots=True)
class EngineRun:
    """One run of the engine: its rate, the outcomes its store dropped, and the CPU seconds
    of the event loop's thread and of the process's other threads over ``elapsed``."""

    rate: float
    dropped: int
    loop_cpu: float
    other_cpu: float
    elapsed: float


async def engine(total: int, database: Path | None) -> EngineRun:
    """``total`` no-op items through the engine (SQLite store at ``database``, or in memory)."""
    counter = Counter(total)
    url = None if database is None else f"sqlite+aiosqlite:///{database}"
    service = no_op_service(counter.handler(), batch=BATCH, concurrency=WORKERS, database_url=url)
    started, loop_started, process_started = perf_counter(), thread_time(), process_time()
    async with service.running():
        await counter.done.wait()
    elapsed = perf_counter() - started
    loop_cpu = thread_time() - loop_started
    other_cpu = process_time() - process_started - loop_cpu
    snapshot = service.snapshot()
    assert snapshot.succeeded == total, snapshot.succeeded
    dropped: int = getattr(service.store, "dropped_outcomes", 0)
    return EngineRun(total / elapsed, dropped, loop_cpu, other_cpu, elapsed)


async def run(total: int, repeat: int, workdir: Path) -> list[Row]:
    """``repeat`` interleaved rounds (see :func:`benchmarks.report.ratio_row`)."""
    stream: list[float] = []
    with_store: list[float] = []
    in_memory: list[float] = []
    dropped: list[int] = []
    store_runs: list[EngineRun] = []
    memory_runs: list[EngineRun] = []
    stream_tuned: list[float] = []
    store_tuned: list[float] = []
    stream_uv: list[float] = []
    store_uv: list[float] = []
    for round_ in range(repeat):
        gc.collect()
        stream.append(await bare_stream(total))
        gc.collect()
        stored = await engine(total, workdir / f"b1-{round_}.db")
        store_runs.append(stored)
        with_store.append(stored.rate)
        dropped.append(stored.dropped)
        gc.collect()
        memory_runs.append(await engine(total, None))
        in_memory.append(memory_runs[-1].rate)
        with tuned_gc():
            stream_tuned.append(await bare_stream(total))
        with tuned_gc():
            tuned = await engine(total, workdir / f"b1-tuned-{round_}.db")
        store_tuned.append(tuned.rate)
        dropped.append(tuned.dropped)
        uv = ""
        if UVLOOP:
            gc.collect()
            stream_uv.append(await on_uvloop(partial(bare_stream, total)))
            gc.collect()
            on_uv = await on_uvloop(partial(engine, total, workdir / f"b1-uv-{round_}.db"))
            store_uv.append(on_uv.rate)
            dropped.append(on_uv.dropped)
            uv = f"; on uvloop: stream {stream_uv[-1]:,.0f}/s, engine+SQLite {on_uv.rate:,.0f}/s"
        progress(
            f"B1 round {round_ + 1}: stream {stream[-1]:,.0f}/s, engine+SQLite "
            f"{stored.rate:,.0f}/s ({stored.dropped} outcomes dropped; CPU per item: loop "
            f"{_per_item(stored.loop_cpu, total)}, other threads "
            f"{_per_item(stored.other_cpu, total)}), engine+memory "
            f"{in_memory[-1]:,.0f}/s; the CLI's collector: stream {stream_tuned[-1]:,.0f}/s, "
            f"engine+SQLite {store_tuned[-1]:,.0f}/s{uv}"
        )
    best = max(stream)
    return [
        Row("B1", "bare anyio stream, 1 producer → 8 consumers", best, "items/s"),
        ratio_row("B1", "engine + SQLite store vs bare stream", with_store, stream, _IPS, 1.5),
        _threads_row(store_runs, memory_runs, total),
        ratio_row("B1", "engine + memory store vs bare stream", in_memory, stream, _IPS, 1.0),
        Row(
            "B1",
            f"outcomes the SQLite store dropped (of {total:,}, worst round)",
            max(dropped),
            "outcomes",
            target="0",
            ok=max(dropped) == 0,
        ),
        ratio_row(
            "B1",
            "engine + SQLite store vs bare stream, both with the CLI's collector",
            store_tuned,
            stream_tuned,
            _IPS,
            1.5,
        ),
        ratio_row(
            "B1",
            "engine + SQLite store with the CLI's collector vs CPython's",
            store_tuned,
            with_store,
            _IPS,
            None,
        ),
        *_uvloop_rows(stream_uv, stream, store_uv, with_store),
    ]


def _threads_row(store: list[EngineRun], memory: list[EngineRun], total: int) -> Row:
    """Where the engine's time went with its SQLite store, in its median round by rate, against
    the event loop's CPU with the memory store."""
    run, alone = _median(store), _median(memory)
    busy = run.loop_cpu / run.elapsed if run.elapsed else 0.0
    return Row(
        "B1",
        "  CPU per item with the SQLite store: event loop + other threads (the writer); "
        "the loop's share of the run (baseline: the loop, memory store)",
        run.loop_cpu / total * 1e6,
        "µs",
        baseline=alone.loop_cpu / total * 1e6,
        text=f"{_per_item(run.loop_cpu, total)} + {_per_item(run.other_cpu, total)}; {busy:.0%}",
    )


def _median(runs: list[EngineRun]) -> EngineRun:
    return sorted(runs, key=lambda r: r.rate)[len(runs) // 2]


def _per_item(seconds: float, total: int) -> str:
    return f"{seconds / total * 1e6:.1f} µs"


def _uvloop_rows(
    stream_uv: list[float], stream: list[float], store_uv: list[float], store: list[float]
) -> list[Row]:
    """Each side on uvloop against itself on asyncio (for reference), or why not."""
    if not UVLOOP:
        skipped = "skipped: pip install 'novaconsole[peers]' (uvloop)"
        return [
            Row("B1", f"bare stream on uvloop vs asyncio: {skipped}", 0.0, "", text="-"),
            Row("B1", f"engine + SQLite store on uvloop vs asyncio: {skipped}", 0.0, "", text="-"),
        ]
    return [
        ratio_row("B1", "bare stream on uvloop vs on asyncio", stream_uv, stream, _IPS, None),
        ratio_row(
            "B1", "engine + SQLite store on uvloop vs on asyncio", store_uv, store, _IPS, None
        ),
    ]
