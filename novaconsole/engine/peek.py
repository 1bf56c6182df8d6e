"""Peek: what a handler's ``fetch_next`` would return now, without processing or claiming
anything. The fetch runs with ``ctx.session()`` joined to one transaction that is rolled back
at the end (the store's :meth:`rolled_back_sessions`), so a ``fetch_next`` that marks rows
(``UPDATE ... RETURNING``) leaves them as they were. Work outside that database (files, other
services) is not undone: a handler whose fetch has such side effects should not be peeked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import anyio

from novaconsole.engine.core import describe
from novaconsole.engine.handler import HandlerContext, SessionFactory, awaitable_method
from novaconsole.engine.registry import HandlerRegistration
from novaconsole.redaction import redact

REPR_LENGTH = 120
"""Characters of an item's repr shown."""


class PeekError(RuntimeError):
    """The handler's ``fetch_next`` failed (or returned something that is not a list)."""


@dataclass(frozen=True, slots=True)
class PeekedItem:
    """One item ``fetch_next`` returned: its id and a one-line repr, both redacted."""

    id: str
    repr: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "repr": self.repr}


@dataclass(frozen=True, slots=True)
class PeekResult:
    handler: str
    asked: int
    items: tuple[PeekedItem, ...]
    rolled_back: bool
    """True when the fetch ran in a transaction rolled back at the end (a database is
    configured); False without one (nothing to roll back)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "handler": self.handler,
            "asked": self.asked,
            "rolled_back": self.rolled_back,
            "items": [item.as_dict() for item in self.items],
        }


def one_line(value: Any, length: int = REPR_LENGTH) -> str:
    """``repr(value)`` redacted, on one line, cut to ``length`` characters."""
    try:
        text = repr(value)
    except Exception as error:  # a handler's __repr__ may raise: show that instead
        text = f"<repr failed: {describe(error)}>"
    text = redact(" ".join(text.split()))
    return text if len(text) <= length else text[: length - 1] + "…"


async def peek(
    registration: HandlerRegistration,
    limit: int,
    *,
    sessions: AbstractAsyncContextManager[SessionFactory] | None = None,
    fetch_timeout: float = 30.0,
) -> PeekResult:
    """Run ``fetch_next(limit)`` of a new instance of the handler, its sessions inside
    ``sessions`` (a transaction rolled back when it ends); the items, nothing processed."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    scope: AbstractAsyncContextManager[SessionFactory | None] = (
        sessions if sessions is not None else nullcontext(None)
    )
    async with scope as factory:
        ctx = HandlerContext(
            name=registration.name,
            purpose=registration.purpose,
            options=registration.options,
            session_factory=factory,
        )
        try:
            handler = registration.create(ctx)
            fetch_next = awaitable_method(handler, "fetch_next")
            if fetch_next is None:
                raise PeekError(f"{type(handler).__name__} has no fetch_next()")
            with anyio.fail_after(fetch_timeout):
                result = await fetch_next(limit)
        except PeekError:
            raise
        except TimeoutError:
            raise PeekError(f"fetch_next timed out after {fetch_timeout:g}s") from None
        except Exception as error:
            raise PeekError(f"fetch_next raised {describe(error)}") from error
        finally:
            with anyio.CancelScope(shield=True):
                await ctx.aclose()  # sessions closed before the transaction rolls back
    return PeekResult(
        registration.name, limit, _items(result, limit), rolled_back=sessions is not None
    )


def _items(result: Any, limit: int) -> tuple[PeekedItem, ...]:
    if result is None:
        return ()
    if isinstance(result, str | bytes) or not isinstance(result, Sequence):
        raise PeekError(
            f"fetch_next returned {type(result).__name__} {one_line(result, 60)}; "
            "it must return a list of items (or None)"
        )
    items = []
    for item in list(result)[:limit]:
        item_id = getattr(item, "id", None)
        if item_id is None and isinstance(item, Mapping):
            item_id = item.get("id")
        items.append(
            PeekedItem(redact(str(item_id)) if item_id is not None else "?", one_line(item))
        )
    return tuple(items)
