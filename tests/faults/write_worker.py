"""A worker for the write-path fault tests, run as its own process: it drains the ``source``
table of a SQLite file through ``ctx.write()``, its outcomes in the same file.

``python write_worker.py DB [MODE] [URL]``. With URL (a PostgreSQL database), the source
table and the store live there, the workers share it (claims, with a lease of a second), and
DB only names the log. Every call of ``process`` appends "ID" to ``DB.log``
(one ``os.write`` of one line: whole even under ``kill -9``). MODE ``exit`` makes item 13
call ``os._exit(1)``; ``segfault`` makes it read address 0. Prints ``ready`` once running and
``drained`` when every row of the source is done or recorded as failed (then keeps polling
until killed or stopped with SIGTERM, which drains and exits 0).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

import anyio
from sqlalchemy import text

from novaconsole import BackgroundProcessing, HandlerContext, RetryPolicy

POISON = 13
SELECT = text("SELECT id FROM source WHERE done = 0 ORDER BY id LIMIT :n")
UPDATE = text("UPDATE source SET done = 1 WHERE id = :id")
PENDING = text(
    "SELECT count(*) FROM source WHERE done = 0 AND CAST(id AS TEXT) NOT IN "
    "(SELECT item_id FROM novaconsole_results WHERE status = 'failed')"
)


@dataclass(frozen=True)
class Item:
    id: int


def make_handler(log: str, mode: str) -> type:
    class Drain:
        def __init__(self, ctx: HandlerContext) -> None:
            self.ctx = ctx

        async def fetch_next(self, max_items: int) -> list[Item]:
            async with self.ctx.session() as session:
                rows = await session.execute(SELECT, {"n": max_items})
                return [Item(row_id) for (row_id,) in rows]

        async def process(self, item: Item) -> None:
            descriptor = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                os.write(descriptor, f"{item.id}\n".encode())
            finally:
                os.close(descriptor)
            if item.id == POISON and mode == "exit":
                os._exit(1)
            if item.id == POISON and mode == "segfault":
                ctypes.string_at(0)
            self.ctx.write(UPDATE, {"id": item.id})

        async def on_failure(self, item: Any, error: BaseException) -> None:
            print(f"on_failure {item.id}", flush=True)

    return Drain


async def main(db: str, mode: str, url: str) -> None:
    service = (
        BackgroundProcessing(
            poll_interval=0.02,
            max_concurrency=8,
            retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.01),
            lease_duration=1.0,  # a dead worker's claims are free again a second later
        )
        .add_handler(make_handler(f"{db}.log", mode), name="Drain", max_items_per_cycle=200)
        .build(database_url=url or f"sqlite+aiosqlite:///{db}")
    )
    stop = anyio.Event()
    async with service.running(), anyio.create_task_group() as group:

        async def on_sigterm() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    stop.set()
                    return

        group.start_soon(on_sigterm)
        print("ready", flush=True)
        said = False
        while not stop.is_set():
            with anyio.move_on_after(0.05):
                await stop.wait()
            if said:
                continue
            async with service.store.engine.connect() as connection:  # type: ignore[attr-defined]
                if await connection.scalar(PENDING) == 0:
                    print("drained", flush=True)
                    said = True
        group.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main, *[*sys.argv[1:], "", ""][:3])
