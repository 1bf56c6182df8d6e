"""The ``novaconsole_started`` marks (see :mod:`novaconsole.engine.crashes`): SQL only."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from novaconsole.engine.crashes import StartMark
from novaconsole.store.models import started, stored_key

_CHUNK = 500

_UPSERT = text(
    "INSERT INTO novaconsole_started (handler, item_id, run_id, alone, crashes) "
    "VALUES (:handler, :item_id, :run_id, :alone, :crashes) "
    "ON CONFLICT (handler, item_id) DO UPDATE SET run_id = excluded.run_id, "
    "alone = excluded.alone, crashes = excluded.crashes"
).bindparams(bindparam("alone", type_=started.c.alone.type))

_DELETE = started.delete().where(
    started.c.handler == bindparam("k_handler"), started.c.item_id == bindparam("k_item_id")
)
_SQLITE_UPSERT = (
    "INSERT INTO novaconsole_started (handler, item_id, run_id, alone, crashes) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (handler, item_id) DO UPDATE SET "
    "run_id = excluded.run_id, alone = excluded.alone, crashes = excluded.crashes"
)
SQLITE_DELETE = "DELETE FROM novaconsole_started WHERE handler = ? AND item_id = ?"
"""The delete of :func:`key_rows` tuples for SQLite's executemany."""


async def upsert(
    connection: AsyncConnection,
    handler: str,
    marks: Mapping[str, tuple[bool, int]],
    run_id: str,
) -> None:
    """Mark ``marks`` (key: (alone, crashes)) as this run's."""
    if connection.dialect.name == "sqlite":  # plain tuples: no per-row binding on the loop
        await connection.exec_driver_sql(
            _SQLITE_UPSERT,
            [
                (*stored_key(handler, key), run_id, int(alone), crashes)
                for key, (alone, crashes) in marks.items()
            ],
        )
        return
    rows = []
    for key, (alone, crashes) in marks.items():
        stored_handler, stored_id = stored_key(handler, key)
        rows.append(
            {
                "handler": stored_handler,
                "item_id": stored_id,
                "run_id": run_id,
                "alone": alone,
                "crashes": crashes,
            }
        )
    await connection.execute(_UPSERT, rows)


async def read(
    connection: AsyncConnection, handler: str, keys: Sequence[str], run_id: str
) -> dict[str, StartMark]:
    """Marks other runs left on ``keys``."""
    asked = {stored_key(handler, key)[1]: key for key in keys}
    stored_handler = stored_key(handler, "")[0]
    ids = list(asked)
    found: dict[str, StartMark] = {}
    for start in range(0, len(ids), _CHUNK):
        rows = await connection.execute(
            select(started.c.item_id, started.c.alone, started.c.crashes).where(
                started.c.handler == stored_handler,
                started.c.item_id.in_(ids[start : start + _CHUNK]),
                started.c.run_id != run_id,
            )
        )
        for item_id, alone, crashes in rows:
            found[asked[item_id]] = StartMark(alone=bool(alone), crashes=int(crashes))
    return found


async def others_exist(connection: AsyncConnection, run_id: str) -> bool:
    """Whether any run but this one left marks."""
    found = await connection.scalar(
        select(started.c.item_id).where(started.c.run_id != run_id).limit(1)
    )
    return found is not None


def key_rows(keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(handler, key) pairs as stored."""
    return [stored_key(handler, key) for handler, key in keys]


async def delete(connection: AsyncConnection, keys: Iterable[tuple[str, str]]) -> None:
    """Remove the marks of (handler, key) pairs: their items are finished or given back."""
    if connection.dialect.name == "sqlite":
        rows = key_rows(keys)
        if rows:
            await connection.exec_driver_sql(SQLITE_DELETE, rows)
        return
    params = [{"k_handler": h, "k_item_id": i} for h, i in key_rows(keys)]
    if params:
        await connection.execute(_DELETE, params)
