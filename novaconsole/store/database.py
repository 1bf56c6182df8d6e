"""Database set-up: the async engine, SQLite pragmas and transactions, errors in one line.

SQLite connections run in WAL mode with a busy timeout, foreign keys on and
``synchronous=NORMAL``; every transaction SQLAlchemy begins is a ``BEGIN IMMEDIATE`` (the
recipe of SQLAlchemy's SQLite documentation: the driver's own BEGIN is switched off and the
``begin`` event emits ours), so a read-then-write transaction waits for the write lock instead
of failing with "database is locked". Connections from :func:`reader` begin ``DEFERRED``
(on PostgreSQL they run in autocommit).

On PostgreSQL a pooled connection of the store is pinged before it is handed out only when it
sat unused for :data:`PING_AFTER_IDLE` or longer. SQLAlchemy's ``pool_pre_ping`` pings at every
checkout: three round trips (``BEGIN``, an empty query, ``ROLLBACK``), half the transactions of
a busy worker. Handlers' sessions keep it (``ping_always``): a dead connection there would fail
an item's attempt, where the store retries what failed without charging anything.

PostgreSQL connections of the store get two server-side limits (``SET`` once per connection):
``lock_timeout`` (:data:`LOCK_TIMEOUT`), so that a statement waiting for a row lock fails
cleanly (a database fault: held and retried) instead of waiting until the client gives up;
and ``idle_in_transaction_session_timeout`` (:data:`IDLE_IN_TRANSACTION_TIMEOUT`), so that a
worker stopped (SIGSTOP, a frozen VM) inside one of the store's short transactions loses its
session, and with it the row locks that would block every other worker's claims. Handlers'
own sessions (``ctx.session()``) are on an engine without them (:func:`create_engine` with
``limits=False``): a handler may legitimately hold a transaction open across a slow call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from time import monotonic
from typing import Any, TypeVar

import anyio
import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DisconnectionError,
    NoSuchModuleError,
    SQLAlchemyError,
)
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from novaconsole.errors import ConfigError, driver_message
from novaconsole.redaction import mask_secrets

BUSY_TIMEOUT_MS = 5000
LOCK_TIMEOUT = 5.0
"""Seconds a statement of the store waits for a row lock on PostgreSQL before it fails (and
is retried): well under :data:`DB_CALL_TIMEOUT`, so the server ends the wait, not the client."""
IDLE_IN_TRANSACTION_TIMEOUT = 10.0
"""Seconds a store connection on PostgreSQL may sit idle inside a transaction before the
server ends its session (the store's transactions run statement after statement: only a
stopped or frozen process, or a handler blocking the event loop, leaves one idle)."""
PING_AFTER_IDLE = 1.0
"""Seconds a pooled PostgreSQL connection of the store may sit unused and still be handed out
without a ping. One used more recently than that is alive or, after a server restart or its
backend's termination, fails its first statement once: SQLAlchemy then replaces every
connection of the pool, and the store retries what failed."""
READ_CHUNK = 500
"""Item ids per ``IN (...)`` read."""
PRUNE_BATCH = 500
"""Rows deleted per short transaction when pruning (results, claims)."""
READ_ONLY = "novaconsole_read_only"
"""Execution option: transactions on such a connection begin DEFERRED (SQLite)."""

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def mask_url(url: str | URL) -> str:
    """``url`` with its password (and any ``password=`` query value) shown as ``***``."""
    raw = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    return mask_secrets(raw)


def parse_url(url: str) -> URL:
    """The URL, with a bare ``sqlite://``/``postgresql://`` given its async driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"cannot parse database URL {mask_url(url)!r}; expected e.g. "
            "sqlite+aiosqlite:///novaconsole.db",
            key="database.url",
        ) from None
    if parsed.drivername in _ASYNC_DRIVERS:
        parsed = parsed.set(drivername=_ASYNC_DRIVERS[parsed.drivername])
    elif parsed.drivername == "postgres":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed


