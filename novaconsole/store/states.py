"""Reading items' states (attempts so far, dead) at admission, one batch of ids at a time."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from novaconsole.engine.persistence import ItemState
from novaconsole.store.clock import on_postgresql
from novaconsole.store.database import chunked
from novaconsole.store.models import item_states, stored_handler

# One primary-key probe per id, whatever the statistics say (OFFSET 0 keeps it a probe, not a
# join). Planned from statistics taken while the table was smaller, an IN list compared every
# row of the handler's with every id asked (a prepared statement's list is not hashed): 182 ms
# per 500 ids with 10,000 states, 650 ms with 40,000, until the next ANALYZE.
_PG_READ = text("""
SELECT k.item_id, s.attempts, s.dead
FROM unnest(CAST(:item_ids AS VARCHAR[])) AS k(item_id)
CROSS JOIN LATERAL (
    SELECT s.attempts, s.dead FROM novaconsole_item_states AS s
    WHERE s.handler = :handler AND s.item_id = k.item_id
    OFFSET 0
) AS s
""")


async def read(
    connection: AsyncConnection, handler: str, stored_ids: Sequence[str]
) -> dict[str, ItemState]:
    """The states of those of ``stored_ids`` (ids as stored) that have one, by stored id."""
    if on_postgresql(connection):
        params = {"handler": stored_handler(handler), "item_ids": list(stored_ids)}
        rows = list(await connection.execute(_PG_READ, params))
    else:
        rows = []
        for chunk in chunked(stored_ids):
            rows += await connection.execute(
                select(item_states.c.item_id, item_states.c.attempts, item_states.c.dead).where(
                    item_states.c.handler == stored_handler(handler),
                    item_states.c.item_id.in_(chunk),
                )
            )
    return {item_id: ItemState(attempts, dead=bool(dead)) for item_id, attempts, dead in rows}
