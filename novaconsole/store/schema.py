"""The store's schema, versioned with Alembic (``novaconsole db upgrade|current|sql``).

The revisions ship in ``novaconsole/store/migrations/versions`` (file ``0002_...py`` is
revision ``"0002"``) and are recorded in their own version table,
:data:`~novaconsole.store.models.VERSION_TABLE`, beside any Alembic history of the application.
A database written before Alembic has only ``novaconsole_meta.schema_version`` (1 or 2): it is
adopted, i.e. stamped with that revision, then upgraded like any other. One at the latest
revision needs no change of its tables: it is stamped at start-up whatever ``auto_upgrade``.

A worker starting on a current schema reads one row and imports no Alembic. An empty database
gets the schema. An older schema is upgraded only with ``auto_upgrade`` (default: on for
SQLite, off for PostgreSQL, where an operator decides); a newer one is always refused.
"""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, MetaData, String, Table, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from novaconsole.errors import ConfigError
from novaconsole.store.database import (
    OPEN_ERRORS,
    connection_error,
    engine_on,
    mask_url,
    parse_url,
    reader,
    sqlite_file,
)
from novaconsole.store.models import VERSION_TABLE, meta

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
_SCHEMA_LOCK_KEY = 0x6E6F7661  # pg_advisory_xact_lock key: one upgrade at a time

_versions = Table(VERSION_TABLE, MetaData(), Column("version_num", String(32), primary_key=True))


# Alembic narrates its set-up and each step at info level ("setup plugin ...", "Running
# upgrade ..."); novaconsole says in one line what changed, so its lines stay out of the logs.
logging.getLogger("alembic").setLevel(logging.WARNING)


@functools.cache
def revisions() -> tuple[str, ...]:
    """The revisions this novaconsole ships, oldest first (from the file names, so that a
    start-up on a current schema needs no Alembic)."""
    files = (MIGRATIONS / "versions").glob("[0-9]*_*.py")
    return tuple(sorted(path.name.split("_", 1)[0] for path in files))


def head() -> str:
    """The revision this novaconsole writes."""
    return revisions()[-1]


@dataclass(frozen=True, slots=True)
class SchemaState:
    """Where a database's schema stands against this novaconsole's."""

    revision: str | None
    """Its revision (``None``: no novaconsole tables)."""
    head: str
    legacy: bool = False
    """Read from ``novaconsole_meta``: written before Alembic, not stamped yet."""

    @property
    def status(self) -> str:
        """``empty``, ``current``, ``unstamped`` (current, written before Alembic), ``older``
        or ``newer`` (than this novaconsole)."""
        if self.revision is None:
            return "empty"
        if self.revision == self.head:
            return "unstamped" if self.legacy else "current"
        known = revisions()
        if self.revision in known and known.index(self.revision) < known.index(self.head):
            return "older"
        return "newer"

    def as_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "head": self.head,
            "status": self.status,
            "legacy": self.legacy,
        }


async def read_schema(connection: AsyncConnection) -> SchemaState:
    """The schema of the database behind ``connection``."""
    tables = await connection.run_sync(_novaconsole_tables)
    revision: str | None = None
    legacy = False
    if VERSION_TABLE in tables:
        found = await connection.scalars(select(_versions.c.version_num))
        revision = max(found.all(), default=None)
    if revision is None and meta.name in tables:
        value = await connection.scalar(select(meta.c.value).where(meta.c.key == "schema_version"))
        if value is not None:
            if not value.isdigit():
                raise ConfigError(
                    f"database {mask_url(connection.engine.url)!r} has an unreadable schema "
                    f"version {value!r}",
                    key="database.url",
                )
            revision, legacy = f"{int(value):04d}", True
    return SchemaState(revision, head(), legacy)


def _novaconsole_tables(connection: Connection) -> set[str]:
    inspector = inspect(connection)
    return {name for name in (VERSION_TABLE, meta.name) if inspector.has_table(name)}


