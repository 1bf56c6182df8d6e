"""Handler purposes (no heavy imports: the CLI's ``--help`` reads the choices)."""

from __future__ import annotations

from enum import StrEnum


class HandlerPurpose(StrEnum):
    """What a handler is for; the console filters by it."""

    INGESTION = "ingestion"
    INTERNAL = "internal"
    EXPORT = "export"

    @classmethod
    def choices(cls) -> tuple[str, ...]:
        """Every purpose's value, in order (the CLI's ``--purpose`` choices)."""
        return tuple(purpose.value for purpose in cls)
