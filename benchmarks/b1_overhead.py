"""B1 engine overhead: no-op items through the engine against a bare anyio memory stream.

Engine: one handler handing out batches of 1,000 items, polled back to back, 8 workers,
outcomes recorded in a SQLite store (``build(database_url=...)``) and, for the store's share,
in the in-memory store. The clock runs from entering ``service.running()`` to leaving it, so
the last outcomes are written before it stops. Baseline: one producer sending the same items
through ``anyio.create_memory_object_stream(1000)`` to 8 consumers calling the same ``process``.
"""

from __future__ import annotations

import gc
from pathlib import Path
from time import perf_counter

import anyio

from benchmarks.measure import progress
from benchmarks.report import Row, ratio_row
from benchmarks.workloads import Counter, Item, no_op_service

BATCH = 1000
_IPS = "items/s"
WORKERS = 8


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


async def engine(total: int, database: Path | None) -> tuple[float, int]:
    """Items per second through the engine (SQLite store at ``database``, or in memory), and
    how many outcomes the store dropped instead of writing."""
    counter = Counter(total)
    url = None if database is None else f"sqlite+aiosqlite:///{database}"
    service = no_op_service(counter.handler(), batch=BATCH, concurrency=WORKERS, database_url=url)
    started = perf_counter()
    async with service.running():
        await counter.done.wait()
    elapsed = perf_counter() - started
    snapshot = service.snapshot()
    assert snapshot.succeeded == total, snapshot.succeeded
    dropped: int = getattr(service.store, "dropped_outcomes", 0)
    return total / elapsed, dropped


async def run(total: int, repeat: int, workdir: Path) -> list[Row]:
    """``repeat`` interleaved rounds (see :func:`benchmarks.report.ratio_row`)."""
    stream: list[float] = []
    with_store: list[float] = []
    in_memory: list[float] = []
    dropped: list[int] = []
    for round_ in range(repeat):
        gc.collect()
        stream.append(await bare_stream(total))
        gc.collect()
        rate, lost = await engine(total, workdir / f"b1-{round_}.db")
        with_store.append(rate)
        dropped.append(lost)
        gc.collect()
        in_memory.append((await engine(total, None))[0])
        progress(
            f"B1 round {round_ + 1}: stream {stream[-1]:,.0f}/s, engine+SQLite "
            f"{with_store[-1]:,.0f}/s ({lost} outcomes dropped), engine+memory "
            f"{in_memory[-1]:,.0f}/s"
        )
    best = max(stream)
    return [
        Row("B1", "bare anyio stream, 1 producer → 8 consumers", best, "items/s"),
        ratio_row("B1", "engine + SQLite store vs bare stream", with_store, stream, _IPS, 1.5),
        ratio_row("B1", "engine + memory store vs bare stream", in_memory, stream, _IPS, 1.0),
        Row(
            "B1",
            f"outcomes the SQLite store dropped (of {total:,}, worst round)",
            max(dropped),
            "outcomes",
            target="0",
            ok=max(dropped) == 0,
        ),
    ]
