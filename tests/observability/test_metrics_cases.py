"""The metrics of what goes wrong, forced for real and scraped over HTTP while items run: a
tripped circuit breaker, a writer held back by a database locked from outside (the
outcome-write lag grows), and a lease lost on PostgreSQL by a worker stopped past it."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

import anyio
import pytest

pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")

from sqlalchemy import text

from novaconsole import RetryPolicy
from novaconsole.engine.events import BreakerClosed, BreakerTripped
from novaconsole.observability.metrics import serving_metrics
from novaconsole.store.database import create_engine
from novaconsole.store.schema import ensure_schema
from tests.engine.support import Item, next_event, processing
from tests.observability.support import Samples, counted, scrape, value
from tests.postgres import throwaway_database

pytestmark = pytest.mark.anyio

WITHIN = 90.0
"""Upper bound of any one wait (a loaded 2-core machine): never a timing assertion."""


async def scraped_until(port: int, check: Callable[[Samples], bool], what: str) -> Samples:
    """Scrape until ``check`` holds for what ``/metrics`` shows; fail naming ``what``."""
    samples: Samples = {}
    with anyio.move_on_after(WITHIN):
        while True:  # a condition of another process's state: looked at again and again
            samples = await scrape(port)
            if check(samples):
                return samples
            await anyio.sleep(0.1)
    shown = {k: v for k, v in samples.items() if k[0].startswith("novaconsole_")}
    raise AssertionError(f"/metrics never showed {what} within {WITHIN:g}s: {shown}")


# --------------------------------------------------------------------------- a tripped breaker


@dataclass
class Feed:
    """New items on every fetch of handler A, each failing while ``failing``; B has none."""

    failing: bool = True
    ids: count[int] = field(default_factory=count)

    def handlers(self) -> tuple[type, type]:
        feed = self

        class Failing:
            async def fetch_next(self, max_items: int) -> Sequence[Item]:
                return [Item(next(feed.ids)) for _ in range(max_items)]

            async def process(self, item: Item) -> None:
                if feed.failing:
                    raise RuntimeError(f"boom on {item.id}")

        class Idle:
            async def fetch_next(self, max_items: int) -> Sequence[Item]:
                return []

            async def process(self, item: Item) -> None:
                pass

        return Failing, Idle


async def test_a_tripped_breaker_shows_until_it_is_reset(tmp_path: Path) -> None:
    # Items succeed until the first scrape is taken: beside two busy loops the breaker
    # tripped (three failures at a 50 ms poll) before the scrape came back.
    feed = Feed(failing=False)
    failing, idle = feed.handlers()
    service = (
        processing(
            poll_interval=0.05,
            max_concurrency=1,
            retry=RetryPolicy(max_attempts=1),
            breaker_cooldown=3600,
            breaker_max_cooldown=3600,
        )
        .add_handler(failing, name="A", breaker_threshold=3, max_items_per_cycle=2)
        .add_handler(idle, name="B")
        .build(database_url=f"sqlite+aiosqlite:///{tmp_path / 'breaker.db'}")
    )
    events = service.events()
    async with serving_metrics(service, host="127.0.0.1", port=0) as port, service.running():
        before = await scrape(port)
        assert value(before, "novaconsole_handler_tripped", handler="A") == 0
        feed.failing = True
        await next_event(events, lambda e: isinstance(e, BreakerTripped), within=WITHIN)
        tripped = await scrape(port)
        assert value(tripped, "novaconsole_handler_tripped", handler="A") == 1
        assert value(tripped, "novaconsole_handler_tripped", handler="B") == 0
        assert value(tripped, "novaconsole_items_total", handler="A", status="failed") >= 3
        feed.failing = False
        assert service.reset_breaker("A", by="test")
        await next_event(events, lambda e: isinstance(e, BreakerClosed), within=WITHIN)
        closed = await scrape(port)
        assert value(closed, "novaconsole_handler_tripped", handler="A") == 0


# --------------------------------------------------------------------------- a slow writer


@contextmanager
def locked_from_outside(database: Path) -> Iterator[None]:
    """Another program holds the SQLite file's write lock (``BEGIN IMMEDIATE``) meanwhile."""
    connection = sqlite3.connect(database, isolation_level=None, timeout=WITHIN)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield
        connection.execute("ROLLBACK")
    finally:
        connection.close()


