"""Helpers of the ``test_write_*`` fault tests: a SQLite file (or a PostgreSQL database) with a
``source`` table and the worker process (:mod:`tests.faults.write_worker`) that drains it
through ``ctx.write()``."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

WORKER = Path(__file__).with_name("write_worker.py")
REPO = Path(__file__).resolve().parents[2]
WITHIN = 120.0
"""Upper bound for any one wait (a loaded 2-core machine); never a timing assertion."""


def make_source(db: Path, rows: int) -> None:
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(
            "CREATE TABLE source (id INTEGER PRIMARY KEY, done INTEGER NOT NULL DEFAULT 0)"
        )
        connection.executemany("INSERT INTO source (id) VALUES (?)", [(i,) for i in range(rows)])
    connection.close()


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(db, timeout=60)
    try:
        return connection.execute(sql).fetchall()
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return []
        raise
    finally:
        connection.close()


def done(db: Path) -> set[int]:
    return {int(row[0]) for row in query(db, "SELECT id FROM source WHERE done = 1")}  # type: ignore[call-overload]


def results(db: Path) -> Counter[tuple[int, str]]:
    """How many result rows each (item id, status) has."""
    rows = query(db, "SELECT item_id, status FROM novaconsole_results")
    return Counter((int(str(item_id)), str(status)) for item_id, status in rows)


def executions(db: Path) -> Counter[int]:
    log = Path(f"{db}.log")
    if not log.exists():
        return Counter()
    return Counter(int(line) for line in log.read_text().split())


def make_pg_source(url: str, rows: int) -> None:
    """The ``source`` table in the PostgreSQL database of ``url``."""
    pg_query(url, "CREATE TABLE source (id INTEGER PRIMARY KEY, done INTEGER NOT NULL DEFAULT 0)")
    pg_query(url, f"INSERT INTO source (id) SELECT i FROM generate_series(0, {rows - 1}) AS i")


def pg_query(url: str, sql: str) -> list[tuple[object, ...]]:
    """The rows of ``sql`` on ``url``'s database, from a connection of its own."""

    async def fetch() -> list[tuple[object, ...]]:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return [tuple(row) for row in await connection.fetch(sql)]
        finally:
            await connection.close()

    return asyncio.run(fetch())


class Worker:
    """One run of the worker process (on ``url``'s PostgreSQL database if given)."""

    def __init__(self, db: Path, mode: str = "", url: str = "") -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOVACONSOLE_")}
        env |= {"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        self.stderr = db.with_suffix(f".err{time.monotonic_ns()}")
        with self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(WORKER), str(db), mode, url],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
            )
        self.lines: list[str] = []

    def wait_for(self, line: str, within: float = WITHIN) -> bool:
        """Read its output until ``line`` (True) or until it exits (False)."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + within
        while line not in self.lines:
            ready, _, _ = select.select([self.process.stdout], [], [], deadline - time.monotonic())
            if not ready:
                self.kill()
                raise AssertionError(f"no {line!r} within {within:g}s:\n{self.errors()}")
            got = self.process.stdout.readline()
            if not got:
                self.process.wait(30)
                return False
            self.lines.append(got.strip())
        return True

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.stdout is not None
        self.lines.extend(line.strip() for line in self.process.stdout.read().splitlines())
        return self.process.wait(60)

    def errors(self) -> str:
        return self.stderr.read_text()[-4000:]


def wait_until(check: Callable[[], bool], what: str, worker: Worker) -> None:
    """Wait for a condition on the database (looked at every 10 ms) while the worker runs."""
    deadline = time.monotonic() + WITHIN
    while not check():
        if worker.process.poll() is not None:
            raise AssertionError(f"the worker exited before {what}:\n{worker.errors()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WITHIN:g}s: {what}")
        time.sleep(0.01)
