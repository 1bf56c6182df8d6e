"""The handlers B7's worker processes run (``factory = "benchmarks.b7_handlers:..."``).

Every source is a table in the benchmark's PostgreSQL database, shared by all workers, and
gives nothing until the benchmark opens ``b7_gate`` (so workers that started early do not
run ahead of the others):

- ``NoOp`` and ``Sleep5`` take the next range of ids from a counter (one ``UPDATE ...
  RETURNING``); processing does nothing, or sleeps 5 ms.
- ``Drain`` is the natural query, ``SELECT id ... WHERE state = 'pending' ORDER BY id LIMIT n``
  through ``ctx.session()`` with :meth:`~novaconsole.HandlerContext.unclaimed`; ``process``
  sets its row done with ``ctx.write()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import anyio
from sqlalchemy import Boolean, Column, Integer, MetaData, Table, Text, exists, select, text

from novaconsole import HandlerContext

metadata = MetaData()
gate = Table(
    "b7_gate",
    metadata,
    Column("opened", Boolean, nullable=False),
    Column("taken", Integer, nullable=False),
    Column("total", Integer, nullable=False),
)
work = Table(
    "b7_work",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("state", Text, nullable=False),
    Column("payload", Text, nullable=False),
)
PENDING_INDEX = "CREATE INDEX b7_work_pending ON b7_work (id) WHERE state = 'pending'"

_TAKE = text("""
WITH old AS (SELECT taken FROM b7_gate WHERE opened AND taken < total FOR UPDATE)
UPDATE b7_gate AS g SET taken = LEAST(g.taken + :n, g.total) FROM old
RETURNING old.taken, g.taken
""")
_DONE = text("UPDATE b7_work SET state = 'done' WHERE id = :id")


@dataclass(frozen=True, slots=True)
class Item:
    id: int


class NoOp:
    """The next ``max_items`` ids of the shared counter; processing does nothing."""

    pause = 0.0

    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx

    async def fetch_next(self, max_items: int) -> Sequence[Item]:
        async with self.ctx.session() as session, session.begin():
            taken = (await session.execute(_TAKE, {"n": max_items})).first()
        if taken is None:
            return []
        start, stop = taken
        return [Item(i) for i in range(start, stop)]

    async def process(self, item: Item) -> None:
        if self.pause:
            await anyio.sleep(self.pause)


class Sleep5(NoOp):
    """The same items, each sleeping 5 ms (I/O-bound work)."""

    pause = 0.005


class Drain:
    """Pending rows on the natural query, without what is claimed or in flight."""

    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx

    async def fetch_next(self, max_items: int) -> Sequence[Item]:
        query = (
            select(work.c.id)
            .where(work.c.state == "pending", exists().where(gate.c.opened))
            .order_by(work.c.id)
        )
        async with self.ctx.session() as session:
            ids = await session.scalars(self.ctx.unclaimed(query, work.c.id).limit(max_items))
            return [Item(i) for i in ids]

    async def process(self, item: Item) -> None:
        self.ctx.write(_DONE, {"id": item.id})
