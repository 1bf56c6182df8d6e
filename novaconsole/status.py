"""What the status bar and the handler and queue panes show, as data: from a running
service's snapshot, or from the database (``novaconsole status``). Both give the same keys, so
a script, the console and a test can compare them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from novaconsole.engine.operator import PauseInfo, describe_pause
from novaconsole.engine.registry import HandlerRegistration
from novaconsole.engine.snapshot import Snapshot
from novaconsole.store.fleet import views_as_dicts
from novaconsole.store.operator import ControlReading


def _pause(info: PauseInfo | None) -> dict[str, Any] | None:
    return info.as_dict() if info is not None else None


def _lines(
    paused: bool, pause: PauseInfo | None, handlers: dict[str, Any], now: datetime
) -> list[str]:
    lines = [describe_pause("everything", pause, now)] if paused else []
    for name, view in handlers.items():
        if view["paused"]:
            info = view["pause"]
            lines.append(describe_pause(name, _info(info), now))
    return lines


def _info(data: dict[str, Any] | None) -> PauseInfo | None:
    if data is None:
        return None
    return PauseInfo(
        by=data["paused_by"],
        at=datetime.fromisoformat(data["paused_at"]) if data["paused_at"] else None,
        reason=data["pause_reason"],
        resumes_at=datetime.fromisoformat(data["resumes_at"]) if data["resumes_at"] else None,
    )


def from_snapshot(snapshot: Snapshot, now: datetime | None = None) -> dict[str, Any]:
    """A running service's status (``service.snapshot()``)."""
    now = now or datetime.now(UTC)
    handlers = {
        name: {
            "name": view.name,
            "purpose": view.purpose.value,
            "state": view.state,
            "enabled": view.enabled,
            "paused": view.paused,
            "pause": _pause(view.pause),
            "batch_size": view.batch_size,
            "configured_batch_size": view.configured_batch_size,
            "succeeded": view.succeeded,
            "failed": view.failed,
            "skipped": view.skipped,
            "retrying": view.retrying,
            "in_flight": view.in_flight,
            "queued": view.queued,
            "last_error": view.last_error,
        }
        for name, view in snapshot.handlers.items()
    }
    return {
        "state": snapshot.state,
        "paused": snapshot.paused,
        "pause": _pause(snapshot.pause),
        "paused_lines": _lines(snapshot.paused, snapshot.pause, handlers, now),
        "concurrency": snapshot.concurrency,
        "configured_concurrency": snapshot.configured_concurrency,
        "queue_depth": snapshot.queue_depth,
        "queue_capacity": snapshot.queue_capacity,
        "in_flight": snapshot.in_flight,
        "succeeded": snapshot.succeeded,
        "failed": snapshot.failed,
        "skipped": snapshot.skipped,
        "database": snapshot.database,
        "workers": views_as_dicts(snapshot.workers),
        "handlers": handlers,
    }


def from_database(
    reading: ControlReading,
    registrations: Sequence[HandlerRegistration],
    configured_concurrency: int,
    database: str,
) -> dict[str, Any]:
    """The status as the database tells it: controls for the fleet (or for the next start),
    the live workers, and counts over the kept results (``queue_depth``, ``queued`` and
    ``in_flight`` per handler are not in the database: ``null``). With no ``registrations``
    (no ``[[handlers]]`` in the config) the handlers the database knows are listed, their
    purpose and configured batch size ``null``."""
    controls = reading.controls
    live = reading.live_workers
    paused = bool(controls.paused)
    pause = controls.pause if paused else None
    handlers: dict[str, Any] = {}
    known: list[tuple[str, str | None, bool, int | None]] = [
        (r.name, r.purpose.value, r.enabled, r.max_items_per_cycle) for r in registrations
    ]
    if not known:  # no [[handlers]] in the config: those the database knows
        seen = set(reading.counts) | set(controls.handler_paused) | set(controls.batch_sizes)
        known = [(name, None, True, None) for name in sorted(seen)]
    for name, purpose, enabled, configured in known:
        counts = reading.counts.get(name)
        handler_paused = bool(controls.handler_paused.get(name))
        state = "disabled" if not enabled else "paused" if handler_paused else None
        handlers[name] = {
            "name": name,
            "purpose": purpose,
            "state": state or "active",
            "enabled": enabled,
            "paused": handler_paused,
            "pause": _pause(controls.handler_pauses.get(name) if handler_paused else None),
            "batch_size": controls.batch_sizes.get(name, configured),
            "configured_batch_size": configured,
            "succeeded": counts.succeeded if counts else 0,
            "failed": counts.failed if counts else 0,
            "skipped": counts.skipped if counts else 0,
            "retrying": counts.retrying if counts else 0,
            "dead": counts.dead if counts else 0,
            "in_flight": None,
            "queued": None,
            "last_error": counts.last_error if counts else None,
        }
    total = {
        key: sum(view[key] for view in handlers.values())
        for key in ("succeeded", "failed", "skipped")
    }
    return {
        "state": ("paused" if paused else "running") if live else "stopped",
        "paused": paused,
        "pause": _pause(pause),
        "paused_lines": _lines(paused, pause, handlers, reading.now),
        "concurrency": controls.concurrency or configured_concurrency,
        "configured_concurrency": configured_concurrency,
        "queue_depth": None,
        "queue_capacity": None,
        "in_flight": sum(worker.in_flight for worker in live),
        **total,
        "database": database,
        "workers": views_as_dicts(reading.workers),
        "handlers": handlers,
    }


CONTROL_KEYS = ("paused", "pause", "concurrency")
HANDLER_CONTROL_KEYS = ("paused", "pause", "batch_size", "configured_batch_size", "enabled")
"""The keys on which a service's status and the database's agree once workers follow it."""
