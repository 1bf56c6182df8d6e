"""What ``fetch_next`` returned, made safe to admit: the engine trusts nothing about it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from novaconsole.engine.core import log_extra
from novaconsole.engine.outcomes import shown_id
from novaconsole.engine.runtime import HandlerRuntime
from novaconsole.redaction import redact

log = logging.getLogger("novaconsole.engine")

Batched = tuple[str, Any, Any]
"""One item a fetch returned: its key (``str(id)``), its id and the item itself."""

_MISSING = object()
_SHOWN = 80
"""Characters of a handler's return value quoted in an error."""


def checked_batch(rt: HandlerRuntime, result: Any, asked: int) -> list[Batched]:
    """What ``fetch_next`` returned, made safe to admit: at most ``asked`` items, each with a
    str, int or UUID id, each id once. A return value of the wrong shape is a ``TypeError``."""
    if result is None:
        return []
    if isinstance(result, str | bytes) or not isinstance(result, Sequence):
        raise TypeError(
            f"fetch_next of {rt.name} returned {type(result).__name__} "
            f"{_quote(result)}; it must return a list of items (or None)"
        )
    if len(result) > asked:
        if not rt.surplus_warned:
            rt.surplus_warned = True
            log.warning(
                "fetch_next of %s returned %d items when asked for %d: the first %d are taken, "
                "the rest stay at their source (said once)",
                rt.name,
                len(result),
                asked,
                asked,
                extra=log_extra(rt.name),
            )
        result = result[:asked]
    batch: list[Batched] = []
    seen: set[str] = set()
    refused: list[Any] = []
    duplicates: list[str] = []
    for item in result:
        item_id = getattr(item, "id", _MISSING)
        if item_id is _MISSING:
            if isinstance(item, Mapping) and "id" in item:
                item_id = item["id"]
            else:
                raise TypeError(
                    f"fetch_next of {rt.name} returned {_quote(item)}, which has no id "
                    '(an object with an "id" attribute or a mapping with an "id" key)'
                )
        kind = type(item_id)
        if (kind is not str and kind is not int) and (
            kind is bool or not isinstance(item_id, str | int | UUID)
        ):
            refused.append(item_id)
            continue
        key = str(item_id)
        if key in seen:
            duplicates.append(key)
            continue
        seen.add(key)
        batch.append((key, item_id, item))
    if refused:
        first = refused[0]
        message = (
            f"fetch_next of {rt.name} returned {len(refused)} items whose id is not a str, int "
            f"or UUID (e.g. {_quote(first)} of type {type(first).__name__}): they are not "
            "processed"
        )
        log.error("%s", message, extra=log_extra(rt.name))
        rt.last_error = message
    if duplicates:
        log.warning(
            "fetch_next of %s returned %d duplicate ids in one batch (e.g. %s): "
            "each item is processed once",
            rt.name,
            len(duplicates),
            shown_id(duplicates[0]),
            extra=log_extra(rt.name),
        )
    return batch


def _quote(value: Any) -> str:
    text = redact(repr(value))
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
