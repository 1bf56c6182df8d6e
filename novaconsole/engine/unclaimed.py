"""Leaving out of a fetch what is already taken: the protocol a store implements so that a
handler's own query skips the rows other workers hold and this worker has in hand.

While a batch is in flight its rows are still pending at their source, so a plain ``SELECT ...
WHERE state = 'pending' ORDER BY id`` returns them again: the next fetch gets the same rows
(skipped) and other workers get nothing. :meth:`HandlerContext.unclaimed
<novaconsole.engine.handler.HandlerContext.unclaimed>` adds the exclusion to the handler's
query (one round trip); :meth:`~novaconsole.engine.handler.HandlerContext.in_flight_ids` hands
the ids to any other source.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, Union

if TYPE_CHECKING:
    from sqlalchemy.orm import QueryableAttribute
    from sqlalchemy.sql import ColumnElement, Select

SelectT = TypeVar("SelectT", bound="Select")  # type: ignore[type-arg]  # any columns
IdColumn = Union["ColumnElement[Any]", "QueryableAttribute[Any]"]
"""The id column of a select: a Core column or an ORM attribute (``Job.id``)."""


class SourceFilter(Protocol):
    """The store's side: the SQL that leaves claimed and in-flight rows out of a select."""

    def unclaimed(
        self,
        query: SelectT,
        id_column: IdColumn,
        *,
        handler: str,
        in_flight: Sequence[Any],
    ) -> SelectT:
        """``query`` without the rows whose id (``id_column``) another claim holds now (any
        worker's live lease on ``handler``'s item) or that are in ``in_flight``."""


def without_in_flight(query: SelectT, id_column: IdColumn, in_flight: Sequence[Any]) -> SelectT:
    """The fallback without a store (a handler test): leave out ``in_flight`` only."""
    if not in_flight:
        return query
    return query.where(id_column.not_in(list(in_flight)))
