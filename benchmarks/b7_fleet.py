"""B7, many workers on PostgreSQL: 1, 2, 4, 8 headless workers (``novaconsole --no-ui``, real
processes) on one throwaway database, claims and fencing on, outcomes recorded.

Workloads (see :mod:`benchmarks.b7_handlers`): no-op items, items that sleep 5 ms, and the
drain of a ``b7_work`` table on the natural ``ORDER BY id`` query with ``ctx.unclaimed()`` and
``ctx.write()`` (poll 50 ms, concurrency 8, batches of 500). Every run starts its workers, waits
for their heartbeats, opens the source's gate and times until every outcome is in
``novaconsole_results``. Rounds are interleaved (each round runs every worker count and
workload once) and the figures are medians; the scaling ratio is items/s against N times one
worker's, round by round. Database transactions per item come from ``pg_stat_database``
(``pg_stat_statements`` needs a server restart to load): heartbeats and the workers' start and
stop are in them too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from time import perf_counter

import anyio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from benchmarks.b7_handlers import PENDING_INDEX, metadata
from benchmarks.measure import progress
from benchmarks.report import Row
from novaconsole.store import create_engine
from novaconsole.store.schema import ensure_schema

SERVER = os.environ.get("NOVACONSOLE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
"""Where B7 creates (and drops) its database; trust auth on loopback."""
REPO = Path(__file__).resolve().parents[1]
BATCH = 500
CONCURRENCY = 8
POLL = 0.05
WORKLOADS = ("NoOp", "Sleep5", "Drain")
_LABELS = {"NoOp": "no-op items", "Sleep5": "5 ms items", "Drain": "drain, natural query"}
_UNIT = {"NoOp": "items/s", "Sleep5": "items/s", "Drain": "rows/s"}
_ONE_WORKER_TARGET = {"NoOp": 10_000.0, "Drain": 4_000.0}
_SCALES = {"Sleep5", "Drain"}
"""Workloads with a scaling target (at least 0.8 x N up to 4 workers)."""

_CONFIG = """
[processing]
poll_interval = {poll}
max_concurrency = {concurrency}
queue_capacity = {capacity}
lease_duration = 30
shutdown_grace = 5

[database]
url = "{url}"

[[handlers]]
name = "{name}"
factory = "benchmarks.b7_handlers:{name}"
max_items_per_cycle = {batch}
"""


@dataclass(frozen=True, slots=True)
class Run:
    workload: str
    workers: int
    rate: float
    transactions: float
    """Database transactions per item."""
    load: float
    worker_cpu: float
    """CPU seconds the workers spent while timed."""
    database_cpu: float
    """CPU seconds the workers' PostgreSQL backends spent while timed."""
    elapsed: float


def _sync_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def unavailable() -> str | None:
    """Why B7 cannot run here (no driver, no server), or None."""
    try:
        import asyncpg  # type: ignore[import-untyped]
    except ImportError:
        return "asyncpg is not installed (pip install 'novaconsole[postgres]')"
    try:
        connection = await asyncpg.connect(SERVER, timeout=3)
    except (OSError, asyncpg.PostgresError) as error:
        return f"no PostgreSQL server at {SERVER}: {error}"
    await connection.close()
    return None


@asynccontextmanager
async def throwaway_database() -> AsyncIterator[str]:
    """A fresh database on :data:`SERVER` (its SQLAlchemy URL), dropped afterwards."""
    import asyncpg

    admin = await asyncpg.connect(SERVER, timeout=3)
    name = f"novaconsole_b7_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = SERVER.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _prepare(engine: AsyncEngine) -> None:
    await ensure_schema(engine)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        await connection.execute(text(PENDING_INDEX))


async def _reset(engine: AsyncEngine, workload: str, items: int) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "TRUNCATE novaconsole_results, novaconsole_claims, novaconsole_workers, "
                "novaconsole_item_states, b7_gate, b7_work"
            )
        )
        await connection.execute(
            text("INSERT INTO b7_gate (opened, taken, total) VALUES (false, 0, :total)"),
            {"total": items if workload != "Drain" else 0},
        )
        if workload == "Drain":
            await connection.execute(
                text(
                    "INSERT INTO b7_work (id, state, payload) "
                    "SELECT i, 'pending', repeat('x', 100) FROM generate_series(1, :n) AS i"
                ),
                {"n": items},
            )
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(text("VACUUM ANALYZE b7_work"))


_TRANSACTIONS = (
    "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
)
_BACKENDS = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid()"
)


