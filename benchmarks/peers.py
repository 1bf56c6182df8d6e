"""``python -m benchmarks --peers``: the no-op and drain workloads through other task queues
installed here (``pip install 'novaconsole[peers]'``), beside novaconsole's in the same run.

- no-op: ``total`` tasks that do nothing but count; novaconsole runs B1's engine with its
  SQLite store (outcomes recorded), the handler's source handing out items.
- drain: a SQLite ``work`` table with ``total`` pending rows, each set done by one task (a
  connection per worker thread, a commit per row); novaconsole runs B2's ``ctx.write()``
  drain on the same table. The peer's producer reads the pending ids and enqueues one task
  each, as its users would; every row is checked done at the end.

Each peer's clock runs from the first enqueue (its 8 worker threads already waiting) to the
last task done, novaconsole's from entering ``service.running()`` to leaving it. Peers: huey
with its in-memory queue (``MemoryHuey``) and on SQLite (``SqliteHuey``), dramatiq with its
stub broker; each missing one is a row saying why. Rounds are interleaved; the ratio is
novaconsole's items/s over the peer's, the median of the rounds (over 1: novaconsole is
faster).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from statistics import median
from time import perf_counter
from typing import Any

import anyio
import anyio.to_thread

from benchmarks import b1_overhead, b2_sqlite
from benchmarks.measure import progress
from benchmarks.report import Row

WORKERS = 8
_IPS = "items/s"
_UPDATE = "UPDATE work SET state = 'done' WHERE id = ?"
_PENDING = "SELECT id FROM work WHERE state = 'pending' ORDER BY id"
_NEEDS = "pip install 'novaconsole[peers]'"

Workload = Callable[[int, Path], float]
"""A peer's run: items per second for ``total`` items (a database under the folder)."""


class _Done:
    """Counts finished tasks from any thread; ``wait`` returns when ``total`` are done."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.count = 0
        self._lock = threading.Lock()
        self._event = threading.Event()

    def add(self) -> None:
        with self._lock:
            self.count += 1
            if self.count >= self.total:
                self._event.set()

    def wait(self) -> None:
        if not self._event.wait(600):
            raise RuntimeError(f"only {self.count} of {self.total} tasks done after 600 s")


class _Rows:
    """A sqlite3 connection per worker thread on the drain's table (WAL, like the store)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.local = threading.local()
        self.opened: list[sqlite3.Connection] = []

    def done(self, row_id: int) -> None:
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            connection.execute("PRAGMA synchronous=NORMAL")
            self.local.connection = connection
            self.opened.append(connection)
        connection.execute(_UPDATE, (row_id,))
        connection.commit()

    def close(self) -> None:
        for connection in self.opened:
            connection.close()


def _huey(kind: str, drain: bool, total: int, folder: Path) -> float:
    from huey import MemoryHuey, SqliteHuey

    huey: Any = (
        MemoryHuey(utc=True)
        if kind == "memory"
        else SqliteHuey(filename=str(folder / "huey.db"), utc=True)
    )
    done = _Done(total)
    rows = _Rows(folder / "work.db") if drain else None

    @huey.task()  # type: ignore[untyped-decorator]
    def task(row_id: int) -> None:
        if rows is not None:
            rows.done(row_id)
        done.add()

    consumer = huey.create_consumer(workers=WORKERS, worker_type="thread", initial_delay=0.001)
    consumer._set_signal_handlers = lambda: None  # it runs in a thread, not the main one
    consumer.start()
    started = perf_counter()
    for i in _work(rows, total):
        task(i)
    done.wait()
    elapsed = perf_counter() - started
    consumer.stop(graceful=True)
    _finish(rows)
    return total / elapsed


