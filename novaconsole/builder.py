"""Wiring settings, handlers, the engine and the store into a service.

``BackgroundProcessing`` collects handlers and options (from code or from the settings) and
``build()`` makes the :class:`~novaconsole.engine.service.ProcessingService`, opening the store
for a database URL: the one place that knows all three layers (as procrastinate's ``App``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel

from novaconsole import defaults
from novaconsole.durations import Duration, DurationLike, parse_duration
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
    from novaconsole.engine.persistence import StateStore
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
        poll_interval: DurationLike = defaults.POLL_INTERVAL,
        startup_delay: DurationLike = defaults.STARTUP_DELAY,
        max_concurrency: int = defaults.MAX_CONCURRENCY,
        queue_capacity: int = defaults.QUEUE_CAPACITY,
        item_timeout: DurationLike = defaults.ITEM_TIMEOUT,
        fetch_timeout: DurationLike = defaults.FETCH_TIMEOUT,
        lease_duration: DurationLike = defaults.LEASE_DURATION,
        shutdown_grace: DurationLike = defaults.SHUTDOWN_GRACE,
        blocked_loop_warning: DurationLike = defaults.BLOCKED_LOOP_WARNING,
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
            blocked_loop_warning=_duration("blocked_loop_warning", blocked_loop_warning),
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
            blocked_loop_warning=p.blocked_loop_warning,
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
            "auto_upgrade": settings.database.auto_upgrade,
        }
        for registration in load_handlers(settings):
            builder.add_registration(registration)
        return builder

    def add_handler(
        self,
        factory: HandlerFactory,
        *,
        name: str | None = None,
        max_items_per_cycle: int | None = None,
        purpose: HandlerPurpose | str | None = None,
        enabled: bool = True,
        poll_interval: Duration | None = None,
        item_timeout: Duration | None = None,
        max_attempts: int | None = None,
        options: Mapping[str, Any] | BaseModel | None = None,
    ) -> Self:
        """Register a handler.

        ``purpose``, ``max_items_per_cycle``, ``poll_interval``, ``item_timeout`` and
        ``max_attempts`` may also be declared on the handler class (``max_attempts = 5``); a
        keyword given here overrides the class's value, and a key in ``[[handlers]]``
        overrides both.

        Args:
            factory: The handler class (or any callable returning a handler), called once per
                fetch with a ``HandlerContext`` if it takes an argument, else with none.
            name: The handler's name in the console, logs and store; the factory's
                ``__name__`` if not given. Unique per service.
            max_items_per_cycle: Items asked of ``fetch_next`` per fetch (its batch size);
                default 10.
            purpose: ``"ingestion"``, ``"internal"`` (default) or ``"export"``: what the
                handler is for; the console filters by it.
            enabled: False registers the handler without ever fetching from it.
            poll_interval: Time between the end of one batch and the next fetch; the
                service's ``poll_interval`` if not given.
            item_timeout: Longest a ``process`` call may run before it is cancelled (a
                failed, retried attempt); the service's ``item_timeout`` if not given.
            max_attempts: Attempts per item before it fails for good and ``on_failure`` runs;
                the retry policy's ``max_attempts`` if not given.
            options: The handler's options (``ctx.options``), validated by the factory's
                ``Options`` pydantic model when it has one.
        """
        return self.add_registration(
            _registration(
                factory,
                name=name or getattr(factory, "__name__", None) or repr(factory),
                key=None,
                purpose=purpose,
                max_items_per_cycle=max_items_per_cycle,
                enabled=enabled,
                poll_interval=poll_interval,
                item_timeout=item_timeout,
                max_attempts=max_attempts,
                options=options,
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
        model = getattr(factory, "Options", None)
        if isinstance(model, type) and issubclass(model, BaseModel):
            from novaconsole.settings import check_option_keys

            check_option_keys(model, handler.options, label=label, index=index)
        given = {field: getattr(handler, field) for field in _CLASS_KEYS & handler.model_fields_set}
        try:
            registrations.append(
                _registration(
                    factory,
                    name=handler.name,
                    key=key,
                    enabled=handler.enabled,
                    options=handler.options,
                    shown=repr(handler.factory),
                    **given,
                )
            )
        except ConfigError as error:
            raise ConfigError(error.message, source=label, key=error.key) from None
    return registrations


_CLASS_KEYS = frozenset(
    {"purpose", "max_items_per_cycle", "poll_interval", "item_timeout", "max_attempts"}
)
"""Registration settings a handler class may declare as class attributes."""


def _registration(
    factory: HandlerFactory,
    *,
    name: str,
    key: str | None,
    enabled: bool = True,
    options: Mapping[str, Any] | BaseModel | None = None,
    shown: str | None = None,
    **given: Any,
) -> HandlerRegistration:
    """A checked registration: each of :data:`_CLASS_KEYS` from ``given`` if there (not
    None), else from the factory's class attribute, else the default. ``key`` names the
    config table in errors (``handlers[0]``); None for code (``handlers.<name>``); ``shown``
    the factory in errors (its ``module:attribute`` reference from a config)."""
    key = key or f"handlers.{name}"
    for method in ("fetch_next", "process"):
        if not callable(getattr(factory, method, None)):
            raise ConfigError(
                f"{shown or repr(factory)} is not a handler: it has no {method}()",
                key=f"{key}.factory",
            )

    def pick(field: str) -> Any:
        value = given.get(field)
        return value if value is not None else getattr(factory, field, None)

    batch = pick("max_items_per_cycle")
    batch = defaults.MAX_ITEMS_PER_CYCLE if batch is None else batch
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ConfigError(
            f"must be an integer of at least 1, got {batch!r}", key=f"{key}.max_items_per_cycle"
        )
    attempts = pick("max_attempts")
    if attempts is not None and (
        not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1
    ):
        raise ConfigError(
            f"must be an integer of at least 1, got {attempts!r}", key=f"{key}.max_attempts"
        )
    purpose = pick("purpose")
    purpose = defaults.PURPOSE if purpose is None else purpose
    try:
        resolved_purpose = HandlerPurpose(purpose)
    except ValueError:
        choices = ", ".join(HandlerPurpose.choices())
        raise ConfigError(
            f"unknown purpose {purpose!r}; use one of {choices}", key=f"{key}.purpose"
        ) from None
    try:
        checked_options = validate_options(factory, name, options)
    except ConfigError as error:
        raise ConfigError(error.message, key=f"{key}.options") from None
    return HandlerRegistration(
        name=name,
        factory=factory,
        purpose=resolved_purpose,
        max_items_per_cycle=batch,
        enabled=enabled,
        poll_interval=_duration(f"{key}.poll_interval", pick("poll_interval")),
        item_timeout=_duration(f"{key}.item_timeout", pick("item_timeout")),
        max_attempts=attempts,
        options=checked_options,
    )


def _check_count(value: Any, key: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"must be at least 1, got {value!r}", key=key)


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
