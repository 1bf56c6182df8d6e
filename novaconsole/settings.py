"""Typed settings: ``config.toml``, overridden by ``NOVACONSOLE_*`` environment, then by CLI flags.

Every mistake a user can make here ends in a :class:`~novaconsole.errors.ConfigError` whose one
line names the file (or environment variable, or command line), the key and the problem.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    PrivateAttr,
    ValidationError,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from novaconsole import defaults
from novaconsole.durations import parse_duration
from novaconsole.engine.handler import HandlerPurpose
from novaconsole.errors import ConfigError

DEFAULT_CONFIG = Path("config.toml")
DEFAULT_DATABASE_URL = defaults.DATABASE_URL
ENV_PREFIX = "NOVACONSOLE_"

_NONE_WORDS = frozenset({"none", "off", "never", "unlimited"})


MAX_DURATION = timedelta(days=3650)
"""The longest duration a config key takes: longer ones are typos (``inf``, ``1e300``) and
would overflow the date arithmetic of leases and retention; ``"none"`` switches a limit off."""


def _duration(value: Any) -> timedelta:
    result = parse_duration(value)
    if result > MAX_DURATION:
        raise ValueError(f"{value!r} is too long (at most {MAX_DURATION.days} days)")
    return result


def _optional(value: Any) -> Any:
    """TOML has no null: ``"none"`` (or ``false``) switches an optional limit off."""
    if value is False or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
        return None
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError(f"must be longer than 0, got {value.total_seconds():g} s")
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
Timeout = Annotated[Duration, AfterValidator(_positive)]
OptionalDuration = Annotated[Duration | None, BeforeValidator(_optional)]
OptionalCount = Annotated[PositiveInt | None, BeforeValidator(_optional)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProcessingSettings(_Section):
    """``[processing]``: the poll loop, the queue and the workers."""

    poll_interval: Duration = defaults.POLL_INTERVAL
    startup_delay: Duration = defaults.STARTUP_DELAY
    max_concurrency: PositiveInt = defaults.MAX_CONCURRENCY
    queue_capacity: PositiveInt = defaults.QUEUE_CAPACITY
    item_timeout: Timeout = defaults.ITEM_TIMEOUT
    fetch_timeout: Timeout = defaults.FETCH_TIMEOUT
    lease_duration: Timeout = defaults.LEASE_DURATION
    shutdown_grace: Duration = defaults.SHUTDOWN_GRACE
    breaker_threshold: NonNegativeInt = defaults.BREAKER_THRESHOLD
    breaker_cooldown: Timeout = defaults.BREAKER_COOLDOWN
    breaker_max_cooldown: Timeout = defaults.BREAKER_MAX_COOLDOWN
    blocked_loop_warning: Duration = defaults.BLOCKED_LOOP_WARNING


class RetrySettings(_Section):
    """``[retry]``: exponential backoff with jitter."""

    max_attempts: PositiveInt = defaults.MAX_ATTEMPTS
    base_delay: Duration = defaults.RETRY_BASE_DELAY
    max_delay: Duration = defaults.RETRY_MAX_DELAY


class DatabaseSettings(_Section):
    """``[database]``: a SQLAlchemy async URL; ``shared``: whether several workers share its
    work (claims, heartbeats, fleet commands). Unset: yes on PostgreSQL, no on SQLite.
    ``auto_upgrade``: whether a worker upgrades an older schema at start (else it refuses and
    names ``novaconsole db upgrade``). Unset: yes on SQLite, no on PostgreSQL.
    ``connect_timeout``: how long a database that cannot be reached at start is retried
    before giving up."""

    url: str = Field(default=DEFAULT_DATABASE_URL, min_length=1)
    shared: bool | None = None
    auto_upgrade: bool | None = None
    connect_timeout: Duration = defaults.CONNECT_TIMEOUT


class StoreSettings(_Section):
    """``[store]``: how much result history the database keeps (``"none"``: no limit)."""

    keep_results_age: OptionalDuration = defaults.KEEP_RESULTS_AGE
    keep_results_count: OptionalCount = defaults.KEEP_RESULTS_COUNT


class MetricsSettings(_Section):
    """``[metrics]``: Prometheus ``/metrics`` served by this worker (``port`` unset: off;
    0: any free port, logged). Needs the ``metrics`` extra."""

    port: Annotated[int, Field(ge=0, le=65535)] | None = None
    host: str = Field(default="127.0.0.1", min_length=1)


class TracingSettings(_Section):
    """``[tracing]``: OpenTelemetry spans per fetch and per attempt when ``opentelemetry-api``
    is installed (the ``otel`` extra); ``enabled = false`` leaves them out even then."""

    enabled: bool = True


class ProcessSettings(_Section):
    """``[process]``: the novaconsole process itself (the CLI's, not the library's)."""

    tune_gc: bool = True
    """Freeze start-up's objects and collect young objects less often (see
    :mod:`novaconsole.gc_tuning`)."""


class HandlerSettings(_Section):
    """One ``[[handlers]]`` table."""

    name: str = Field(min_length=1)
    factory: str = Field(pattern=r"^[\w.]+:[\w.]+$")
    purpose: HandlerPurpose = HandlerPurpose(defaults.PURPOSE)
    max_items_per_cycle: PositiveInt = defaults.MAX_ITEMS_PER_CYCLE
    enabled: bool = True
    poll_interval: Duration | None = None
    item_timeout: Timeout | None = None
    max_attempts: PositiveInt | None = None
    breaker_threshold: NonNegativeInt | None = None
    breaker_cooldown: Timeout | None = None
    options: dict[str, Any] = Field(default_factory=dict)


_toml_layer: ContextVar[Mapping[str, Any] | None] = ContextVar("novaconsole_toml", default=None)
"""The parsed config file while :func:`load_settings` builds a :class:`Settings`."""


class _TomlSource(PydanticBaseSettingsSource):
    """The config file, already parsed by :func:`load_settings` (below the environment)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return (_toml_layer.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_toml_layer.get() or {})