def _dramatiq(drain: bool, total: int, folder: Path) -> float:
    import dramatiq
    from dramatiq.brokers.stub import StubBroker

    broker = StubBroker()
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    done = _Done(total)
    rows = _Rows(folder / "work.db") if drain else None

    def work(row_id: int) -> None:
        if rows is not None:
            rows.done(row_id)
        done.add()

    actor = dramatiq.actor(work, broker=broker, actor_name=f"work_{drain}", max_retries=0)
    worker = dramatiq.Worker(broker, worker_threads=WORKERS, worker_timeout=10)
    worker.start()
    started = perf_counter()
    for i in _work(rows, total):
        actor.send(i)
    done.wait()
    elapsed = perf_counter() - started
    worker.stop()
    broker.close()
    _finish(rows)
    return total / elapsed


def _work(rows: _Rows | None, total: int) -> list[int]:
    """What the producer enqueues: the pending rows' ids (drain), else ``total`` numbers."""
    if rows is None:
        return list(range(total))
    with sqlite3.connect(rows.path) as connection:
        ids = [i for (i,) in connection.execute(_PENDING)]
    connection.close()
    return ids


def _finish(rows: _Rows | None) -> None:
    if rows is None:
        return
    rows.close()
    with sqlite3.connect(rows.path) as connection:
        (left,) = connection.execute("SELECT count(*) FROM work WHERE state = 'pending'").fetchone()
    connection.close()
    if left:
        raise RuntimeError(f"the peer's drain left {left} rows pending")


def _missing(module: str) -> str | None:
    try:
        __import__(module)
    except ImportError:
        return f"{module} is not installed ({_NEEDS})"
    return None


PEERS: dict[str, tuple[str, Callable[[bool, int, Path], float]]] = {
    "huey, in-memory queue": ("huey", lambda d, n, f: _huey("memory", d, n, f)),
    "huey, SQLite queue": ("huey", lambda d, n, f: _huey("sqlite", d, n, f)),
    "dramatiq, stub broker": ("dramatiq", _dramatiq),
}


async def _novaconsole(drain: bool, total: int, folder: Path) -> float:
    await anyio.Path(folder).mkdir(parents=True)
    if drain:
        return await b2_sqlite.engine(folder / "work.db", total, write="write")
    return (await b1_overhead.engine(total, folder / "store.db")).rate


async def run(total: int, repeat: int, workdir: Path) -> list[Row]:
    """One row per peer and workload: the peer's items/s, novaconsole's, and their ratio."""
    available = {name: _missing(module) for name, (module, _) in PEERS.items()}
    ours: dict[bool, list[float]] = {False: [], True: []}
    theirs: dict[tuple[str, bool], list[float]] = {}
    for round_ in range(repeat):
        for drain in (False, True):
            label = "drain" if drain else "no-op"
            progress(f"peers round {round_ + 1}: {label}")
            folder = workdir / f"peers-{round_}-{label}"
            folder.mkdir()
            ours[drain].append(await _novaconsole(drain, total, folder / "nc"))
            for name, (_, workload) in PEERS.items():
                if available[name] is not None:
                    continue
                mine = folder / name.split(",")[0] / name.split(" ")[1]
                mine.mkdir(parents=True)
                if drain:
                    b2_sqlite.prepare(mine / "work.db", total)
                rate = await anyio.to_thread.run_sync(workload, drain, total, mine)
                theirs.setdefault((name, drain), []).append(rate)
    rows: list[Row] = []
    for drain in (False, True):
        label = "SQLite drain" if drain else "no-op"
        for name in PEERS:
            why = available[name]
            if why is not None:
                rows.append(Row("peers", f"{name}, {label}: skipped, {why}", 0.0, "", text="-"))
                continue
            peer = theirs[(name, drain)]
            ratios = [o / p for o, p in zip(ours[drain], peer, strict=True) if p]
            rows.append(
                Row(
                    "peers",
                    f"novaconsole vs {name}, {label}",
                    median(ours[drain]),
                    _IPS,
                    baseline=median(peer),
                    ratio=median(ratios) if ratios else 0.0,
                )
            )
    return rows