@pytest.mark.slow  # it holds the database locked for seconds, by design
async def test_a_locked_database_makes_the_outcome_write_lag_grow(tmp_path: Path) -> None:
    database = tmp_path / "locked.db"
    batch: list[int] = []

    class Batches:
        async def fetch_next(self, max_items: int) -> Sequence[Item]:
            taken, batch[:] = list(batch), []
            return [Item(i) for i in taken]

        async def process(self, item: Item) -> None:
            pass

    service = (
        processing(max_concurrency=4)
        .add_handler(Batches, name="Toy", max_items_per_cycle=50)
        .build(database_url=f"sqlite+aiosqlite:///{database}")
    )
    lag = "novaconsole_outcome_write_lag_seconds"
    async with (
        serving_metrics(service, host="127.0.0.1", port=0) as port,
        service.running(poll=False),
    ):
        batch.extend(range(5))
        await service.run_once()
        settled = await scraped_until(
            port, lambda s: value(s, "novaconsole_outcomes_buffered") == 0, "5 written"
        )
        assert value(settled, lag) == 0
        with locked_from_outside(database):
            batch.extend(range(5, 12))
            await service.run_once()  # 7 more items done, their outcomes not committed
            first = await scraped_until(port, lambda s: value(s, lag) > 0, "a write lag")
            assert value(first, "novaconsole_outcomes_buffered") == 7
            assert value(first, "novaconsole_items_total", handler="Toy", status="succeeded") == 12
            later = await scraped_until(
                port,
                lambda s: value(s, lag) > value(first, lag),
                f"the lag growing past {value(first, lag)}s while the database stays locked",
            )
            assert value(later, "novaconsole_outcomes_buffered") == 7
        caught_up = await scraped_until(
            port,
            lambda s: value(s, "novaconsole_outcomes_buffered") == 0,
            "the outcomes written once the lock is gone",
        )
        assert value(caught_up, lag) == 0
    with sqlite3.connect(database) as check:
        assert check.execute("SELECT count(*) FROM novaconsole_results").fetchone() == (12,)


# --------------------------------------------------------------------------- a lease lost

HELD_HANDLER = """
import os
from dataclasses import dataclass

import anyio
from sqlalchemy import text


@dataclass(frozen=True)
class Item:
    id: int


class Held:
    \"\"\"The pending rows of lease_items; each waits in process() until the gate file exists.\"\"\"

    def __init__(self, ctx):
        self.ctx = ctx

    async def fetch_next(self, max_items):
        query = text("SELECT id FROM lease_items WHERE NOT done ORDER BY id LIMIT :n")
        async with self.ctx.session() as session:
            return [Item(row.id) for row in await session.execute(query, {"n": max_items})]

    async def process(self, item):
        while not os.path.exists(GATE):
            await anyio.sleep(0.05)
        self.ctx.write("UPDATE lease_items SET done = true WHERE id = :i", {"i": item.id})
"""

LEASE_ITEMS = 2


@dataclass
class PgWorker:
    """``novaconsole --no-ui`` in a project folder, with its metrics on a port of its own."""

    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    def said(self) -> str:
        return self.log.read_text(errors="replace")


def start_worker(folder: Path, name: str) -> PgWorker:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOVACONSOLE_")}
    log = folder / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "novaconsole", "--no-ui"],
            cwd=folder,
            env=env | {"PYTHONUNBUFFERED": "1"},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return PgWorker(process, log)


async def until(check: Callable[[], Awaitable[object]], what: str, workers: list[PgWorker]) -> None:
    """Wait for ``check`` (another process's doing); fail with the workers' logs otherwise."""
    with anyio.move_on_after(WITHIN):
        while True:
            if await check():
                return
            for worker in workers:
                if worker.process.poll() is not None:
                    tail = worker.said()[-3000:]
                    raise AssertionError(f"a worker exited while waiting for {what}:\n{tail}")
            await anyio.sleep(0.1)
    logs = "\n---\n".join(w.said()[-2000:] for w in workers)
    raise AssertionError(f"no {what} within {WITHIN:g}s; the workers said:\n{logs}")