class _EnvSource(PydanticBaseSettingsSource):
    """``NOVACONSOLE_*`` variables; ``NOVACONSOLE_HANDLERS__0__ENABLED=false`` changes one key
    of the file's first ``[[handlers]]`` table instead of replacing the whole list."""

    def __init__(self, settings_cls: type[BaseSettings], env: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self._env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._env.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        data = self._env()
        changes = data.get("handlers")
        if isinstance(changes, dict) and all(str(key).isdigit() for key in changes):
            data["handlers"] = _patch_handlers((_toml_layer.get() or {}).get("handlers"), changes)
        return data


def _patch_handlers(tables: Any, changes: Mapping[str, Any]) -> list[Any]:
    handlers = [dict(table) if isinstance(table, dict) else table for table in tables or []]
    for key, change in changes.items():
        index = int(key)
        variable = f"{ENV_PREFIX}HANDLERS__{index}"
        if index >= len(handlers) or not isinstance(change, dict):
            raise ConfigError(
                f"there is no handlers[{index}] in the config file ({len(handlers)} handlers)",
                source=f"environment {variable}__...",
                key=f"handlers[{index}]",
            )
        table = handlers[index]
        if isinstance(table, dict):
            options = change.get("options")
            if isinstance(options, dict) and isinstance(table.get("options"), dict):
                change = {**change, "options": {**table["options"], **options}}
            handlers[index] = {**table, **change}
    return handlers


class Settings(BaseSettings):
    """Everything ``config.toml`` can say. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    processing: ProcessingSettings = ProcessingSettings()
    retry: RetrySettings = RetrySettings()
    database: DatabaseSettings = DatabaseSettings()
    store: StoreSettings = StoreSettings()
    metrics: MetricsSettings = MetricsSettings()
    tracing: TracingSettings = TracingSettings()
    process: ProcessSettings = ProcessSettings()
    handlers: list[HandlerSettings] = Field(default_factory=list)

    _source: Path | None = PrivateAttr(default=None)
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: CLI flags (init kwargs) > NOVACONSOLE_* environment > config file.
        return init_settings, _EnvSource(settings_cls, env_settings), _TomlSource(settings_cls)

    @property
    def source(self) -> Path | None:
        """The config file these settings were read from, if any."""
        return self._source

    @property
    def base_dir(self) -> Path:
        """The config file's directory (the working directory without one): the app dir."""
        return self._base_dir

    @property
    def source_label(self) -> str:
        """How messages name the config file."""
        return str(self._source) if self._source is not None else str(DEFAULT_CONFIG)


def load_settings(path: Path | None, *, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read ``path`` (default ``./config.toml``, optional), the environment and ``overrides``.

    ``overrides`` (CLI flags) is nested (``{"database": {"url": ...}}``) or dotted
    (``{"processing.max_concurrency": 4}``). Raises :class:`ConfigError` for any mistake.
    """
    explicit = path is not None
    path = Path(path) if path is not None else DEFAULT_CONFIG
    label = str(path)
    if path.is_file():
        source: Path | None = path
        base_dir = path.resolve().parent
        data = _read_toml(path, label)
    elif explicit:
        raise ConfigError("is a directory" if path.is_dir() else "no such file", source=label)
    else:
        source, base_dir, data = None, Path.cwd(), {}
    data = _with_resolved_database(data, base_dir)
    init = _nest(overrides or {})
    token = _toml_layer.set(data)
    try:
        settings = Settings(**init)
    except ValidationError as error:
        raise _config_error(error, label, init) from None
    finally:
        _toml_layer.reset(token)
    settings._source = source
    settings._base_dir = base_dir
    _check_unique_names(settings, label)
    _check_sqlite_directory(settings.database.url, label, init)
    return settings


def _read_toml(path: Path, label: str) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"invalid TOML: {error}", source=label) from None
    except OSError as error:
        raise ConfigError(f"cannot read: {error.strerror or error}", source=label) from None


_SQLITE_URL = re.compile(r"^(?P<scheme>sqlite(?:\+\w+)?):///(?P<path>[^?]*)(?P<query>\?.*)?$")


def resolve_sqlite_url(url: str, base_dir: Path) -> str:
    """A relative SQLite file path made absolute against ``base_dir``; other URLs unchanged."""
    match = _SQLITE_URL.match(url)
    if match is None:
        return url
    file = match["path"]
    if not file or file == ":memory:" or file.startswith("file:") or Path(file).is_absolute():
        return url
    return f"{match['scheme']}:///{(base_dir / file).as_posix()}{match['query'] or ''}"


def _with_resolved_database(data: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """The file's (or the default) database URL, relative SQLite paths against ``base_dir``."""
    database = data.get("database")
    if database is not None and not isinstance(database, dict):
        return data  # validation reports the wrong type
    database = dict(database or {})
    url = database.get("url", DEFAULT_DATABASE_URL)
    if isinstance(url, str):
        database["url"] = resolve_sqlite_url(url, base_dir)
    return {**data, "database": database}


def _check_sqlite_directory(url: str, label: str, init: Mapping[str, Any]) -> None:
    """A SQLite file is created on first use, its directory never: a typo in the path is
    one clear error, not a new directory tree."""
    match = _SQLITE_URL.match(url)
    if match is None:
        return
    file = match["path"]
    if not file or file == ":memory:" or file.startswith("file:"):
        return
    directory = Path(file).parent
    if not directory.is_dir():
        loc = ("database", "url")
        raise ConfigError(
            f"the SQLite file's directory {directory} does not exist; create it or fix the path",
            source=_origin(loc, label, init),
            key=_key(loc),
        )


def check_option_keys(
    model: type[BaseModel], options: Mapping[str, Any], *, label: str, index: int
) -> None:
    """Refuse ``[handlers.options]`` keys that ``model`` does not declare.

    Pydantic ignores unknown keys by default, which hides typos; so they are errors here
    unless the model says ``extra="allow"`` (it then takes free keys on purpose).
    ``extra="forbid"`` models get the same one-line error.
    """
    if model.model_config.get("extra") == "allow":
        return
    known: set[str] = set()
    for name, field in model.model_fields.items():
        known.add(name)
        for alias in (field.alias, field.validation_alias):
            if isinstance(alias, str):
                known.add(alias)
            elif alias is not None and hasattr(alias, "choices"):
                known.update(choice for choice in alias.choices if isinstance(choice, str))
    unknown = sorted(str(key) for key in options if key not in known)
    if unknown:
        loc = ("handlers", index, "options", unknown[0])
        takes = ", ".join(sorted(model.model_fields)) or "no options"
        raise ConfigError(
            f"unknown key (the handler's {model.__name__} takes: {takes})",
            source=_origin(loc, label, {}),
            key=_key(loc),
        )


def _nest(overrides: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        target = nested
        for part in parents:
            target = target.setdefault(part, {})
        if isinstance(value, Mapping) and isinstance(target.get(leaf), dict):
            target[leaf].update(_nest(value))
        else:
            target[leaf] = _nest(value) if isinstance(value, Mapping) else value
    return nested


def _key(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _config_error(error: ValidationError, label: str, init: Mapping[str, Any]) -> ConfigError:
    first = error.errors()[0]
    # Pydantic adds validator and union-branch tags (``handlers.0.poll_interval.timedelta``).
    loc = tuple(part for part in first["loc"] if not _is_tag(part))
    message = str(first["msg"]).removeprefix("Value error, ")
    kind = first["type"]
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "required key is missing"
    elif kind in ("model_type", "dict_type"):
        message = f"expected a table, got {first['input']!r}"
    elif kind == "string_pattern_mismatch" and loc and loc[-1] == "factory":
        message = f"expected 'module:attribute', got {first['input']!r}"
    elif kind == "value_error":
        pass  # our own validators' messages already show the value
    else:
        message = f"{message[:1].lower()}{message[1:]} (got {first.get('input')!r})"
    return ConfigError(message, source=_origin(loc, label, init), key=_key(loc))


def _is_tag(part: int | str) -> bool:
    return isinstance(part, str) and (
        part.startswith("function-") or part in ("timedelta", "int", "constrained-int")
    )


def _origin(loc: tuple[int | str, ...], label: str, init: Mapping[str, Any]) -> str:
    """Where the bad value came from: the command line, an environment variable or the file."""
    node: Any = init
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            break
        node = node[part]
    else:
        return "command line"
    names = {name.upper() for name in os.environ}
    for depth in range(len(loc), 0, -1):
        env = ENV_PREFIX + "__".join(str(part) for part in loc[:depth]).upper()
        if env in names:
            return f"environment {env}"
    return label


def _check_unique_names(settings: Settings, label: str) -> None:
    seen: dict[str, int] = {}
    for index, handler in enumerate(settings.handlers):
        if handler.name in seen:
            raise ConfigError(
                f"duplicate handler name {handler.name!r} (also handlers[{seen[handler.name]}])",
                source=label,
                key=f"handlers[{index}].name",
            )
        seen[handler.name] = index
