"""Whose fault a failed write is: the database's (unreachable, full, locked, shutting down),
or the statement's (a constraint, bad SQL: the item's).

A database fault is held and retried without charging any item; a statement fault fails the
item whose statement it was. Drivers disagree on exception classes (SQLite reports a full disk,
a lock and a syntax error all as ``OperationalError``), so this looks at the driver's error:
its class, its SQLSTATE and, for SQLite, its message.
"""

from __future__ import annotations

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
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_fault(current):
            return True
        if isinstance(current, DBAPIError) and current.orig is not None:
            current = current.orig
        else:
            current = current.__cause__ or current.__context__
    return False


_REFUSAL_SQLSTATES = ("22", "23", "P0001")
"""Data exception, integrity constraint violation, a trigger's ``RAISE EXCEPTION``."""


def is_row_refusal(error: BaseException) -> bool:
    """True when the database refused the rows themselves (a constraint, a trigger, a value
    a column rejects): writing the same rows again fails the same way. Never a fault."""
    if is_database_fault(error):
        return False
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, IntegrityError | DataError):
            return True
        sqlstate = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_REFUSAL_SQLSTATES):
            return True
        if isinstance(current, DBAPIError) and current.orig is not None:
            current = current.orig
        else:
            current = current.__cause__ or current.__context__
    return False


def _is_fault(error: BaseException) -> bool:
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, OSError | TimeoutError | DisconnectionError):
        return True
    if type(error).__name__ in ("ConnectionDoesNotExistError", "ConnectionFailureError"):
        return True
    sqlstate = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    if isinstance(sqlstate, str) and (
        sqlstate in _SQLSTATES or sqlstate.startswith(_SQLSTATE_CLASSES)
    ):
        return True
    if isinstance(error, SQLAlchemyError):
        return False  # its text quotes the statement: judge the driver's error it wraps
    message = str(error).lower()
    return any(fragment in message for fragment in _MESSAGES)
