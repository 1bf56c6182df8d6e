"""Claims with leases and fencing tokens: the SQL, one statement per batch.

Every time is the database's (see :mod:`novaconsole.store.clock`), taken inside the write
transaction. A claim's token is ``max(previous + 1, now in microseconds)``: it grows with
every new claim of a row and never repeats even after the row was pruned, so a worker that lost
its lease (stopped, partitioned) can never have its stale token accepted again.

Rows are locked in (handler, item id) order on PostgreSQL, the same order as the claim upsert
inserts them, so that concurrent claims, renewals and completions cannot deadlock.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, exists, false, not_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from novaconsole.engine.fleet_protocol import Claim
from novaconsole.store.clock import on_postgresql, sql_now
from novaconsole.store.database import PRUNE_BATCH
from novaconsole.store.models import (
    DONE,
    HELD,
    claim_ends,
    claims,
    sqlite_time,
    stored_handler,
    stored_item_id,
    stored_key,
    stored_worker_id,
)

ClaimKey = tuple[str, str, int]
"""(handler, item id, token) as stored (ids cut to their column lengths)."""

_PG_NOW_US = "CAST(EXTRACT(EPOCH FROM now()) * 1000000 AS BIGINT)"
_PG_LEASE = "now() + make_interval(secs => CAST(:lease AS DOUBLE PRECISION))"

_PG_CLAIM = text(f"""
INSERT INTO novaconsole_claims AS c
    (handler, item_id, worker_id, token, lease_until, state, finished_at)
SELECT :handler, ids.item_id, :worker_id, {_PG_NOW_US}, {_PG_LEASE}, '{HELD}', NULL
FROM unnest(CAST(:item_ids AS VARCHAR[])) AS ids(item_id)
ON CONFLICT (handler, item_id) DO UPDATE
SET worker_id = EXCLUDED.worker_id,
    token = GREATEST(c.token + 1, EXCLUDED.token),
    lease_until = EXCLUDED.lease_until,
    state = '{HELD}',
    finished_at = NULL
WHERE c.lease_until < now()
   OR (c.state = '{DONE}' AND EXISTS (
       SELECT 1 FROM novaconsole_claim_ends AS e
       WHERE e.id = c.ended_by AND e.ended_at < CAST(:fetched_at AS TIMESTAMPTZ)
   ))
RETURNING c.item_id, c.token
""")

_SQLITE_CLAIM = text(f"""
INSERT INTO novaconsole_claims
    (handler, item_id, worker_id, token, lease_until, state, finished_at)
SELECT :handler, ids.value, :worker_id, :now, :lease_until, '{HELD}', NULL
FROM json_each(:item_ids) AS ids WHERE true
ON CONFLICT (handler, item_id) DO UPDATE
SET worker_id = excluded.worker_id,
    token = max(novaconsole_claims.token + 1, excluded.token),
    lease_until = excluded.lease_until,
    state = '{HELD}',
    finished_at = NULL
WHERE novaconsole_claims.lease_until < :now
   OR (novaconsole_claims.state = '{DONE}' AND EXISTS (
       SELECT 1 FROM novaconsole_claim_ends AS e
       WHERE e.id = novaconsole_claims.ended_by AND e.ended_at < :fetched_at
   ))
RETURNING item_id, token
""")


def _pg_matching(assignments: str, condition: str) -> str:
    """An UPDATE of the held claims matching (handler, item id, token) triples, locked in
    key order first; returns the triples it updated."""
    return f"""
WITH wanted AS (
    SELECT * FROM unnest(
        CAST(:handlers AS VARCHAR[]), CAST(:item_ids AS VARCHAR[]), CAST(:tokens AS BIGINT[])
    ) AS w(handler, item_id, token)
), locked AS (
    SELECT c.handler, c.item_id FROM novaconsole_claims AS c
    JOIN wanted AS w ON c.handler = w.handler AND c.item_id = w.item_id AND c.token = w.token
    WHERE c.state = '{HELD}' {condition}
    ORDER BY c.handler, c.item_id
    FOR UPDATE OF c
)
UPDATE novaconsole_claims AS c SET {assignments}
FROM locked WHERE c.handler = locked.handler AND c.item_id = locked.item_id
RETURNING c.handler, c.item_id, c.token
"""


def _sqlite_matching(assignments: str, condition: str) -> str:
    return f"""
