"""Fixtures for fleet tests: a throwaway PostgreSQL database (or SQLite file) shared by real
worker processes (``worker.py``), and helpers that wait on what the database shows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from novaconsole.store.database import create_engine
from novaconsole.store.schema import ensure_schema
from tests.postgres import throwaway_database

WORKER = Path(__file__).with_name("worker.py")
REPO = Path(__file__).resolve().parents[2]
SCHEMA = (
    "CREATE TABLE fleet_items (id INTEGER PRIMARY KEY, "
    "duration FLOAT NOT NULL DEFAULT 0, done BOOLEAN NOT NULL DEFAULT false)",
    "CREATE TABLE fleet_runs "
    "(item_id INTEGER NOT NULL, worker TEXT NOT NULL, started FLOAT NOT NULL, finished FLOAT)",
)

T = TypeVar("T")


@dataclass
class Worker:
    """One worker process; ``worker_id`` as it reports itself (``host:pid``)."""

    process: subprocess.Popen[bytes]
    out: Path
    err: Path
    worker_id: str = ""

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def signal(self, number: int) -> None:
        self.process.send_signal(number)


@dataclass
class Fleet:
    """The database under test and the workers started on it."""

    url: str
    engine: AsyncEngine
    folder: Path
    workers: list[Worker] = field(default_factory=list)

    async def setup(self, items: int = 0, duration: float = 0.0) -> None:
        await ensure_schema(self.engine)
        async with self.engine.begin() as connection:
            for statement in SCHEMA:
                await connection.execute(text(statement))
        if items:
            await self.add_items(range(1, items + 1), duration)

    async def add_items(self, ids: range | list[int], duration: float = 0.0) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO fleet_items (id, duration) VALUES (:id, :duration)"),
                [{"id": item_id, "duration": duration} for item_id in ids],
            )

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.engine.connect() as connection:
            return await connection.scalar(text(sql), params)

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.engine.connect() as connection:
            return list(await connection.execute(text(sql), params))

    def start(self, count: int, *options: str) -> list[Worker]:
        """Start ``count`` workers (not waiting for them: see :meth:`ready`)."""
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        started = []
        for _ in range(count):
            number = len(self.workers)
            out, err = self.folder / f"w{number}.out", self.folder / f"w{number}.err"
            with out.open("wb") as stdout, err.open("wb") as stderr:
                process = subprocess.Popen(
                    [sys.executable, str(WORKER), self.url, *options],
                    stdout=stdout,
                    stderr=stderr,
                    cwd=self.folder,
                    env=env,
                )
            worker = Worker(process, out, err)
            self.workers.append(worker)
            started.append(worker)
        return started

    async def ready(self, workers: list[Worker], within: float = 20) -> None:
        """Wait until each worker printed ``ready WORKER_ID``."""
        for worker in workers:

            async def said_ready(worker: Worker = worker) -> str:
                for line in worker.out.read_text().splitlines():
                    if line.startswith("ready "):
                        return line.split(" ", 1)[1]
                return ""

            worker.worker_id = await self.until(said_ready, within, "a worker to start")

    async def until(self, check: Callable[[], Awaitable[T]], within: float, what: str) -> T:
        """Poll ``check`` until it returns something true; fail (with the workers' output)
        after ``within`` seconds, or as soon as a worker dies unexpectedly."""
        deadline = anyio.current_time() + within
        while True:
            value = await check()
            if value:
                return value
            for worker in self.workers:
                code = worker.process.poll()
                if code not in (None, -signal.SIGKILL):
                    pytest.fail(
                        f"a worker exited ({code}) while waiting for {what}:\n"
                        + worker.output()[-3000:]
                    )
            if anyio.current_time() > deadline:
                tails = "\n---\n".join(w.output()[-1500:] for w in self.workers)
                pytest.fail(f"no {what} within {within}s; workers said:\n{tails}")
            await anyio.sleep(0.05)

    async def stop(self) -> None:
        """Stop every worker still running: SIGTERM (drain), then SIGKILL if it lingers."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.signal(signal.SIGCONT)
                worker.signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                await anyio.to_thread.run_sync(worker.process.wait, 10)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                await anyio.to_thread.run_sync(worker.process.wait)


def _kill_all(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


@pytest.fixture
async def pg_fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    """A fresh PostgreSQL database on 127.0.0.1:5432 (dropped afterwards)."""
    async with throwaway_database("novaconsole_fleet") as url:
        engine = create_engine(url)
        fleet = Fleet(url, engine, tmp_path)
        try:
            yield fleet
        finally:
            _kill_all(fleet.workers)
            await engine.dispose()


@pytest.fixture
async def sqlite_fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    """A SQLite file in ``tmp_path`` shared by the workers."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'fleet.db'}"
    engine = create_engine(url)
    fleet = Fleet(url, engine, tmp_path)
    try:
        yield fleet
    finally:
        _kill_all(fleet.workers)
        await engine.dispose()
