"""novaconsole: background processing with a live operations console.

Public names are imported on first use (PEP 562), so that ``novaconsole --help`` and the
headless path pay only for what they touch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from novaconsole.builder import BackgroundProcessing
    from novaconsole.engine.events import Event
    from novaconsole.engine.handler import Handler, HandlerContext, HandlerPurpose, WorkItem
    from novaconsole.engine.outcomes import CycleReport, ItemOutcome, OutcomeStatus
    from novaconsole.engine.registry import HandlerRegistration
    from novaconsole.engine.retry import RetryPolicy
    from novaconsole.engine.service import ProcessingService
    from novaconsole.engine.snapshot import HandlerView, Snapshot
    from novaconsole.errors import ConfigError

_EXPORTS = {
    "BackgroundProcessing": "novaconsole.builder",
    "ConfigError": "novaconsole.errors",
    "CycleReport": "novaconsole.engine.outcomes",
    "Event": "novaconsole.engine.events",
    "Handler": "novaconsole.engine.handler",
    "HandlerContext": "novaconsole.engine.handler",
    "HandlerPurpose": "novaconsole.engine.handler",
    "HandlerRegistration": "novaconsole.engine.registry",
    "HandlerView": "novaconsole.engine.snapshot",
    "ItemOutcome": "novaconsole.engine.outcomes",
    "OutcomeStatus": "novaconsole.engine.outcomes",
    "ProcessingService": "novaconsole.engine.service",
    "RetryPolicy": "novaconsole.engine.retry",
    "Snapshot": "novaconsole.engine.snapshot",
    "WorkItem": "novaconsole.engine.handler",
}

__all__ = [
    "BackgroundProcessing",
    "ConfigError",
    "CycleReport",
    "Event",
    "Handler",
    "HandlerContext",
    "HandlerPurpose",
    "HandlerRegistration",
    "HandlerView",
    "ItemOutcome",
    "OutcomeStatus",
    "ProcessingService",
    "RetryPolicy",
    "Snapshot",
    "WorkItem",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'novaconsole' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
