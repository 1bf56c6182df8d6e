"""The example handlers, one for each purpose, shipped so that ``novaconsole demo`` runs from
any install. Application code, not part of novaconsole's API: copy them into your own
``handlers/`` package rather than importing them. They import only public names of
``novaconsole``, as your handlers would.

- :mod:`.physical_deletion`: internal, removes soft-deleted tracks and their objects.
- :mod:`.catalog_import`: ingestion, imports queued staging batches into the catalogue.
- :mod:`.notification_export`: export, delivers an outbox to a webhook or a file.

The tables they work on are in :mod:`.domain`; the object store in :mod:`.storage`. Their
http(s) parts (URL batch sources, the webhook sink) need httpx, the ``demo`` extra.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, TypeVar

from pydantic import BaseModel

from novaconsole import HandlerContext

OptionsT = TypeVar("OptionsT", bound=BaseModel)


def options_of(ctx: HandlerContext, model: type[OptionsT]) -> OptionsT:
    """The handler's options as ``model``, whether the registry validated them or not."""
    options: Any = ctx.options
    if isinstance(options, model):
        return options
    if isinstance(options, BaseModel):
        options = options.model_dump()
    return model.model_validate(options or {})


HTTP_EXTRA = "pip install 'novaconsole[demo]'"
"""How to get httpx, which only the examples' http(s) sources and webhook sink need."""


def httpx_available() -> bool:
    """Whether httpx is installed (the ``demo`` extra)."""
    try:
        import httpx  # noqa: F401
    except ImportError:
        return False
    return True


def require_httpx(what: str) -> ModuleType:
    """The httpx module; ``ImportError`` naming ``what`` needs it and how to install it."""
    try:
        import httpx
    except ImportError:
        raise ImportError(f"{what} needs httpx: {HTTP_EXTRA}") from None
    return httpx
