"""Wiring settings, handlers, the engine and the store into a service.

``BackgroundProcessing`` collects handlers and options (from code or from the settings) and
``build()`` makes the :class:`~novaconsole.engine.service.ProcessingService`, opening the store
for a database URL: the one place that knows all three layers (as procrastinate's ``App``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel

from novaconsole.durations import DurationLike, parse_duration
from novaconsole.engine.handler import HandlerPurpose
from novaconsole.engine.registry import (
    HandlerFactory,
    HandlerRegistration,
    ProcessingOptions,
    validate_options,
)
from novaconsole.engine.retry import RetryPolicy
from novaconsole.engine.service import ProcessingService
from novaconsole.errors import ConfigError

if TYPE_CHECKING:
    from novaconsole.engine.observers import Observer
    from novaconsole.engine.state import StateStore
    from novaconsole.settings import Settings


class BackgroundProcessing:
    """Collects handlers and processing options, then builds the service.

    >>> processing = BackgroundProcessing(poll_interval=timedelta(minutes=5)).add_handler(
    ...     PingHandler, name="Ping", max_items_per_cycle=10, purpose=HandlerPurpose.INTERNAL)
    >>> service = processing.build(database_url="sqlite+aiosqlite:///novaconsole.db")
    """

    def __init__(
        self,
        *,
        poll_interval: DurationLike = timedelta(minutes=5),
        startup_delay: DurationLike = timedelta(0),
        max_concurrency: int = 8,
        queue_capacity: int = 1000,
        item_timeout: DurationLike = timedelta(seconds=30),
        fetch_timeout: DurationLike = timedelta(seconds=30),
        lease_duration: DurationLike = timedelta(minutes=1),
        shutdown_grace: DurationLike = timedelta(seconds=30),
        retry: RetryPolicy | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ConfigError(f"must be at least 1, got {max_concurrency}", key="max_concurrency")
        if queue_capacity < 1:
            raise ConfigError(f"must be at least 1, got {queue_capacity}", key="queue_capacity")
        self.options = ProcessingOptions(
            poll_interval=_duration("poll_interval", poll_interval),
            startup_delay=_duration("startup_delay", startup_delay),
            max_concurrency=max_concurrency,
            queue_capacity=queue_capacity,
            item_timeout=_duration("item_timeout", item_timeout),
            fetch_timeout=_duration("fetch_timeout", fetch_timeout),
            lease_duration=_duration("lease_duration", lease_duration),
            shutdown_grace=_duration("shutdown_grace", shutdown_grace),
        )
        self.retry = retry or RetryPolicy()
        self.store_options: dict[str, Any] = {}
        """Keyword arguments for the store made by :meth:`build` (the ``[store]`` keys)."""
        self._registrations: dict[str, HandlerRegistration] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """A builder with the ``[processing]`` and ``[retry]`` keys and every ``[[handlers]]``."""
        p = settings.processing
        builder = cls(
            poll_interval=p.poll_interval,
            startup_delay=p.startup_delay,
            max_concurrency=p.max_concurrency,
            queue_capacity=p.queue_capacity,
            item_timeout=p.item_timeout,
            fetch_timeout=p.fetch_timeout,
            lease_duration=p.lease_duration,
            shutdown_grace=p.shutdown_grace,
            retry=RetryPolicy(
                max_attempts=settings.retry.max_attempts,
                base_delay=settings.retry.base_delay,
                max_delay=settings.retry.max_delay,
            ),
        )
        builder.store_options = {
            "keep_results_age": settings.store.keep_results_age,
            "keep_results_count": settings.store.keep_results_count,
            "shared": settings.database.shared,
        }
        if settings.database.connect_timeout is not None:
            builder.store_options["connect_timeout"] = (
                settings.database.connect_timeout.total_seconds()
            )
        for registration in load_handlers(settings):
            builder.add_registration(registration)
        return builder

    def add_handler(
        self,
        factory: HandlerFactory,
        *,
        name: str | None = None,
        max_items_per_cycle: int = 10,
        purpose: HandlerPurpose | str = HandlerPurpose.INTERNAL,
        enabled: bool = True,
        poll_interval: DurationLike | None = None,
        item_timeout: DurationLike | None = None,
        max_attempts: int | None = None,
        options: Mapping[str, Any] | BaseModel | None = None,
    ) -> Self:
        """Register a handler factory (a class taking a ``HandlerContext``, or none)."""
        name = name or getattr(factory, "__name__", None) or repr(factory)
        key = f"handlers.{name}"
        if max_items_per_cycle < 1:
            raise ConfigError(
                f"must be at least 1, got {max_items_per_cycle}", key=f"{key}.max_items_per_cycle"
            )
        if max_attempts is not None and max_attempts < 1:
            raise ConfigError(f"must be at least 1, got {max_attempts}", key=f"{key}.max_attempts")
        try:
            resolved_purpose = HandlerPurpose(purpose)
        except ValueError:
            choices = ", ".join(p.value for p in HandlerPurpose)
            raise ConfigError(
                f"unknown purpose {purpose!r}; use one of {choices}", key=f"{key}.purpose"
            ) from None
        for method in ("fetch_next", "process"):
            if not callable(getattr(factory, method, None)):
                raise ConfigError(
                    f"{factory!r} is not a handler: it has no {method}()", key=f"{key}.factory"
                )
        return self.add_registration(
            HandlerRegistration(
                name=name,
                factory=factory,
                purpose=resolved_purpose,
                max_items_per_cycle=max_items_per_cycle,
                enabled=enabled,
                poll_interval=_duration(f"{key}.poll_interval", poll_interval),
                item_timeout=_duration(f"{key}.item_timeout", item_timeout),
                max_attempts=max_attempts,
                options=validate_options(factory, name, options),
            )
        )

    def add_registration(self, registration: HandlerRegistration) -> Self:
        if registration.name in self._registrations:
            raise ConfigError(
                f"a handler named {registration.name!r} is already registered",
                key=f"handlers.{registration.name}",
            )
        self._registrations[registration.name] = registration
        return self

    @property
    def registrations(self) -> tuple[HandlerRegistration, ...]:
        return tuple(self._registrations.values())

    def handlers(self, purpose: HandlerPurpose | str | None = None) -> list[str]:
        """Names of the registered handlers, optionally only those of one purpose."""
        wanted = HandlerPurpose(purpose) if purpose is not None else None
        return [r.name for r in self._registrations.values() if wanted in (None, r.purpose)]

    def build(
        self,
        database_url: str | None = None,
        *,
        store: StateStore | None = None,
        worker_id: str | None = None,
        observers: Sequence[Observer] = (),
    ) -> ProcessingService:
        """The service. With ``database_url`` (or a ``store``) everything is persisted there;
        with neither, state lives in memory and nothing survives the process. ``observers``
        get the engine's hooks (:class:`~novaconsole.engine.observers.Observer`)."""
        if store is None and database_url is not None:
            from novaconsole.store import open_store

            store = open_store(database_url, **self.store_options)
        session_factory = getattr(store, "session_factory", None)
        return ProcessingService(
            options=self.options,
            retry=self.retry,
            registrations=self.registrations,
            store=store,
            session_factory=session_factory,
            database_url=database_url,
            worker_id=worker_id,
            observers=observers,
        )


