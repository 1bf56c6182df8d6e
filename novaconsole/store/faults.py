"""Whose fault a failed write is: the database's (unreachable, full, locked, shutting down),
or the statement's (a constraint, bad SQL: the item's).

A database fault is held and retried without charging any item; a statement fault fails the
item whose statement it was. Drivers disagree on exception classes (SQLite reports a full disk,
a lock and a syntax error all as ``OperationalError``), so this looks at the driver's error:
its class, its SQLSTATE and, for SQLite, its message.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    SQLAlchemyError,
    TimeoutError,
)

_SQLSTATE_CLASSES = ("08", "53", "57", "58", "HV")
"""SQLSTATE classes of a database fault: connection exception, insufficient resources (disk
full, out of memory, too many connections), operator intervention (shutdown, cannot connect
now), system error (I/O), and foreign-data-wrapper connection errors."""
_SQLSTATES = {"40001", "40P01", "55P03", "25006", "25P03", "3D000"}
"""Serialization failure, deadlock, lock not available (``lock_timeout``), read-only transaction
(a standby), session ended by ``idle_in_transaction_session_timeout``, database does not
exist (dropped, or not created yet)."""

_MESSAGES = (
    "database is locked",
    "database table is locked",
    "disk i/o error",
    "database or disk is full",
    "disk is full",
    "no space left",
    "unable to open database",
    "readonly database",
    "read-only",
    "connection refused",
    "connection reset",
    "connection is closed",
    "connection was closed",
    "connection lost",
    "server closed the connection",
    "terminating connection",
    "the database system is",
    "cannot connect",
    "could not connect",
    "broken pipe",
    "timed out",
)
"""Message fragments (lower case) that name a database fault whatever the class."""


def is_database_fault(error: BaseException) -> bool:
    """True when ``error`` says the database could not be used (retry later, charge no item);
    False when it is the statement's own error (a constraint, bad SQL)."""
    return any(_is_fault(link) for link in _chain(error))


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error``, then what it wraps: the driver's error inside SQLAlchemy's, then the cause
    or context, each once."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if isinstance(current, DBAPIError) and current.orig is not None:
            current = current.orig
        else:
            current = current.__cause__ or current.__context__


_REFUSAL_SQLSTATES = ("22", "23", "P0001")
"""Data exception, integrity constraint violation, a trigger's ``RAISE EXCEPTION``."""


def is_row_refusal(error: BaseException) -> bool:
    """True when the database refused the rows themselves (a constraint, a trigger, a value
    a column rejects): writing the same rows again fails the same way. Never a fault."""
    return not is_database_fault(error) and any(_refused(link) for link in _chain(error))


def _refused(error: BaseException) -> bool:
    if isinstance(error, IntegrityError | DataError):
        return True
    sqlstate = _sqlstate(error)
    return sqlstate is not None and sqlstate.startswith(_REFUSAL_SQLSTATES)


def _sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE a driver's error carries (asyncpg: ``sqlstate``, psycopg: ``pgcode``)."""
    sqlstate = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return sqlstate if isinstance(sqlstate, str) else None


def _is_fault(error: BaseException) -> bool:
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, OSError | TimeoutError | DisconnectionError):
        return True
    if type(error).__name__ in ("ConnectionDoesNotExistError", "ConnectionFailureError"):
        return True
    sqlstate = _sqlstate(error)
    if sqlstate is not None and (sqlstate in _SQLSTATES or sqlstate.startswith(_SQLSTATE_CLASSES)):
        return True
    if isinstance(error, SQLAlchemyError):
        return False  # its text quotes the statement: judge the driver's error it wraps
    message = str(error).lower()
    return any(fragment in message for fragment in _MESSAGES)