def create_engine(
    url: str,
    *,
    limits: bool = True,
    lock_timeout: float = LOCK_TIMEOUT,
    idle_in_transaction_timeout: float = IDLE_IN_TRANSACTION_TIMEOUT,
    ping_always: bool = False,
) -> AsyncEngine:
    """An :class:`AsyncEngine` for ``url``. Connects to nothing; a bad URL or a missing
    driver is a :class:`ConfigError`. On PostgreSQL, with ``limits``, its connections get
    ``lock_timeout`` and ``idle_in_transaction_session_timeout`` (seconds; 0: none) and plan
    every statement with its parameters (``plan_cache_mode``); pooled connections are pinged
    at every checkout with ``ping_always``, else only after sitting unused for
    :data:`PING_AFTER_IDLE`."""
    parsed = parse_url(url)
    shown = mask_url(parsed)
    server = parsed.get_backend_name() != "sqlite"
    try:
        engine = create_async_engine(parsed, pool_pre_ping=server and ping_always)
    except (NoSuchModuleError, ImportError) as error:
        fix = "use sqlite+aiosqlite:// or postgresql+asyncpg://"
        if isinstance(error, ImportError) and error.name == "asyncpg":
            fix = "install it with: pip install 'novaconsole[postgres]'"
        raise ConfigError(
            f"no database driver for {shown!r} ({describe_database_error(error)}); {fix}",
            key="database.url",
        ) from None
    except (ArgumentError, SQLAlchemyError) as error:
        raise ConfigError(
            f"cannot use database {shown!r}: {describe_database_error(error, parsed)}",
            key="database.url",
        ) from None
    if not engine.dialect.is_async:
        raise ConfigError(
            f"database {shown!r} needs an async driver, e.g. sqlite+aiosqlite:// or "
            "postgresql+asyncpg://",
            key="database.url",
        )
    if parsed.get_backend_name() == "sqlite":
        _configure_sqlite(engine)
    else:
        if not ping_always:
            _ping_idle_connections(engine.sync_engine)
        if parsed.get_backend_name() == "postgresql" and limits:
            _limit_postgresql(engine.sync_engine, lock_timeout, idle_in_transaction_timeout)
    return engine


_IDLE_SINCE = "novaconsole_idle_since"