UPDATE novaconsole_claims SET {assignments}
WHERE state = '{HELD}' {condition} AND (handler, item_id, token) IN (
    SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]')
    FROM json_each(:claims)
)
RETURNING handler, item_id, token
"""


_WORKER = "AND worker_id = :worker_id"
_PG_WORKER = "AND c.worker_id = :worker_id"
_PG_RENEW = text(_pg_matching(f"lease_until = {_PG_LEASE}", _PG_WORKER))
_SQLITE_RENEW = text(_sqlite_matching("lease_until = :lease_until", _WORKER))
_PG_RELEASE = text(_pg_matching("lease_until = TIMESTAMPTZ '1970-01-01 00:00:00+00'", _PG_WORKER))
_SQLITE_RELEASE = text(_sqlite_matching("lease_until = 0", _WORKER))
# A claim ends in the transaction that writes the item's outcome and its ``ctx.write()``
# statements, and a time read inside it precedes its commit: a fetch that starts in between
# still sees the item pending, and must not take it again once the commit is visible. So a
# claim ended is taken again by a fetch only if its end record (``ended_by``), written after
# the commit (:func:`record_ends`), is older than the fetch; without one (the worker died in
# between, or the record failed) only once its lease runs out. One record per transaction:
# a second update of every claim ended cost as much as the end itself.
_PG_FINISH = text(_pg_matching(f"state = '{DONE}', finished_at = now(), ended_by = :ended_by", ""))
_SQLITE_FINISH = text(
    _sqlite_matching(f"state = '{DONE}', finished_at = :now, ended_by = :ended_by", "")
)
_PG_RECORD_ENDS = text("""
INSERT INTO novaconsole_claim_ends (id, ended_at)
SELECT ends.id, now() FROM unnest(CAST(:ids AS BIGINT[])) AS ends(id)
ON CONFLICT (id) DO NOTHING
""")
_SQLITE_RECORD_ENDS = text("""
INSERT INTO novaconsole_claim_ends (id, ended_at)
SELECT ends.value, :now FROM json_each(:ids) AS ends WHERE true
ON CONFLICT (id) DO NOTHING
""")
_PG_FINISHED_BY = text(f"""
SELECT c.handler, c.item_id, c.token FROM novaconsole_claims AS c
JOIN unnest(
    CAST(:handlers AS VARCHAR[]), CAST(:item_ids AS VARCHAR[]), CAST(:tokens AS BIGINT[])
) AS w(handler, item_id, token)
ON c.handler = w.handler AND c.item_id = w.item_id AND c.token = w.token
WHERE c.state = '{DONE}' {_PG_WORKER}
""")
_SQLITE_FINISHED_BY = text(f"""
SELECT handler, item_id, token FROM novaconsole_claims
WHERE state = '{DONE}' {_WORKER} AND (handler, item_id, token) IN (
    SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]')
    FROM json_each(:claims)
)
""")

# One primary-key probe per id asked, whatever the statistics say. The claims table grows
# from empty, so the planner often believes it holds a few rows: it then scanned all the
# handler's claims and compared each with every id asked (``= ANY`` of a parameter is not
# hashed), 75-300 ms per 500 ids with 10,000-40,000 claims (3.9 ms once analyzed). OFFSET 0
# keeps the probe from being turned into a join.
_PG_VISIBLY_TAKEN = text(f"""
SELECT k.item_id FROM unnest(CAST(:item_ids AS VARCHAR[])) AS k(item_id)
WHERE EXISTS (
    SELECT 1 FROM novaconsole_claims AS c
    WHERE c.handler = :handler AND c.item_id = k.item_id AND c.lease_until >= now()
      AND NOT (c.state = '{DONE}' AND EXISTS (
          SELECT 1 FROM novaconsole_claim_ends AS e
          WHERE e.id = c.ended_by AND e.ended_at < CAST(:fetched_at AS TIMESTAMPTZ)
      ))
    OFFSET 0
)
""")

_PG_PRUNE = text(f"""
DELETE FROM novaconsole_claims WHERE ctid IN (
    SELECT ctid FROM novaconsole_claims
    WHERE (state = '{DONE}' AND finished_at < now() - make_interval(secs => :keep))
       OR lease_until < now() - make_interval(secs => :keep)
    LIMIT {PRUNE_BATCH}
)
""")
_SQLITE_PRUNE = text(f"""
DELETE FROM novaconsole_claims WHERE rowid IN (
    SELECT rowid FROM novaconsole_claims
    WHERE (state = '{DONE}' AND finished_at < :before) OR lease_until < :before
    LIMIT {PRUNE_BATCH}
)
""")
# An end outlives the claims it ended (they are pruned by their own earlier ``finished_at``);
# one pruned first only leaves its claims to be taken again once their lease runs out.
_PG_PRUNE_ENDS = text(f"""
DELETE FROM novaconsole_claim_ends WHERE id IN (
    SELECT id FROM novaconsole_claim_ends
    WHERE ended_at < now() - make_interval(secs => :keep)
    LIMIT {PRUNE_BATCH}
)
""")
_SQLITE_PRUNE_ENDS = text(f"""
DELETE FROM novaconsole_claim_ends WHERE id IN (
    SELECT id FROM novaconsole_claim_ends WHERE ended_at < :before LIMIT {PRUNE_BATCH}
)
""")


def _micros(moment: datetime) -> int:
    return sqlite_time(moment)


async def visibly_taken(
    connection: AsyncConnection,
    handler: str,
    item_ids: Sequence[str],
    fetched_at: datetime | None,
) -> set[str]:
    """Which of the (stored) ``item_ids`` another claim holds now, as far as a plain read can
    tell: the claim skips them, so that workers fetching the same items do not queue on each
    other's row locks (the claim itself re-checks every row it takes)."""
    if on_postgresql(connection):
        params = {
            "handler": stored_handler(handler),
            "item_ids": list(item_ids),
            "fetched_at": fetched_at,
        }
        return set((await connection.scalars(_PG_VISIBLY_TAKEN, params)).all())
    now = sql_now(connection)
    finished_before_fetch: ColumnElement[bool] = false()
    if fetched_at is not None:
        ended = select(claim_ends.c.id).where(
            claim_ends.c.id == claims.c.ended_by, claim_ends.c.ended_at < fetched_at
        )
        finished_before_fetch = and_(claims.c.state == DONE, exists(ended))
    query = select(claims.c.item_id).where(
        claims.c.handler == stored_handler(handler),
        claims.c.item_id.in_(list(item_ids)),
        claims.c.lease_until >= now,
        not_(finished_before_fetch),
    )
    return set((await connection.scalars(query)).all())


