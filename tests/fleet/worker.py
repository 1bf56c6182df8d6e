"""One fleet worker for the tests and the scaling measurement: ``python worker.py URL [options]``.

Its handler ``Fleet`` reads the pending rows of ``fleet_items`` (every worker sees the same
ones: ``--order head``; or a random sample: ``--order random``; or the head without what is
claimed or in flight, through ``ctx.unclaimed()``: ``--order unclaimed``, which also logs each
id it fetched in ``fleet_fetches``), and for each item records a row in ``fleet_runs`` (item,
worker, start and end), sleeps the item's ``duration`` (``--gated``: and waits until
``fleet_gate`` has a row) and marks it done. Prints ``ready WORKER_ID`` once running; SIGTERM
or SIGINT drains and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
from sqlalchemy import Integer, column, insert, select, table, text

from novaconsole import BackgroundProcessing, HandlerContext
from novaconsole.store import open_store

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS fleet_items (id INTEGER PRIMARY KEY, "
    "duration FLOAT NOT NULL DEFAULT 0, done BOOLEAN NOT NULL DEFAULT false)",
    "CREATE TABLE IF NOT EXISTS fleet_runs "
    "(item_id INTEGER NOT NULL, worker TEXT NOT NULL, started FLOAT NOT NULL, finished FLOAT)",
)
ORDERS = {"head": "id", "random": "random()", "unclaimed": "id"}
ITEMS = table("fleet_items", column("id", Integer), column("duration"), column("done"))


@dataclass(frozen=True)
class Item:
    id: int
    duration: float


class Fleet:
    order = "id"
    worker = ""
    light = False
    unclaimed = False
    gated = False

    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx

    async def fetch_next(self, max_items: int) -> Sequence[Item]:
        if self.unclaimed:
            return await self._fetch_unclaimed(max_items)
        query = text(
            f"SELECT id, duration FROM fleet_items WHERE NOT done ORDER BY {self.order} LIMIT :n"
        )
        async with self.ctx.session() as session:
            rows = await session.execute(query, {"n": max_items})
            return [Item(row.id, row.duration) for row in rows]

    async def _fetch_unclaimed(self, max_items: int) -> Sequence[Item]:
        query = select(ITEMS.c.id, ITEMS.c.duration).where(~ITEMS.c.done).order_by(ITEMS.c.id)
        async with self.ctx.session() as session, session.begin():
            rows = await session.execute(self.ctx.unclaimed(query, ITEMS.c.id).limit(max_items))
            items = [Item(row.id, row.duration) for row in rows]
            if items:
                fetches = table("fleet_fetches", column("worker"), column("item_id"))
                await session.execute(
                    insert(fetches), [{"worker": self.worker, "item_id": i.id} for i in items]
                )
        return items

    async def _gate(self) -> None:
        while True:
            async with self.ctx.session() as session:
                if await session.scalar(text("SELECT count(*) FROM fleet_gate")):
                    return
            await anyio.sleep(0.05)

    async def process(self, item: Item) -> None:
        started = time.time()
        if self.gated:
            await self._gate()
        if self.light:
            await self._light(item, started)
            return
        if item.duration:
            # A slow item shows it started before it sleeps; a quick one writes once.
            async with self.ctx.session() as session, session.begin():
                await session.execute(
                    text("INSERT INTO fleet_runs (item_id, worker, started) VALUES (:i, :w, :t)"),
                    {"i": item.id, "w": self.worker, "t": started},
                )
            await anyio.sleep(item.duration)
        async with self.ctx.session() as session, session.begin():
            if not item.duration:
                await session.execute(
                    text("INSERT INTO fleet_runs (item_id, worker, started) VALUES (:i, :w, :t)"),
                    {"i": item.id, "w": self.worker, "t": started},
                )
            await session.execute(
                text("UPDATE fleet_items SET done = true WHERE id = :i"), {"i": item.id}
            )
            await session.execute(
                text(
                    "UPDATE fleet_runs SET finished = :t "
                    "WHERE item_id = :i AND worker = :w AND finished IS NULL"
                ),
                {"i": item.id, "w": self.worker, "t": time.time()},
            )

    async def _light(self, item: Item, started: float) -> None:
        """Sleep, then write with ctx.write() (the recommended write path)."""
        await anyio.sleep(item.duration)
        self.ctx.write(
            "INSERT INTO fleet_runs (item_id, worker, started, finished) VALUES (:i, :w, :t, :f)",
            {"i": item.id, "w": self.worker, "t": started, "f": time.time()},
        )
        self.ctx.write("UPDATE fleet_items SET done = true WHERE id = :i", {"i": item.id})


async def main(args: argparse.Namespace) -> None:
    store = open_store(args.url, shared=not args.alone)
    Fleet.order = ORDERS[args.order]
    Fleet.light = args.light
    Fleet.unclaimed = args.order == "unclaimed"
    Fleet.gated = args.gated
    service = (
        BackgroundProcessing(
            poll_interval=args.poll,
            max_concurrency=args.concurrency,
            lease_duration=args.lease,
            shutdown_grace=5,
        )
        .add_handler(Fleet, name="Fleet", max_items_per_cycle=args.batch)
        .build(store=store)
    )
    Fleet.worker = service.worker_id
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with service.running():
            print(f"ready {service.worker_id}", flush=True)
            async for _ in signals:
                break
    print(f"stopped rejected={store.rejected_outcomes}", flush=True)


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--poll", type=float, default=0.05)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--order", choices=sorted(ORDERS), default="head")
    parser.add_argument("--alone", action="store_true", help="no claims (a baseline)")
    parser.add_argument("--light", action="store_true", help="one shared write per batch")
    parser.add_argument("--gated", action="store_true", help="items wait for fleet_gate")
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    anyio.run(main, _arguments(sys.argv[1:]))