class Watch:
    """The benchmark's one connection (autocommit) while workers run: its polls are counted,
    so that they can be taken off the transactions, and its backend is not the workers'."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection
        self.statements = 0

    async def scalar(self, sql: str) -> int:
        self.statements += 1
        return int(await self.connection.scalar(text(sql)) or 0)

    async def transactions(self) -> int:
        await self.scalar("SELECT pg_stat_clear_snapshot()")
        return await self.scalar(_TRANSACTIONS)

    async def backends(self) -> list[int]:
        self.statements += 1
        return [int(pid) for pid in await self.connection.scalars(text(_BACKENDS))]


def _cpu_seconds(pids: Sequence[int]) -> dict[int, float]:
    """User and system CPU time of each process still there (psutil; none without it)."""
    try:
        import psutil
    except ImportError:
        return {}
    seconds = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        seconds[pid] = times.user + times.system
    return seconds


def _spent(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


def _start(url: str, workload: str, count: int, folder: Path) -> list[subprocess.Popen[bytes]]:
    config = folder / f"{workload}.toml"
    config.write_text(
        _CONFIG.format(
            poll=POLL,
            concurrency=CONCURRENCY,
            capacity=2 * BATCH,
            url=url,
            name=workload,
            batch=BATCH,
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "novaconsole", "--config", str(config), "--no-ui"]
    processes = []
    for number in range(count):
        with (folder / f"w{number}.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [*command, "--log-level", "warning"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=folder,
                    env=env,
                )
            )
    return processes


def _said(folder: Path, count: int) -> str:
    return "\n".join((folder / f"w{n}.log").read_text()[-1500:] for n in range(count))


async def _stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            await anyio.to_thread.run_sync(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            await anyio.to_thread.run_sync(process.wait)


async def _until(
    watch: Watch,
    sql: str,
    at_least: int,
    within: float,
    what: str,
    processes: Sequence[subprocess.Popen[bytes]],
    folder: Path,
) -> None:
    deadline = perf_counter() + within
    while await watch.scalar(sql) < at_least:
        if any(p.poll() is not None for p in processes):
            raise RuntimeError(
                f"a B7 worker exited before {what}:\n{_said(folder, len(processes))}"
            )
        if perf_counter() > deadline:
            raise RuntimeError(
                f"B7: no {what} within {within:g}s:\n{_said(folder, len(processes))}"
            )
        await anyio.sleep(0.05)


async def one_run(
    url: str, engine: AsyncEngine, workload: str, workers: int, items: int, folder: Path
) -> Run:
    """Start ``workers`` workers on ``workload`` (``items`` of them), time them, stop them."""
    await _reset(engine, workload, items)
    processes = _start(url, workload, workers, folder)
    pids = [p.pid for p in processes]
    async with engine.connect() as connection:
        watch = Watch(await connection.execution_options(isolation_level="AUTOCOMMIT"))
        try:
            await _until(
                watch,
                "SELECT count(*) FROM novaconsole_workers",
                workers,
                120,
                "heartbeat from every worker",
                processes,
                folder,
            )
            before = await watch.transactions()
            polls = watch.statements
            workers_cpu = _cpu_seconds(pids)
            database_cpu = _cpu_seconds(await watch.backends())
            await watch.scalar("UPDATE b7_gate SET opened = true RETURNING 1")
            started = perf_counter()
            await _until(
                watch,
                "SELECT count(*) FROM novaconsole_results",
                items,
                60 + items / 20,
                f"{items} outcomes recorded",
                processes,
                folder,
            )
            elapsed = perf_counter() - started
            load = os.getloadavg()[0]
            worker_seconds = _spent(workers_cpu, _cpu_seconds(pids))
            database_seconds = _spent(database_cpu, _cpu_seconds(await watch.backends()))
        finally:
            await _stop(processes)
        after = await watch.transactions()
        own = watch.statements - polls
    return Run(
        workload,
        workers,
        items / elapsed,
        (after - before - own) / items,
        load,
        worker_seconds,
        database_seconds,
        elapsed,
    )


async def run(items: int, counts: Sequence[int], repeat: int, workdir: Path) -> list[Row]:
    """B7's rows: items/s for each workload and worker count (medians of interleaved rounds),
    the scaling ratio against N times one worker, and transactions per item."""
    async with throwaway_database() as url:
        engine = create_engine(url)
        try:
            await _prepare(engine)
            runs: list[Run] = []
            for round_ in range(repeat):
                for count in counts:
                    for workload in WORKLOADS:
                        progress(f"B7 round {round_ + 1}: {workload}, {count} worker(s)")
                        folder = workdir / f"b7-{workload}-{count}"
                        folder.mkdir(exist_ok=True)
                        runs.append(await one_run(url, engine, workload, count, items, folder))
        finally:
            await engine.dispose()
    return rows(runs, counts)


def rows(runs: Sequence[Run], counts: Sequence[int]) -> list[Row]:
    """The table rows of ``runs`` (several rounds of each workload and worker count)."""
    table: list[Row] = []
    for workload in WORKLOADS:
        ones = [r for r in runs if r.workload == workload and r.workers == 1]
        for count in counts:
            mine = [r for r in runs if r.workload == workload and r.workers == count]
            if not mine:
                continue
            rate = median(r.rate for r in mine)
            loads = sorted(r.load for r in mine)
            transactions = median(r.transactions for r in mine)
            worker_us = median(1e6 * r.worker_cpu / (r.rate * r.elapsed) for r in mine)
            database_us = median(1e6 * r.database_cpu / (r.rate * r.elapsed) for r in mine)
            cores = median((r.worker_cpu + r.database_cpu) / r.elapsed for r in mine)
            measure = (
                f"{_LABELS[workload]}, {count} worker{'s' if count > 1 else ''} "
                f"({transactions:.2f} transactions/item; CPU/item {worker_us:.0f} us worker "
                f"+ {database_us:.0f} us PostgreSQL, {cores:.2f} cores busy; "
                f"load {loads[0]:.1f}-{loads[-1]:.1f})"
            )
            unit = _UNIT[workload]
            if count == 1:
                goal = _ONE_WORKER_TARGET.get(workload)
                target = f"≥ {goal:,.0f} {unit}" if goal else ""
                ok = None if goal is None else rate >= goal
                table.append(Row("B7", measure, rate, unit, target=target, ok=ok))
                continue
            ratios = [
                r.rate / (count * one.rate) for r, one in zip(mine, ones, strict=False) if one.rate
            ]
            ratio = median(ratios) if ratios else 0.0
            baseline = count * median(r.rate for r in ones) if ones else None
            scaled = workload in _SCALES and count <= 4
            table.append(
                Row(
                    "B7",
                    measure,
                    rate,
                    unit,
                    baseline=baseline,
                    ratio=ratio,
                    target="≥ 0.8x" if scaled else "",
                    ok=(ratio >= 0.8) if scaled else None,
                )
            )
    return table