@pytest.mark.slow
@pytest.mark.postgres
async def test_a_worker_stopped_past_its_lease_counts_the_leases_it_lost(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    (tmp_path / "lease_handlers.py").write_text(f"GATE = {str(gate)!r}\n" + HELD_HANDLER)
    workers: list[PgWorker] = []
    async with throwaway_database("novaconsole_metrics") as url:
        engine = create_engine(url)
        try:
            await ensure_schema(engine)
            async with engine.begin() as connection:
                await connection.execute(text(
                    "CREATE TABLE lease_items (id INTEGER PRIMARY KEY, done BOOLEAN NOT NULL)"
                ))  # fmt: skip
                await connection.execute(
                    text("INSERT INTO lease_items VALUES (:id, false)"),
                    [{"id": i} for i in range(1, LEASE_ITEMS + 1)],
                )
                # A worker stopped inside a transaction would hold its claims' row locks for
                # as long as it is stopped; the server ends such a session instead.
                name = url.rsplit("/", 1)[1]
                await connection.execute(text(
                    f'ALTER DATABASE "{name}" SET idle_in_transaction_session_timeout = 2000'
                ))  # fmt: skip
            (tmp_path / "config.toml").write_text(textwrap.dedent(f"""
                [processing]
                poll_interval = 0.05
                lease_duration = 3
                item_timeout = 3600
                shutdown_grace = 0
                [database]
                url = "{url}"
                [metrics]
                port = 0
                [[handlers]]
                name = "Held"
                factory = "lease_handlers:Held"
                max_items_per_cycle = {LEASE_ITEMS}
                """))  # fmt: skip

            async def holders() -> dict[str, int]:
                async with engine.connect() as connection:
                    rows = await connection.execute(text(
                        "SELECT worker_id, count(*) AS n FROM novaconsole_claims "
                        "WHERE state = 'held' AND lease_until > now() GROUP BY worker_id"
                    ))  # fmt: skip
                    return {row.worker_id: row.n for row in rows}

            async def serving(worker: PgWorker) -> bool:
                found = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", worker.said())
                worker.port = int(found.group(1)) if found else 0
                return found is not None

            stopped = start_worker(tmp_path, "stopped")
            workers.append(stopped)
            await until(lambda: serving(stopped), "the first worker's metrics", workers)
            samples = await scraped_until(
                stopped.port,
                lambda s: value(s, "novaconsole_items_in_flight", handler="Held") == LEASE_ITEMS,
                "both items in flight on the first worker",
            )
            assert value(samples, "novaconsole_leases_lost_total", handler="Held") == 0
            first_id = ""

            async def holding_both() -> bool:
                nonlocal first_id
                held = await holders()
                first_id = next((w for w, n in held.items() if n == LEASE_ITEMS), "")
                return bool(first_id)

            await until(holding_both, "the first worker's claims on both items", workers)
            other = start_worker(tmp_path, "other")
            workers.append(other)
            await until(lambda: serving(other), "the second worker's metrics", workers)

            stopped.process.send_signal(signal.SIGSTOP)  # past its lease: its items go over

            async def taken_over() -> str | None:
                held = await holders()
                if first_id in held or sum(held.values()) != LEASE_ITEMS:
                    return None
                return next(iter(held))

            second_id = None

            async def note_taken_over() -> bool:
                nonlocal second_id
                second_id = await taken_over()
                return second_id is not None

            await until(note_taken_over, "the second worker holding both items", workers)
            stopped.process.send_signal(signal.SIGCONT)
            lost = await scraped_until(
                stopped.port,
                lambda s: value(s, "novaconsole_leases_lost_total", handler="Held") == LEASE_ITEMS,
                "both leases lost on the resumed worker",
            )
            assert value(lost, "novaconsole_stale_outcomes_rejected_total") == 0  # not done yet
            took = await scraped_until(
                other.port,
                # Marked started by the first worker, they look like crash suspects to the
                # second one, which runs them one at a time.
                lambda s: value(s, "novaconsole_items_in_flight", handler="Held") == 1,
                "an item in flight on the second worker",
            )
            assert value(took, "novaconsole_leases_lost_total", handler="Held") == 0

            gate.touch()  # both workers finish the items: only the second one's count
            rejected = await scraped_until(
                stopped.port,
                lambda s: value(s, "novaconsole_stale_outcomes_rejected_total") == LEASE_ITEMS,
                "the resumed worker's late outcomes rejected",
            )
            assert value(rejected, "novaconsole_leases_lost_total", handler="Held") == 2
            await scraped_until(
                other.port,
                lambda s: (
                    counted(s, "novaconsole_items_total", handler="Held", status="succeeded")
                    == LEASE_ITEMS
                    and value(s, "novaconsole_outcomes_buffered") == 0
                ),
                "the second worker's outcomes written",
            )
            async with engine.connect() as connection:
                recorded = await connection.execute(
                    text("SELECT worker_id FROM novaconsole_results")
                )
                assert {row.worker_id for row in recorded} == {second_id}
        finally:
            for worker in workers:
                if worker.process.poll() is None:
                    worker.process.send_signal(signal.SIGCONT)
                    worker.process.send_signal(signal.SIGTERM)
            for worker in workers:
                try:
                    await anyio.to_thread.run_sync(worker.process.wait, WITHIN)
                except subprocess.TimeoutExpired:
                    worker.process.kill()
                    await anyio.to_thread.run_sync(worker.process.wait)
            await engine.dispose()