def _ping_idle_connections(sync_engine: Engine, after: float = PING_AFTER_IDLE) -> None:
    """Ping a pooled connection at checkout when it sat unused for ``after`` seconds or more;
    one that does not answer is replaced (the pool tries another)."""

    @event.listens_for(sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or monotonic() - since < after:
            return  # just connected, or used a moment ago
        try:
            sync_engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError(f"an idle connection did not answer: {error}") from error


def _limit_postgresql(sync_engine: Engine, lock_timeout: float, idle_timeout: float) -> None:
    # Every statement planned with its parameters: after five runs PostgreSQL plans a prepared
    # statement generically when that looks no dearer, which it does while the statistics say
    # a table is nearly empty (the claims and states tables grow from empty). The joins of a
    # batch against the claims then compared every claim with every key: renewing 500 leases
    # took 2.5 s with 20,000 claims and 5.2 s with 40,000; planned with its parameters, 33 ms.
    # Planning each of these few, large statements costs nothing measurable (B7).
    statements = [
        f"SET lock_timeout = {round(lock_timeout * 1000):d}",
        f"SET idle_in_transaction_session_timeout = {round(idle_timeout * 1000):d}",
        "SET plan_cache_mode = force_custom_plan",
    ]

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # In autocommit: a SET inside the driver's implicit transaction would be undone by the
        # pool's rollback (SQLAlchemy's recipe for per-connection settings).
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        cursor = dbapi_connection.cursor()
        try:
            for statement in statements:
                cursor.execute(statement)
        finally:
            cursor.close()
            dbapi_connection.autocommit = autocommit


def reader(engine: AsyncEngine) -> AsyncEngine:
    """The same engine (and pool) for read-only work. On SQLite its transactions begin
    DEFERRED. On PostgreSQL its statements run in autocommit: no ``BEGIN`` and ``ROLLBACK``
    round trips around a read, and under READ COMMITTED (the default) each statement sees a
    snapshot of its own either way."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(**{READ_ONLY: True}, isolation_level="AUTOCOMMIT")
    return engine.execution_options(**{READ_ONLY: True})


def _configure_sqlite(engine: AsyncEngine) -> None:
    configure_sqlite(engine.sync_engine)


def sync_sqlite_engine(engine: AsyncEngine) -> Engine | None:
    """A synchronous (pysqlite) engine on the same SQLite file, configured the same way, for
    work done in a thread; None when ``engine`` is not a SQLite file database."""
    if sqlite_file(engine) is None:
        return None
    sync_engine = sqlalchemy.create_engine(engine.url.set(drivername="sqlite+pysqlite"))
    configure_sqlite(sync_engine)
    return sync_engine


def configure_sqlite(sync_engine: Engine) -> None:
    """WAL, busy timeout, foreign keys, ``synchronous=NORMAL`` and ``BEGIN IMMEDIATE``."""

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # The driver must not BEGIN on its own: the "begin" listener below does.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")


def describe_database_error(error: BaseException, url: URL | None = None) -> str:
    """A short, single-line description of a database error, with no password in it."""
    message = driver_message(error) or type(getattr(error, "orig", None) or error).__name__
    if url is not None and url.password:
        message = message.replace(str(url.password), "***")
    return mask_url(message)


def connection_error(error: BaseException, engine: AsyncEngine) -> ConfigError:
    """The :class:`ConfigError` for a database that cannot be reached or used."""
    reason = describe_database_error(error, engine.url)
    shown = mask_url(engine.url)
    return ConfigError(f"cannot open database {shown!r}: {reason}", key="database.url")


DB_CALL_TIMEOUT = 30.0
"""Seconds one database operation of the store may take before it is given up."""

T = TypeVar("T")


async def uncancelled(call: Callable[[], Awaitable[T]], within: float = DB_CALL_TIMEOUT) -> T:
    """Run one database operation to its end even if the caller is cancelled meanwhile (the
    cancellation takes effect just after). A batch is then never abandoned mid-commit, and no
    connection is dropped mid-statement (aiosqlite would close it in a task that can outlive
    the event loop). Raises :class:`TimeoutError` after ``within`` seconds."""
    with anyio.CancelScope(shield=True) as scope:
        scope.deadline = anyio.current_time() + within
        return await call()
    raise TimeoutError(f"a database operation took longer than {within:.0f}s")


OPEN_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError, TimeoutError)
"""What connecting to an unusable database raises."""


def chunked(values: Sequence[T], size: int = READ_CHUNK) -> list[Sequence[T]]:
    """``values`` in slices of at most ``size`` (one ``IN (...)`` query each)."""
    return [values[start : start + size] for start in range(0, len(values), size)]


def sqlite_file(engine: AsyncEngine) -> Path | None:
    """The file of a SQLite database (``None``: in memory, a URI, or not SQLite)."""
    database = engine.url.database or ""
    if engine.dialect.name != "sqlite" or database in ("", ":memory:"):
        return None
    return None if database.startswith("file:") else Path(database)


@asynccontextmanager
async def engine_on(url: str, *, create: bool = False) -> AsyncIterator[AsyncEngine | None]:
    """An engine on ``url`` for one command, disposed of at the end; ``None`` for a SQLite
    file that does not exist, unless ``create`` (then its directory is made, and the file with
    the first connection). A database that cannot be reached or used is a
    :class:`ConfigError`."""
    engine = create_engine(url)
    path = sqlite_file(engine)
    if path is not None and not path.exists():
        if not create:
            await engine.dispose()
            yield None
            return
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield engine
    except OPEN_ERRORS as error:
        raise connection_error(error, engine) from None
    finally:
        await engine.dispose()