async def claim(
    connection: AsyncConnection,
    worker_id: str,
    handler: str,
    item_ids: Sequence[str],
    lease: float,
    fetched_at: datetime | None,
) -> dict[str, int]:
    """Claim the free (never claimed, lease expired, or finished before ``fetched_at``) of
    ``item_ids`` in one statement; the token of each claimed id, keyed as asked."""
    asked: dict[str, str] = {}
    for item_id in item_ids:
        asked.setdefault(stored_item_id(item_id), item_id)
    stored = sorted(asked)
    params: dict[str, object] = {
        "handler": stored_handler(handler),
        "worker_id": stored_worker_id(worker_id),
    }
    if on_postgresql(connection):
        params |= {"item_ids": stored, "lease": lease, "fetched_at": fetched_at}
        rows = await connection.execute(_PG_CLAIM, params)
    else:
        now = datetime.now(UTC)
        params |= {
            "item_ids": json.dumps(stored),
            "now": _micros(now),
            "lease_until": _micros(now + timedelta(seconds=lease)),
            "fetched_at": None if fetched_at is None else _micros(fetched_at),
        }
        rows = await connection.execute(_SQLITE_CLAIM, params)
    return {asked[item_id]: int(token) for item_id, token in rows}


def _triples(claims: Iterable[Claim]) -> list[ClaimKey]:
    return sorted({(*stored_key(c.handler, c.item_id), c.token) for c in claims})


