"""The store: results, item states and controls in an SQL database (SQLAlchemy 2, async).

SQLite through aiosqlite is the default (one file); any async SQLAlchemy URL works, e.g.
``postgresql+asyncpg://``. Nothing here connects until the store is opened.
"""

from __future__ import annotations

from datetime import timedelta

from novaconsole import defaults
from novaconsole.store.database import create_engine, mask_url
from novaconsole.store.sql_store import SqlStore


def open_store(
    url: str,
    *,
    keep_results_age: timedelta | None = defaults.KEEP_RESULTS_AGE,
    keep_results_count: int | None = defaults.KEEP_RESULTS_COUNT,
    shared: bool | None = None,
    connect_timeout: float = defaults.CONNECT_TIMEOUT.total_seconds(),
    auto_upgrade: bool | None = None,
) -> SqlStore:
    """A store on ``url``, keeping results up to ``keep_results_age`` old and at most
    ``keep_results_count`` of them (``None``: no limit). With ``shared`` (``None``: on for
    PostgreSQL, off for SQLite) several workers share the database's work: claims with leases,
    heartbeats, fleet commands. With ``auto_upgrade`` (``None``: on for SQLite, off for
    PostgreSQL) opening the store upgrades an older schema; without, it is refused with the
    command to run. A database that cannot be reached when the store opens is retried for up
    to ``connect_timeout`` seconds. Creates the engine, connects to nothing; a bad URL, a
    missing driver or a database that cannot share work is a
    :class:`~novaconsole.errors.ConfigError`."""
    return SqlStore(
        url,
        keep_results_age=keep_results_age,
        keep_results_count=keep_results_count,
        shared=shared,
        connect_timeout=connect_timeout,
        auto_upgrade=auto_upgrade,
    )


__all__ = ["SqlStore", "create_engine", "mask_url", "open_store"]
