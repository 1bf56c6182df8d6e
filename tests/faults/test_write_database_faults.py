"""A database fault is not the item's fault (issue 11 point 4): when the writer's commit fails
because the disk is full or the database is down, the items' writes and outcomes are held and
retried with backoff, no attempt is charged, one line is logged per try, and processing
resumes by itself once the database is back. An unreachable database at start is retried up
to ``[database] connect_timeout``, then ends in one clear line and exit status 2.

Real databases: SQLite on a tiny tmpfs that fills (skipped where mounting is not allowed), and
a private PostgreSQL cluster (tests/pgcluster.py) stopped mid-run and started again.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from sqlalchemy import text

from novaconsole import BackgroundProcessing, HandlerContext, RetryPolicy
from novaconsole.engine.events import BreakerClosed
from novaconsole.errors import ConfigError
from novaconsole.store import open_store
from tests.pgcluster import private_cluster

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

WITHIN = 120.0
SELECT = text("SELECT id FROM source WHERE done = 0 ORDER BY id LIMIT :n")
UPDATE = text("UPDATE source SET done = 1 WHERE id = :id")
WRITE_FAILED = "cannot write to database"
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Item:
    id: int


class Gate:
    """Items from ``start`` on wait at the gate until the test has broken the database: their
    writes then reach the writer while it cannot write."""

    start = 10**9
    opened: anyio.Event | None = None


class Drain:
    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx

    async def fetch_next(self, max_items: int) -> list[Item]:
        async with self.ctx.session() as session:
            return [Item(i) for (i,) in await session.execute(SELECT, {"n": max_items})]

    async def process(self, item: Item) -> None:
        if item.id >= Gate.start and Gate.opened is not None:
            await Gate.opened.wait()
        await anyio.sleep(0.002)
        self.ctx.write(UPDATE, {"id": item.id})


class Captured(logging.Handler):
    """Every record of the ``novaconsole`` loggers."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, containing: str) -> list[str]:
        return [r.getMessage() for r in self.records if containing in r.getMessage()]


@contextmanager
def captured() -> Iterator[Captured]:
    handler = Captured()
    logger = logging.getLogger("novaconsole")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def until(check: Callable[[], object], what: str) -> None:
    """Wait for a condition (looked at every 20 ms), failing after ``WITHIN`` seconds."""
    with anyio.move_on_after(WITHIN):
        while True:  # a condition, not an event, is awaited
            if check():
                return
            await anyio.sleep(0.02)
    raise AssertionError(f"not within {WITHIN:g}s: {what}")


def service_on(url: str) -> object:
    return (
        BackgroundProcessing(
            poll_interval=0.05,
            max_concurrency=8,
            retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01),
        )
        .add_handler(Drain, name="Drain", max_items_per_cycle=100)
        .build(database_url=url)
    )


def held(log: Captured) -> bool:
    """A write failure was logged while items' writes waited."""
    return any(" 0 outcomes waiting" not in line for line in log.messages(WRITE_FAILED))


def assert_nothing_charged(rows: list[tuple[object, ...]], items: int, log: Captured) -> None:
    """(item id, status, attempts) of every result: each item once, succeeded at first try."""
    assert len(rows) == items, f"{len(rows)} results for {items} items"
    assert {int(str(r[0])) for r in rows} == set(range(items))
    assert {(str(r[1]), int(str(r[2]))) for r in rows} == {("succeeded", 1)}, "an item was charged"
    writer = [r for r in log.records if r.name == "novaconsole.store"]
    assert not [r for r in writer if r.exc_info], "the writer logged a traceback"
    failed = log.messages(WRITE_FAILED)
    assert 1 <= len(failed) <= 8, failed  # one line per backoff step
    assert any(" 0 outcomes waiting" not in line for line in failed), "nothing was held"
    assert not log.messages("retrying in 0.0"), "a charged retry"


# ---------------------------------------------------------------- SQLite, disk full


