"""A registered handler and the processing options, as the engine runs them (built by
:mod:`novaconsole.builder`)."""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from novaconsole import defaults
from novaconsole.engine.handler import Handler, HandlerContext, HandlerPurpose
from novaconsole.errors import ConfigError

if TYPE_CHECKING:
    pass

HandlerFactory = Callable[..., Handler]
_DEFAULT_PURPOSE = HandlerPurpose(defaults.PURPOSE)


@dataclass(frozen=True, slots=True)
class ProcessingOptions:
    """The ``[processing]`` keys, resolved."""

    poll_interval: timedelta = defaults.POLL_INTERVAL
    startup_delay: timedelta = defaults.STARTUP_DELAY
    max_concurrency: int = defaults.MAX_CONCURRENCY
    queue_capacity: int = defaults.QUEUE_CAPACITY
    item_timeout: timedelta = defaults.ITEM_TIMEOUT
    fetch_timeout: timedelta = defaults.FETCH_TIMEOUT
    lease_duration: timedelta = defaults.LEASE_DURATION
    shutdown_grace: timedelta = defaults.SHUTDOWN_GRACE
    breaker_threshold: int = defaults.BREAKER_THRESHOLD
    breaker_cooldown: timedelta = defaults.BREAKER_COOLDOWN
    breaker_max_cooldown: timedelta = defaults.BREAKER_MAX_COOLDOWN
    blocked_loop_warning: timedelta = defaults.BLOCKED_LOOP_WARNING
    """Warn when the event loop has not run for this long (a blocking handler); 0: never."""


@dataclass(frozen=True, slots=True)
class HandlerRegistration:
    """One registered handler and its per-handler settings (``None``: the service default)."""

    name: str
    factory: HandlerFactory
    purpose: HandlerPurpose = _DEFAULT_PURPOSE
    max_items_per_cycle: int = defaults.MAX_ITEMS_PER_CYCLE
    enabled: bool = True
    poll_interval: timedelta | None = None
    item_timeout: timedelta | None = None
    max_attempts: int | None = None
    options: Any = None
    breaker_threshold: int | None = None
    breaker_cooldown: timedelta | None = None

    def create(self, ctx: HandlerContext) -> Handler:
        """A new handler instance for one scope."""
        if _takes_context(self.factory):
            return self.factory(ctx)
        return self.factory()


def _takes_context(factory: Callable[..., Any]) -> bool:
    """Whether ``factory`` takes the context, read once per factory (a handler is created for
    every fetch, and ``inspect.signature`` of a class is dear)."""
    try:
        known = _TAKES_CONTEXT.get(factory)
    except TypeError:  # unhashable
        return _reads_context(factory)
    if known is None:
        known = _TAKES_CONTEXT[factory] = _reads_context(factory)
    return known


_TAKES_CONTEXT: weakref.WeakKeyDictionary[Callable[..., Any], bool] = weakref.WeakKeyDictionary()


def _reads_context(factory: Callable[..., Any]) -> bool:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return True
    params = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return bool(params)


def validate_options(factory: Callable[..., Any], name: str, options: Any) -> Any:
    """Options checked against the factory's ``Options`` model, if it has one."""
    model = getattr(factory, "Options", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return dict(options or {}) if not isinstance(options, BaseModel) else options
    if isinstance(options, model):
        return options
    raw = options.model_dump() if isinstance(options, BaseModel) else dict(options or {})
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "options"
        raise ConfigError(
            f"{first['msg']} (got {first.get('input')!r})"
            if where == "options"
            else f"{where}: {first['msg']}",
            key=f"handlers.{name}.options",
        ) from None
