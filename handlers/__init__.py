"""The application's own handlers: one example for each purpose.

- :mod:`handlers.physical_deletion`: internal, removes soft-deleted tracks and their objects.
- :mod:`handlers.catalog_import`: ingestion, imports queued staging batches into the catalogue.
- :mod:`handlers.notification_export`: export, delivers an outbox to a webhook or a file.

The tables they work on are in :mod:`handlers.domain`; the object store in
:mod:`handlers.storage`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator

from novaconsole.durations import parse_duration
from novaconsole.engine.handler import HandlerContext

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A pydantic field accepting ``"00:05:00"``, ``"PT5M"``, seconds or a timedelta."""

OptionsT = TypeVar("OptionsT", bound=BaseModel)


def options_of(ctx: HandlerContext, model: type[OptionsT]) -> OptionsT:
    """The handler's options as ``model``, whether the registry validated them or not."""
    options: Any = ctx.options
    if isinstance(options, model):
        return options
    if isinstance(options, BaseModel):
        options = options.model_dump()
    return model.model_validate(options or {})
