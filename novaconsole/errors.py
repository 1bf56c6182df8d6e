"""Errors a user can cause; the CLI prints them as one line and exits with status 2."""

from __future__ import annotations


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