def load_handlers(settings: Settings) -> list[HandlerRegistration]:
    """Import every ``[[handlers]]`` factory (the config file's directory first on ``sys.path``,
    as uvicorn's ``--app-dir``) and validate its options."""
    app_dir = str(settings.base_dir)
    if not sys.path or sys.path[0] != app_dir:
        sys.path.insert(0, app_dir)
    importlib.invalidate_caches()
    label = settings.source_label
    registrations = []
    for index, handler in enumerate(settings.handlers):
        key = f"handlers[{index}]"
        factory = _import_factory(handler.factory, label, f"{key}.factory")
        try:
            options = validate_options(factory, handler.name, handler.options)
        except ConfigError as error:
            raise ConfigError(error.message, source=label, key=f"{key}.options") from None
        registrations.append(
            HandlerRegistration(
                name=handler.name,
                factory=factory,
                purpose=handler.purpose,
                max_items_per_cycle=handler.max_items_per_cycle,
                enabled=handler.enabled,
                poll_interval=handler.poll_interval,
                item_timeout=handler.item_timeout,
                max_attempts=handler.max_attempts,
                options=options,
            )
        )
    return registrations


def _import_factory(reference: str, label: str, key: str) -> Any:
    module_name, _, attribute = reference.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as error:  # the user's module: any failure is a config problem
        raise ConfigError(
            f"cannot import {module_name!r}: {_describe(error)}", source=label, key=key
        ) from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(
                f"module {module_name!r} has no attribute {attribute!r}", source=label, key=key
            ) from None
    if not callable(target):
        raise ConfigError(
            f"{reference!r} is not a handler: expected a class (or factory), got "
            f"{type(target).__name__}",
            source=label,
            key=key,
        )
    for method in ("fetch_next", "process"):
        if not callable(getattr(target, method, None)):
            raise ConfigError(
                f"{reference!r} is not a handler: it has no {method}()", source=label, key=key
            )
    return target


def _describe(error: BaseException) -> str:
    if isinstance(error, ModuleNotFoundError | ImportError):
        return str(error)
    if isinstance(error, SyntaxError):
        return f"SyntaxError: {error.msg} ({error.filename}, line {error.lineno})"
    return f"{type(error).__name__}: {error}".replace("\n", " ")


def _duration(key: str, value: DurationLike | None) -> Any:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as error:
        raise ConfigError(str(error), key=key) from None
