"""novaconsole: background processing with a live operations console.

Public names are imported on first use (PEP 562), so that ``novaconsole --help`` and the
headless path pay only for what they touch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from novaconsole.builder import BackgroundProcessing
    from novaconsole.durations import Duration, DurationField
    from novaconsole.engine.events import (
        ControlChanged,
        CycleFinished,
        CycleStarted,
        Event,
        EventsDropped,
        EventSubscription,
        FetchCompleted,
        FetchFailed,
        ItemFinished,
        ItemRetrying,
        ServiceStateChanged,
    )
    from novaconsole.engine.handler import (
        Handler,
        HandlerContext,
        HandlerPurpose,
        NoDatabaseError,
        WorkItem,
    )
    from novaconsole.engine.observers import Observer
    from novaconsole.engine.outcomes import Attempt, CycleReport, ItemOutcome, OutcomeStatus
    from novaconsole.engine.registry import HandlerRegistration
    from novaconsole.engine.retry import RetryPolicy
    from novaconsole.engine.service import ProcessingService
    from novaconsole.engine.snapshot import HandlerView, Snapshot
    from novaconsole.engine.steering import GiveUp, RetryAfter
    from novaconsole.errors import ConfigError

_EXPORTS = {
    "Attempt": "novaconsole.engine.outcomes",
    "BackgroundProcessing": "novaconsole.builder",
    "ConfigError": "novaconsole.errors",
    "ControlChanged": "novaconsole.engine.events",
    "CycleFinished": "novaconsole.engine.events",
    "CycleReport": "novaconsole.engine.outcomes",
    "CycleStarted": "novaconsole.engine.events",
    "Duration": "novaconsole.durations",
    "DurationField": "novaconsole.durations",
    "Event": "novaconsole.engine.events",
    "EventSubscription": "novaconsole.engine.events",
    "EventsDropped": "novaconsole.engine.events",
    "FetchCompleted": "novaconsole.engine.events",
    "FetchFailed": "novaconsole.engine.events",
    "GiveUp": "novaconsole.engine.steering",
    "Handler": "novaconsole.engine.handler",
    "HandlerContext": "novaconsole.engine.handler",
    "HandlerPurpose": "novaconsole.engine.handler",
    "HandlerRegistration": "novaconsole.engine.registry",
    "HandlerView": "novaconsole.engine.snapshot",
    "ItemFinished": "novaconsole.engine.events",
    "ItemOutcome": "novaconsole.engine.outcomes",
    "ItemRetrying": "novaconsole.engine.events",
    "NoDatabaseError": "novaconsole.engine.handler",
    "Observer": "novaconsole.engine.observers",
    "OutcomeStatus": "novaconsole.engine.outcomes",
    "ProcessingService": "novaconsole.engine.service",
    "RetryAfter": "novaconsole.engine.steering",
    "RetryPolicy": "novaconsole.engine.retry",
    "ServiceStateChanged": "novaconsole.engine.events",
    "Snapshot": "novaconsole.engine.snapshot",
    "WorkItem": "novaconsole.engine.handler",
}

__all__ = [
    "Attempt",
    "BackgroundProcessing",
    "ConfigError",
    "ControlChanged",
    "CycleFinished",
    "CycleReport",
    "CycleStarted",
    "Duration",
    "DurationField",
    "Event",
    "EventSubscription",
    "EventsDropped",
    "FetchCompleted",
    "FetchFailed",
    "GiveUp",
    "Handler",
    "HandlerContext",
    "HandlerPurpose",
    "HandlerRegistration",
    "HandlerView",
    "ItemFinished",
    "ItemOutcome",
    "ItemRetrying",
    "NoDatabaseError",
    "Observer",
    "OutcomeStatus",
    "ProcessingService",
    "RetryAfter",
    "RetryPolicy",
    "ServiceStateChanged",
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
