"""novaconsole: background processing with a live operations console."""

from novaconsole.engine.events import Event
from novaconsole.engine.handler import Handler, HandlerContext, HandlerPurpose, WorkItem
from novaconsole.engine.outcomes import CycleReport, ItemOutcome, OutcomeStatus
from novaconsole.engine.registry import BackgroundProcessing, HandlerRegistration
from novaconsole.engine.retry import RetryPolicy
from novaconsole.engine.service import ProcessingService
from novaconsole.engine.snapshot import HandlerView, Snapshot
from novaconsole.errors import ConfigError

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