async def _update_matching(
    connection: AsyncConnection,
    pg: object,
    sqlite: object,
    keys: Sequence[ClaimKey],
    params: dict[str, object],
) -> set[ClaimKey]:
    if not keys:
        return set()
    if on_postgresql(connection):
        params |= {
            "handlers": [k[0] for k in keys],
            "item_ids": [k[1] for k in keys],
            "tokens": [k[2] for k in keys],
        }
        rows = await connection.execute(pg, params)  # type: ignore[call-overload]
    else:
        params["claims"] = json.dumps(keys)
        rows = await connection.execute(sqlite, params)  # type: ignore[call-overload]
    return {(handler, item_id, int(token)) for handler, item_id, token in rows}


async def renew(
    connection: AsyncConnection, worker_id: str, claims: Sequence[Claim], lease: float
) -> set[ClaimKey]:
    """Extend the leases of the claims ``worker_id`` still holds; the keys renewed."""
    now = datetime.now(UTC)
    params: dict[str, object] = {"worker_id": stored_worker_id(worker_id), "lease": lease}
    if not on_postgresql(connection):
        params = {
            "worker_id": stored_worker_id(worker_id),
            "lease_until": _micros(now + timedelta(seconds=lease)),
        }
    return await _update_matching(connection, _PG_RENEW, _SQLITE_RENEW, _triples(claims), params)


async def finished_by(
    connection: AsyncConnection, worker_id: str, claims: Sequence[Claim]
) -> set[ClaimKey]:
    """The keys of ``claims`` that ``worker_id`` itself finished (their outcome committed)."""
    params: dict[str, object] = {"worker_id": stored_worker_id(worker_id)}
    keys = _triples(claims)
    return await _update_matching(connection, _PG_FINISHED_BY, _SQLITE_FINISHED_BY, keys, params)


async def release(connection: AsyncConnection, worker_id: str, claims: Sequence[Claim]) -> int:
    """Free held claims at once (their lease ends now; tokens are kept); how many."""
    params: dict[str, object] = {"worker_id": stored_worker_id(worker_id)}
    freed = await _update_matching(
        connection, _PG_RELEASE, _SQLITE_RELEASE, _triples(claims), params
    )
    return len(freed)


async def finish(
    connection: AsyncConnection, keys: Collection[ClaimKey], ended_by: int
) -> set[ClaimKey]:
    """Mark done the claims whose token is still current, ended by the end record
    ``ended_by`` (see :func:`record_ends`); the keys accepted (the others are stale: their
    worker lost the lease)."""
    params: dict[str, object] = {"ended_by": ended_by}
    if not on_postgresql(connection):
        params["now"] = _micros(datetime.now(UTC))
    return await _update_matching(connection, _PG_FINISH, _SQLITE_FINISH, sorted(keys), params)


def new_end() -> int:
    """A fresh end record id, for the claims one transaction ends."""
    return secrets.randbits(63)


async def record_ends(connection: AsyncConnection, ids: Collection[int]) -> None:
    """Write the end records ``ids``, each once its transaction is known to be committed:
    from now on a fetch may take again the claims they ended."""
    if on_postgresql(connection):
        await connection.execute(_PG_RECORD_ENDS, {"ids": sorted(ids)})
    else:
        now = _micros(datetime.now(UTC))
        await connection.execute(_SQLITE_RECORD_ENDS, {"ids": json.dumps(sorted(ids)), "now": now})


async def prune(connection: AsyncConnection, keep: timedelta) -> int:
    """Delete up to :data:`PRUNE_BATCH` claims done (or expired) longer than ``keep`` ago, and
    as many end records older than that."""
    if on_postgresql(connection):
        params: dict[str, object] = {"keep": keep.total_seconds()}
        result = await connection.execute(_PG_PRUNE, params)
        await connection.execute(_PG_PRUNE_ENDS, params)
    else:
        params = {"before": _micros(datetime.now(UTC) - keep)}
        result = await connection.execute(_SQLITE_PRUNE, params)
        await connection.execute(_SQLITE_PRUNE_ENDS, params)
    return int(result.rowcount)


def keys_of(claims: Iterable[Claim]) -> Mapping[ClaimKey, Claim]:
    """Each claim by its stored key."""
    return {(*stored_key(c.handler, c.item_id), c.token): c for c in claims}
