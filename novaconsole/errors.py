"""Errors a user can cause; the CLI prints them as one line and exits with status 2."""

from __future__ import annotations

import re


class ConfigError(Exception):
    """Bad configuration, usage or environment: shown as one line, exit status 2."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        self.message = message
        self.source = source
        self.key = key
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.source, self.key) if part)
        return f"{where}: {self.message}" if where else self.message


def driver_message(error: BaseException) -> str:
    """A database error in one line, as the driver said it: for a SQLAlchemy error, the driver
    error it wraps (``orig``), without the statement, its parameters and the link SQLAlchemy
    adds; empty if there is no message."""
    cause = getattr(error, "orig", None) or error
    message = str(cause).split("\n", 1)[0].split("(Background on this error", 1)[0].strip()
    return _DRIVER_CLASS.sub("", message, count=1)


_DRIVER_CLASS = re.compile(r"^<class '[\w.]+'>: ")
"""The prefix SQLAlchemy's asyncpg adapter gives the driver's message."""