def default_auto_upgrade(engine: AsyncEngine) -> bool:
    """Whether an older schema is upgraded at start-up when ``[database] auto_upgrade`` is not
    set: on SQLite (a local file), not on PostgreSQL (an operator's decision)."""
    return engine.dialect.name == "sqlite"


def refuse(state: SchemaState, engine: AsyncEngine, *, upgrading: bool = False) -> None:
    """A :class:`ConfigError` for a newer schema, and for an older one unless ``upgrading``."""
    shown = mask_url(engine.url)
    if state.status == "newer":
        raise ConfigError(
            f"database {shown} has schema revision {state.revision}, newer than this "
            f"novaconsole's ({state.head}); upgrade novaconsole"
        )
    if state.status == "older" and not upgrading:
        raise ConfigError(
            f"database {shown} has schema revision {state.revision}, older than this "
            f"novaconsole's ({state.head}): run `novaconsole db upgrade` "
            "(or set [database] auto_upgrade = true)"
        )


async def ensure_schema(engine: AsyncEngine, *, auto_upgrade: bool | None = None) -> None:
    """Make sure the database has this novaconsole's schema before it is used: nothing to do
    when current (one read); created when empty (and a SQLite file's directory with it);
    upgraded when older if ``auto_upgrade`` (``None``: :func:`default_auto_upgrade`), else
    refused with the command to run; refused, never touched, when newer."""
    try:
        path = sqlite_file(engine)
        if path is not None and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        else:
            async with reader(engine).connect() as connection:
                state = await read_schema(connection)
            if state.status == "current":
                return
            if auto_upgrade is None:
                auto_upgrade = default_auto_upgrade(engine)
            refuse(state, engine, upgrading=auto_upgrade)
        await upgrade(engine)
    except ConfigError:
        raise
    except OPEN_ERRORS as error:
        raise connection_error(error, engine) from None


async def upgrade(engine: AsyncEngine) -> tuple[SchemaState, SchemaState]:
    """Bring the schema to this novaconsole's (one upgrade at a time; a newer schema is
    refused); the state before and after."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY}
            )
        before = await read_schema(connection)
        refuse(before, engine, upgrading=True)
        if before.status != "current":
            await connection.run_sync(_upgrade, before)
        after = await read_schema(connection)
    return before, after


def _upgrade(connection: Connection, before: SchemaState) -> None:
    from alembic import command

    config = _config(connection=connection)
    if before.legacy and before.revision is not None:
        command.stamp(config, before.revision)
    command.upgrade(config, "head")


def upgrade_sql(dialect: str, before: SchemaState) -> str:
    """The SQL that takes a database at ``before`` to this novaconsole's schema, for
    ``dialect`` (``sqlite``, ``postgresql``), as a DBA would review and apply it."""
    from alembic import command

    output = io.StringIO()
    config = _config(dialect=dialect, output=output)
    if before.legacy and before.revision is not None:
        command.stamp(config, before.revision, sql=True)
    if before.status != "current":
        start = f"{before.revision}:" if before.revision is not None else ""
        command.upgrade(config, f"{start}head", sql=True)
    return output.getvalue()


def _config(**attributes: Any) -> Config:
    from alembic.config import Config

    config = Config(attributes=attributes)
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


# ---------------------------------------------------------------------- on a URL (`novaconsole db`)


async def schema_at(url: str) -> SchemaState:
    """The schema of the database at ``url`` (a SQLite file that does not exist is empty and
    is not created)."""
    async with engine_on(url) as engine:
        if engine is None:
            return SchemaState(None, head())
        async with reader(engine).connect() as connection:
            return await read_schema(connection)


async def upgrade_at(url: str) -> tuple[SchemaState, SchemaState]:
    """:func:`upgrade` the database at ``url`` (created if it is a new SQLite file)."""
    async with engine_on(url, create=True) as engine:
        assert engine is not None
        return await upgrade(engine)


def dialect_at(url: str) -> str:
    """The SQL dialect of ``url`` (``sqlite``, ``postgresql``), without connecting."""
    return parse_url(url).get_backend_name()