@contextmanager
def tiny_tmpfs(size: str) -> Iterator[Path]:
    mountpoint = Path(tempfile.mkdtemp(prefix="novaconsole-full-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        mountpoint.rmdir()
        pytest.skip(f"cannot mount a tmpfs to fill up here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        with suppress(OSError):
            mountpoint.rmdir()


def fill_up(ballast: Path) -> None:
    """Write zeros to ``ballast`` until the file system is full."""
    descriptor = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (65536, 4096, 512, 1):
            with suppress(OSError):
                while True:
                    os.write(descriptor, b"\0" * size)
    finally:
        os.close(descriptor)


async def test_a_full_disk_holds_the_writes_charges_nothing_and_resumes() -> None:
    items = 1500
    with tiny_tmpfs("16m") as root, captured() as log:
        db = root / "drain.db"
        with sqlite3.connect(db) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("CREATE TABLE source (id INTEGER PRIMARY KEY, done INTEGER)")
            connection.executemany("INSERT INTO source VALUES (?, 0)", [(i,) for i in range(items)])
        connection.close()

        def done() -> int:
            reader = sqlite3.connect(db, timeout=30)
            try:
                return int(
                    reader.execute("SELECT count(*) FROM source WHERE done = 1").fetchone()[0]
                )
            finally:
                reader.close()

        Gate.start, Gate.opened = items // 5, anyio.Event()
        service = service_on(f"sqlite+aiosqlite:///{db}")
        async with service.running():  # type: ignore[attr-defined]
            await until(lambda: done() == Gate.start, "the items before the gate done")
            fill_up(root / "ballast")
            Gate.opened.set()
            await until(lambda: held(log), "a write failure holding the items' writes")
            stuck = done()
            (root / "ballast").unlink()  # the disk is grown back
            await until(lambda: done() == items, "every item done after the disk has room")
        # Once stopped: an item's row commits a moment before the writer tells the engine.
        snapshot = service.snapshot()  # type: ignore[attr-defined]
        assert stuck < items, "the disk filled after the drain: nothing was tested"
        assert (snapshot.failed, snapshot.succeeded) == (0, items)
        reader = sqlite3.connect(db)
        rows = reader.execute(
            "SELECT item_id, status, attempts FROM novaconsole_results"
        ).fetchall()
        states = reader.execute("SELECT count(*) FROM novaconsole_item_states").fetchone()[0]
        reader.close()
    assert states == 0, "an attempt was remembered against an item"
    assert_nothing_charged(rows, items, log)
    assert any("full" in m or "disk" in m for m in log.messages(WRITE_FAILED)), log.messages(
        WRITE_FAILED
    )


# ---------------------------------------------------------------- PostgreSQL, stopped


async def test_postgres_stopped_mid_run_holds_the_writes_charges_nothing_and_resumes() -> None:
    import asyncpg  # type: ignore[import-untyped]

    items = 3000
    with private_cluster() as cluster, captured() as log:
        dsn = cluster.url.replace("+asyncpg", "")
        admin = await asyncpg.connect(dsn)
        await admin.execute("CREATE TABLE source (id INTEGER PRIMARY KEY, done INTEGER)")
        await admin.execute(
            "INSERT INTO source SELECT i, 0 FROM generate_series(0, $1) i", items - 1
        )
        await admin.close()
        counted = [0]

        async def count_done() -> None:
            with suppress(OSError, asyncpg.PostgresError):
                conn = await asyncpg.connect(dsn, timeout=5)
                try:
                    counted[0] = await conn.fetchval("SELECT count(*) FROM source WHERE done = 1")
                finally:
                    await conn.close()

        async def done_at_least(target: int) -> None:
            with anyio.fail_after(WITHIN):
                while counted[0] < target:
                    await count_done()
                    await anyio.sleep(0.05)

        Gate.start, Gate.opened = items // 5, anyio.Event()
        service = service_on(cluster.url)
        async with service.running():  # type: ignore[attr-defined]
            await done_at_least(Gate.start)
            await anyio.to_thread.run_sync(cluster.stop)
            Gate.opened.set()
            await until(lambda: held(log), "a write failure holding the items' writes")
            await anyio.to_thread.run_sync(cluster.start)
            stuck = counted[0]
            await done_at_least(items)
        # Once stopped: an item's row commits a moment before the writer tells the engine.
        snapshot = service.snapshot()  # type: ignore[attr-defined]
        assert stuck < items
        assert (snapshot.failed, snapshot.succeeded) == (0, items)
        conn = await asyncpg.connect(dsn)
        rows = [
            tuple(r)
            for r in await conn.fetch("SELECT item_id, status, attempts FROM novaconsole_results")
        ]
        states = await conn.fetchval("SELECT count(*) FROM novaconsole_item_states")
        await conn.close()
    assert states == 0, "an attempt was remembered against an item"
    assert_nothing_charged(rows, items, log)
    # Fetches, clock reads and heartbeats failed every poll meanwhile: no storm of lines.
    errors = [r for r in log.records if r.levelno >= logging.ERROR]
    assert len(errors) <= 30, [r.getMessage()[:80] for r in errors]
    assert len([r for r in errors if r.exc_info]) <= 4, "a traceback per failed try"


async def test_a_handler_its_fetches_tripped_during_an_outage_is_tried_once_it_is_over() -> None:
    """The database stops: the handler's fetches fail and trip its breaker (cool-down 10
    minutes). Once the database answers again, the trial runs at once: the breaker closes and
    the drain goes on, minutes before the cool-down's end."""
    import asyncpg

    with private_cluster() as cluster, captured() as log:
        dsn = cluster.url.replace("+asyncpg", "")
        admin = await asyncpg.connect(dsn)
        await admin.execute("CREATE TABLE source (id INTEGER PRIMARY KEY, done INTEGER)")
        await admin.execute("INSERT INTO source SELECT i, 0 FROM generate_series(0, 99) i")
        await admin.close()
        Gate.start, Gate.opened = 10**9, None
        service = (
            BackgroundProcessing(poll_interval=0.05, breaker_threshold=2, breaker_cooldown=600)
            .add_handler(Drain, name="Drain", max_items_per_cycle=10)
            .build(database_url=cluster.url)
        )
        events = service.events()
        async with service.running():
            await anyio.to_thread.run_sync(cluster.stop)
            await until(lambda: service.snapshot().handlers["Drain"].tripped, "a trip")
            await anyio.to_thread.run_sync(cluster.start)
            with anyio.fail_after(WITHIN):
                async for event in events:
                    if isinstance(event, BreakerClosed):
                        break
            await until(lambda: service.snapshot().succeeded == 100, "the rest of the drain")
    assert log.messages("Drain tripped (breaker: 2 failures in a row: ")


# ---------------------------------------------------------------- unreachable at start


async def test_a_database_down_at_start_is_waited_for() -> None:
    with private_cluster() as cluster, captured() as log:
        cluster.stop()
        store = open_store(cluster.url, connect_timeout=WITHIN)
        async with anyio.create_task_group() as group:
            group.start_soon(store.open)
            await until(lambda: log.messages("cannot open database"), "a failed try")
            await anyio.to_thread.run_sync(cluster.start)
        await store.close()
    tries = log.messages("cannot open database")
    assert tries and all("retrying in" in line for line in tries)


async def test_a_database_down_at_start_gives_up_after_connect_timeout() -> None:
    with captured() as log:
        store = open_store("postgresql+asyncpg://u:secret@127.0.0.1:9/none", connect_timeout=1.5)
        with pytest.raises(ConfigError) as caught:
            await store.open()
        await store.engine.dispose()
    assert "still failing after 1.5s: [database] connect_timeout" in str(caught.value)
    assert "secret" not in str(caught.value)
    assert 1 <= len(log.messages("cannot open database")) <= 3


def test_the_command_gives_up_in_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOVACONSOLE_")}
    env |= {"PYTHONPATH": f"{tmp_path}:{REPO}", "NOVACONSOLE_DATABASE__CONNECT_TIMEOUT": "1.5"}
    (tmp_path / "toy.py").write_text(
        "class Toy:\n    def __init__(self, ctx): pass\n"
        "    async def fetch_next(self, n): return []\n"
        "    async def process(self, item): pass\n"
    )
    (tmp_path / "config.toml").write_text('[[handlers]]\nname = "Toy"\nfactory = "toy:Toy"\n')
    done = subprocess.run(
        [sys.executable, "-m", "novaconsole", "--no-ui", "--once", "--db",
         "postgresql+asyncpg://u:secret@127.0.0.1:9/none"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=WITHIN,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("novaconsole: database.url: cannot open database"), lines
    assert "[database] connect_timeout" in lines[-1]
    assert "Traceback" not in done.stderr and "secret" not in done.stderr
    assert len(lines) <= 4, lines


class Fresh:
    """A source outside the database: its fetch succeeds whether the database is up or not."""

    fetches = 0
    taken = 0

    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx

    async def fetch_next(self, max_items: int) -> list[Item]:
        Fresh.fetches += 1
        start, Fresh.taken = Fresh.taken, Fresh.taken + max_items
        return [Item(i) for i in range(start, start + max_items)]

    async def process(self, item: Item) -> None:
        pass


@pytest.mark.postgres
async def test_admission_failing_every_poll_logs_one_traceback_per_streak() -> None:
    # The fetch succeeds and its claims cannot be written: neither the fetch's failure nor the
    # claim's may log a traceback on every poll (each had ended its own streak, or had none).
    with private_cluster() as cluster, captured() as log:
        service = (
            BackgroundProcessing(poll_interval=0.02, max_concurrency=2)
            .add_handler(Fresh, name="Fresh", max_items_per_cycle=5)
            .build(database_url=cluster.url)
        )
        async with service.running():
            await until(lambda: Fresh.taken >= 50, "items fetched while the database is up")
            await anyio.to_thread.run_sync(cluster.stop)
            stopped_at = Fresh.fetches
            await until(lambda: Fresh.fetches >= stopped_at + 20, "20 fetches with it down")
            await anyio.to_thread.run_sync(cluster.start)
    tracebacks = [r.getMessage()[:100] for r in log.records if r.exc_info]
    fetch_or_claim = [m for m in tracebacks if "fetch from Fresh" in m or "claiming" in m]
    assert len(fetch_or_claim) <= 2, fetch_or_claim
