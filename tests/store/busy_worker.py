"""A busy headless service for the crash test: ``python busy_worker.py DB_PATH``.

Two handlers produce fresh items without end: ``Fast`` does nothing, ``Writer`` inserts a row
through ``ctx.session()``. Once results have reached the database it prints ``flowing`` and
keeps going until it is killed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import count

import anyio
from sqlalchemy import text

from novaconsole import BackgroundProcessing, HandlerContext
from novaconsole.engine.events import ItemFinished
from novaconsole.store import open_store

FLOWING_AFTER = 2000
_ids = count()


@dataclass(frozen=True)
class Item:
    id: int


class Fast:
    async def fetch_next(self, max_items: int) -> Sequence[Item]:
        return [Item(next(_ids)) for _ in range(max_items)]

    async def process(self, item: Item) -> None:
        return None


class Writer:
    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx

    async def fetch_next(self, max_items: int) -> Sequence[Item]:
        return [Item(next(_ids)) for _ in range(max_items)]

    async def process(self, item: Item) -> None:
        async with self.ctx.session() as session, session.begin():
            await session.execute(text("INSERT INTO written VALUES (:id)"), {"id": item.id})


async def main(db_path: str) -> None:
    store = open_store(f"sqlite+aiosqlite:///{db_path}")
    async with store.engine.begin() as connection:
        await connection.execute(text("CREATE TABLE IF NOT EXISTS written (id INTEGER)"))
    service = (
        BackgroundProcessing(poll_interval=0.01, max_concurrency=8, queue_capacity=2000)
        .add_handler(Fast, name="Fast", max_items_per_cycle=500)
        .add_handler(Writer, name="Writer", max_items_per_cycle=20)
        .build(store=store)
    )
    events = service.events()
    async with service.running():
        finished = 0
        async for event in events:
            finished += isinstance(event, ItemFinished)
            if finished >= FLOWING_AFTER:
                break
        await store.settled()
        print("flowing", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
