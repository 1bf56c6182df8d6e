"""The store's :class:`~novaconsole.engine.unclaimed.SourceFilter`: an anti-join against the
claims table and the worker's in-flight ids, added to a handler's own select.

The in-flight ids are one bound parameter however many there are (an array on PostgreSQL, a
JSON list on SQLite), so the statement's text, and PostgreSQL's prepared statement, stay the
same from fetch to fetch. Claims are compared as stored: the id column's text, as the engine
keys items (``str(id)``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    String,
    all_,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.types import NullType

from novaconsole.engine.unclaimed import IdColumn, SelectT
from novaconsole.store.models import HELD, claims, stored_handler


class SqlSourceFilter:
    """Leaves claimed (with ``claimed``: the store shares work) and in-flight rows out."""

    def __init__(self, dialect: str, *, claimed: bool) -> None:
        self.postgresql = dialect == "postgresql"
        self.claimed = claimed

    def unclaimed(
        self,
        query: SelectT,
        id_column: IdColumn,
        *,
        handler: str,
        in_flight: Sequence[Any],
    ) -> SelectT:
        column = id_column.expression if isinstance(id_column, QueryableAttribute) else id_column
        if self.claimed:
            # This worker's in-flight items are claims it holds: the probe leaves them out
            # too, cheaper than comparing every row scanned with a list of hundreds of ids.
            return query.where(~self._held(column, handler))
        if in_flight:
            query = query.where(self._not_in(column, in_flight))
        return query

    def _held(self, id_column: ColumnElement[Any], handler: str) -> ColumnElement[bool]:
        now: Any = func.now() if self.postgresql else datetime.now(UTC)
        # One primary-key probe per row scanned, whatever the statistics say. The claims
        # table churns, so the planner often believes it holds a few rows: it then compared
        # every row with every claim (an anti-join over a materialised scan, or a probe of
        # the state index), 0.5 to 1 s per fetch with 3,000 claims held. The CASE keeps the
        # state index out of it, OFFSET 0 keeps PostgreSQL from turning it into a join.
        live = case((claims.c.state == HELD, claims.c.lease_until))
        held = select(literal(1)).where(
            and_(
                claims.c.handler == stored_handler(handler),
                claims.c.item_id == cast(id_column, String),
                live >= now,
            )
        )
        if self.postgresql:
            held = held.offset(literal_column("0"))
        return exists(held)

    def _not_in(self, id_column: ColumnElement[Any], ids: Sequence[Any]) -> ColumnElement[bool]:
        if self.postgresql:
            if isinstance(id_column.type, NullType):  # an untyped column: compare its text
                id_column, ids = cast(id_column, String), [str(i) for i in ids]
            array = bindparam("in_flight", list(ids), type_=ARRAY(id_column.type), unique=True)
            return id_column != all_(array)
        listed: BindParameter[str] = bindparam(
            "in_flight", json.dumps([_plain(i) for i in ids]), unique=True
        )
        values = func.json_each(listed).table_valued("value")
        return id_column.not_in(select(type_coerce(values.c.value, id_column.type)))


def _plain(item_id: Any) -> Any:
    """An id as JSON holds it: ints stay numbers (compared as such), anything else its text."""
    return item_id if isinstance(item_id, int) and not isinstance(item_id, bool) else str(item_id)
