"""Helpers of the ``test_process_*`` fault tests: waiting on a condition, and a user's project
(``config.toml`` beside a ``handlers`` package) run by the real ``novaconsole`` command."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

WITHIN = 60.0
"""Upper bound for any one wait: a loaded 2-core machine, never a timing assertion."""


async def until(check: Callable[[], object], what: str, within: float = WITHIN) -> None:
    """Wait until ``check()`` is true (looking every 10 ms); fail naming ``what`` otherwise."""
    with anyio.move_on_after(within):
        while True:  # a condition, not an event, is awaited
            if check():
                return
            await anyio.sleep(0.01)
    raise AssertionError(f"not within {within:g}s: {what}")


LEDGER = '''
"""The fault suite's handler: its items are the rows of ``source`` not yet done, in the
store's own database; every call of ``process`` appends "PID ID" to an execution log."""

import os
import time
from dataclasses import dataclass

import anyio
import pytest
from pydantic import BaseModel
from sqlalchemy import text


@dataclass(frozen=True)
class Item:
    id: int


class LedgerOptions(BaseModel):
    log: str
    hang: bool = False
    delay: float = 0.0
    block_until: str = ""


class Ledger:
    Options = LedgerOptions

    def __init__(self, ctx):
        self.ctx = ctx
        self.options = ctx.options

    async def fetch_next(self, max_items):
        query = text("SELECT id FROM source WHERE done = 0 ORDER BY id LIMIT :n")
        async with self.ctx.session() as session:
            return [Item(row.id) for row in await session.execute(query, {"n": max_items})]

    async def process(self, item):
        line = f"{os.getpid()} {item.id}\\n".encode()
        descriptor = os.open(self.options.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(descriptor, line)  # one write of one line: whole even under kill -9
        finally:
            os.close(descriptor)
        if self.options.hang:
            await anyio.sleep_forever()
        deadline = time.monotonic() + 60
        while self.options.block_until and not os.path.exists(self.options.block_until):
            time.sleep(0.01)  # the mistake: blocking the event loop
            if time.monotonic() > deadline:
                break
        if self.options.delay:
            await anyio.sleep(self.options.delay)
        self.ctx.write("UPDATE source SET done = 1 WHERE id = :id", {"id": item.id})
'''

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    """One ``novaconsole --no-ui`` process, its output in files."""

    process: subprocess.Popen[bytes]
    err: Path
    out: Path

    def messages(self) -> list[str]:
        """The log messages so far (JSON log lines on stderr)."""
        found = []
        for line in self.err.read_text().splitlines():
            try:
                found.append(json.loads(line)["message"])
            except (ValueError, KeyError, TypeError):
                continue
        return found

    def said(self, text: str) -> bool:
        return any(text in message for message in self.messages())

    def output(self) -> str:
        return f"stdout:\n{self.out.read_text()}\nstderr:\n{self.err.read_text()[-4000:]}"


@dataclass
class LedgerProject:
    """A user's project: ``config.toml``, ``handlers/ledger.py`` and a SQLite file holding
    both the store and the ``source`` table of ``items`` rows."""

    root: Path
    runs: list[Run] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.root / "ledger.db"

    @property
    def log(self) -> Path:
        return self.root / "executions.log"

    def setup(self, items: int, *, processing: str = "", options: str = "") -> None:
        package = self.root / "handlers"
        package.mkdir(exist_ok=True)
        (package / "__init__.py").write_text("")
        (package / "ledger.py").write_text(LEDGER)
        with sqlite3.connect(self.db) as connection:
            connection.execute(
                "CREATE TABLE source (id INTEGER PRIMARY KEY, done INTEGER NOT NULL DEFAULT 0)"
            )
            connection.executemany(
                "INSERT INTO source (id) VALUES (?)", [(i,) for i in range(1, items + 1)]
            )
        self.config(processing=processing, options=options)

    def config(self, *, processing: str = "", options: str = "") -> None:
        (self.root / "config.toml").write_text(
            f'[processing]\npoll_interval = "0.05"\n{processing}\n\n'
            f'[database]\nurl = "sqlite+aiosqlite:///{self.db}"\n\n'
            '[[handlers]]\nname = "Ledger"\nfactory = "handlers.ledger:Ledger"\n'
            "max_items_per_cycle = 100\n"
            f'[handlers.options]\nlog = "{self.log}"\n{options}\n'
        )

    def start(self, *args: str) -> Run:
        """``novaconsole --no-ui`` in the project (JSON logs), not waiting for it."""
        number = len(self.runs)
        out, err = self.root / f"run{number}.out", self.root / f"run{number}.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOVACONSOLE_")}
        env |= {"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "novaconsole", "--no-ui", "--log-format", "json", *args],
                cwd=self.root,
                env=env,
                stdout=stdout,
                stderr=stderr,
            )
        run = Run(process, err, out)
        self.runs.append(run)
        return run

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db, timeout=60) as connection:
            return connection.execute(sql, params).fetchall()

    def done(self) -> set[int]:
        return {row[0] for row in self.query("SELECT id FROM source WHERE done = 1")}

    def executions(self) -> Counter[int]:
        """How often ``process`` was called for each item (all runs)."""
        if not self.log.exists():
            return Counter()
        return Counter(int(line.split()[1]) for line in self.log.read_text().splitlines())

    def results(self, status: str | None = None) -> list[tuple[str, str]]:
        """(item id, status) of every result row."""
        rows = self.query("SELECT item_id, status FROM novaconsole_results")
        return [(item_id, found) for item_id, found in rows if status in (None, found)]

    def kill_all(self) -> None:
        for run in self.runs:
            if run.process.poll() is None:
                run.process.kill()
            run.process.wait(30)


async def exited(run: Run, within: float = WITHIN) -> int:
    """The process's exit status, once it has exited (failing after ``within`` seconds)."""
    await until(lambda: run.process.poll() is not None, f"the process to exit\n{run.output()}")
    return int(run.process.returncode)


async def running(run: Run, what: str, check: Callable[[], object]) -> None:
    """Wait for ``check()`` while ``run`` is alive: fail at once if it died."""

    def alive_and_checked() -> object:
        if run.process.poll() is not None:
            raise AssertionError(f"it exited ({run.process.returncode}):\n{run.output()}")
        return check()

    await until(alive_and_checked, what)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[LedgerProject]:
    """A :class:`LedgerProject` in ``tmp_path``; no process of it outlives the test."""
    project = LedgerProject(tmp_path)
    try:
        yield project
    finally:
        project.kill_all()
