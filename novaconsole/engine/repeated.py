"""Logging a failure that repeats (a database that is down fails every poll, heartbeat and
clock read): the first time in full, with its traceback (none for a database connection lost
or refused: the message says all there is); then one line at growing intervals saying how
often it failed meanwhile; and one line when it works again."""

from __future__ import annotations

import logging
from time import monotonic
from typing import Any

from sqlalchemy.exc import DBAPIError

_FIRST_REPEAT = 1.0
_MAX_REPEAT = 60.0


class RepeatedFailure:
    """One kind of failure (e.g. "fetch from X failed") and its current streak."""

    __slots__ = ("_extra", "_interval", "_log", "_next", "_silenced", "_streak", "_what")

    def __init__(self, log: logging.Logger, what: str, extra: dict[str, Any] | None = None):
        self._log = log
        self._what = what
        self._extra = extra
        self._streak = 0
        self._silenced = 0
        self._next = 0.0
        self._interval = _FIRST_REPEAT

    def failed(self, error: str, exc_info: BaseException | None = None) -> None:
        """Log ``error`` unless it is a repeat within the current interval."""
        at = monotonic()
        self._streak += 1
        if self._streak == 1:
            if _connection_lost(exc_info):
                exc_info = None
            self._log.error("%s: %s", self._what, error, exc_info=exc_info, extra=self._extra)
            self._interval = _FIRST_REPEAT
            self._next = at + self._interval
            return
        if at < self._next:
            self._silenced += 1
            return
        self._log.error(
            "%s (still, %d times in a row, %d not logged): %s",
            self._what,
            self._streak,
            self._silenced,
            error,
            extra=self._extra,
        )
        self._silenced = 0
        self._interval = min(_MAX_REPEAT, self._interval * 2)
        self._next = at + self._interval

    @property
    def failing(self) -> bool:
        """It failed last time (a streak is under way)."""
        return self._streak > 0

    def succeeded(self) -> None:
        """It worked: end the streak, saying so if it had been reported."""
        if self._streak > 1:
            self._log.warning(
                "%s: works again after %d failures", self._what, self._streak, extra=self._extra
            )
        self._streak = 0
        self._silenced = 0


def _connection_lost(error: BaseException | None) -> bool:
    """A database connection lost or refused, whose traceback tells nothing the message does
    not (a hundred lines of the pool's and the driver's frames): SQLAlchemy's mark on an error
    that found its connection dead (a database restarted, its session ended), an error it
    raised while connecting (no statement: the database refuses connections, or does not
    exist), or nothing listening at the address."""
    if isinstance(error, ConnectionRefusedError):
        return True
    if isinstance(error, DBAPIError):
        return error.connection_invalidated or error.statement is None
    return False
