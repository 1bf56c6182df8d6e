"""The operator's controls: pause (with who, why and until when), batch sizes, concurrency.

Controls set here are applied, saved to the store (which keeps an audit entry for each) and
remembered in a short local history; controls read back from the store (saved by another
process, or by an earlier run) are validated again here: a handler this service does not have
is refused, and each refusal is logged once.
"""

from __future__ import annotations

import logging
from collections import deque
from datetime import datetime, timedelta
from typing import Any

from novaconsole.engine.core import EngineCore, now, wake
from novaconsole.engine.events import ControlChanged
from novaconsole.engine.operator import (
    AUDIT_KEEP,
    MAX_BATCH_SIZE,
    MAX_CONCURRENCY,
    AuditEntry,
    PauseInfo,
    check_batch_size,
    check_concurrency,
    clamp,
    describe_pause,
    resume_time,
)
from novaconsole.engine.persistence import Controls
from novaconsole.redaction import redact

log = logging.getLogger("novaconsole.engine")

Until = datetime | timedelta | None
"""When a pause ends by itself: a moment, a duration from now, or ``None`` (never)."""


class OperatorControls:
    """Applies controls set here (saved to the store) and ones read back from it."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core
        self.pause: PauseInfo | None = None
        """Who paused everything, when, why, until when (``None`` when not paused or unknown)."""
        self.handler_pauses: dict[str, PauseInfo] = {}
        self.history: deque[AuditEntry] = deque(maxlen=AUDIT_KEEP)
        """Changes made through this service, oldest first (the store keeps the fleet's)."""
        self._refused: set[str] = set()

    # ------------------------------------------------------------------ set here

    def set_paused(
        self, paused: bool, *, reason: str | None = None, until: Until = None, by: str | None = None
    ) -> None:
        core = self.core
        info = self._pause_info(paused, reason, until, by)
        old = core.paused
        core.paused = paused
        core.queue.paused = paused
        self.pause = info
        if core.is_running and not core.stopping:
            core.set_state("paused" if paused else "running")
        self._changed("pause", old, paused, None, info, by)
        wake(core.poll_wake, core.work)
        if paused:
            core.lifecycle.give_back_paused()

    def set_handler_paused(
        self,
        name: str,
        paused: bool,
        *,
        reason: str | None = None,
        until: Until = None,
        by: str | None = None,
    ) -> None:
        core = self.core
        rt = core.runtime(name)
        info = self._pause_info(paused, reason, until, by)
        old = rt.paused
        rt.paused = paused
        if info is None:
            self.handler_pauses.pop(name, None)
        else:
            self.handler_pauses[name] = info
        self._changed("pause", old, paused, name, info, by)
        wake(core.poll_wake, core.work)
        if paused:
            core.lifecycle.give_back_paused()

    def set_batch_size(self, name: str, size: int, *, by: str | None = None) -> None:
        check_batch_size(size)
        rt = self.core.runtime(name)
        old, rt.batch_size = rt.batch_size, size
        self._changed("batch_size", old, size, name, None, by)

    def set_concurrency(self, workers: int, *, by: str | None = None) -> None:
        check_concurrency(workers)
        core = self.core
        old, core.concurrency = core.concurrency, workers
        core.slot_runner.spawn()
        wake(core.work)
        self._changed("concurrency", old, workers, None, None, by)

    def _pause_info(
        self, paused: bool, reason: str | None, until: Until, by: str | None
    ) -> PauseInfo | None:
        if not paused:
            return None
        at = now()
        return PauseInfo(
            by=by or self.core.worker_id,
            at=at,
            reason=redact(reason.strip())[:500] if reason and reason.strip() else None,
            resumes_at=resume_time(until, at),
        )

    def _changed(
        self,
        what: str,
        old: Any,
        value: Any,
        handler: str | None,
        pause: PauseInfo | None,
        by: str | None,
    ) -> None:
        core = self.core
        who = by or core.worker_id
        change = _control_change(what, value, handler, pause)
        change.by = who
        core.store.save_controls(change)
        shown_what = "resume" if what == "pause" and not value else what
        shown_old, shown_new = old, value
        if what == "pause":
            shown_old = "paused" if old else "running"
            shown_new = "paused" if value else "running"
        detail = _pause_detail(pause)
        self.history.append(
            AuditEntry(now(), who, shown_what, handler, str(shown_old), str(shown_new), detail)
        )
        core.hub.publish(ControlChanged(what, value, handler, by=who))
        if what == "pause" and value:
            text = describe_pause(handler or "everything", pause, now())
        elif what == "pause":
            text = f"{handler or 'everything'} resumed by {who}"
        else:
            target = f" of {handler}" if handler else ""
            text = f"{what.replace('_', ' ')}{target} set to {value} by {who} (was {old})"
        log.info("%s", text, extra={"handler": handler} if handler else None)

    # ------------------------------------------------------------------ read back

    def apply(self, controls: Controls) -> None:
        """Controls saved by an earlier run (or while stopped), applied at start."""
        core = self.core
        controls = self._valid(controls)
        if controls.paused is not None:
            core.paused = core.queue.paused = controls.paused
            self.pause = controls.pause if controls.paused else None
        if controls.concurrency is not None:
            core.concurrency = controls.concurrency
        for name, paused in controls.handler_paused.items():
            core.runtimes[name].paused = paused
            self._set_handler_pause(name, controls.handler_pauses.get(name) if paused else None)
        for name, size in controls.batch_sizes.items():
            core.runtimes[name].batch_size = size

    def follow(self, stored: Controls) -> None:
        """Apply controls another process wrote to the database (not saved back)."""
        core = self.core
        stored = self._valid(stored)
        if stored.paused is not None:
            if stored.paused != core.paused:
                core.paused = core.queue.paused = stored.paused
                core.set_state("paused" if stored.paused else "running")
                core.hub.publish(ControlChanged("pause", stored.paused))
                wake(core.poll_wake, core.work)
                self._log_followed(None, stored.paused, stored.pause)
                if stored.paused:
                    core.lifecycle.give_back_paused()
            self.pause = stored.pause if stored.paused else None
        if stored.concurrency and stored.concurrency != core.concurrency:
            core.concurrency = stored.concurrency
            core.slot_runner.spawn()
            core.hub.publish(ControlChanged("concurrency", stored.concurrency))
            log.info("concurrency set to %d (changed in the database)", stored.concurrency)
        for name, rt in core.runtimes.items():
            paused = stored.handler_paused.get(name)
            if paused is not None:
                info = stored.handler_pauses.get(name) if paused else None
                if paused != rt.paused:
                    rt.paused = paused
                    core.hub.publish(ControlChanged("pause", paused, name))
                    wake(core.poll_wake, core.work)
                    self._log_followed(name, paused, info)
                    if paused:
                        core.lifecycle.give_back_paused()
                self._set_handler_pause(name, info)
            size = stored.batch_sizes.get(name)
            if size and size != rt.batch_size:
                rt.batch_size = size
                core.hub.publish(ControlChanged("batch_size", size, name))
                log.info(
                    "batch size of %s set to %d (changed in the database)",
                    name,
                    size,
                    extra={"handler": name},
                )

    def _set_handler_pause(self, name: str, info: PauseInfo | None) -> None:
        if info is None:
            self.handler_pauses.pop(name, None)
        else:
            self.handler_pauses[name] = info

    def _log_followed(self, handler: str | None, paused: bool, info: PauseInfo | None) -> None:
        subject = handler or "everything"
        text = describe_pause(subject, info, now()) if paused else f"{subject} resumed"
        log.info(
            "%s (changed in the database)", text, extra={"handler": handler} if handler else None
        )

    def _valid(self, controls: Controls) -> Controls:
        """``controls`` without what this service cannot obey: unknown handlers refused,
        numbers clamped to their range (each refusal logged once)."""
        known = self.core.runtimes
        valid = Controls(paused=controls.paused, pause=controls.pause)
        if controls.concurrency is not None:
            valid.concurrency = clamp(controls.concurrency, MAX_CONCURRENCY)
            if valid.concurrency != controls.concurrency:
                self._refuse(f"concurrency {controls.concurrency!r} clamped to {valid.concurrency}")
        for name, paused in controls.handler_paused.items():
            if name not in known:
                self._refuse(f"ignoring a saved pause of {name!r}: no such handler here")
                continue
            valid.handler_paused[name] = paused
            if name in controls.handler_pauses:
                valid.handler_pauses[name] = controls.handler_pauses[name]
        for name, size in controls.batch_sizes.items():
            if name not in known:
                self._refuse(f"ignoring a saved batch size of {name!r}: no such handler here")
                continue
            clamped = clamp(size, MAX_BATCH_SIZE)
            if clamped != size:
                self._refuse(f"batch size {size!r} of {name} clamped to {clamped}")
            if clamped is not None:
                valid.batch_sizes[name] = clamped
        return valid

    def _refuse(self, message: str) -> None:
        if message not in self._refused:
            self._refused.add(message)
            log.warning("%s", message)

    # ------------------------------------------------------------------ reporting

    def paused_lines(self, at: datetime | None = None) -> list[str]:
        """One line per pause in force: everything, or each paused handler."""
        at = at or now()
        lines = []
        if self.core.paused:
            lines.append(describe_pause("everything", self.pause, at))
        for name, rt in self.core.runtimes.items():
            if rt.paused:
                lines.append(describe_pause(name, self.handler_pauses.get(name), at))
        return lines

    async def audit(self, limit: int = 50) -> list[AuditEntry]:
        """The latest changes, oldest first: the fleet's from the database when there is one,
        else those made through this service."""
        plane = getattr(self.core.store, "control_plane", None)
        if plane is not None:
            entries: list[AuditEntry] = await plane.audit(limit)
            return entries
        return list(self.history)[-limit:]


def _pause_detail(pause: PauseInfo | None) -> str | None:
    if pause is None:
        return None
    parts = [pause.reason] if pause.reason else []
    if pause.resumes_at is not None:
        parts.append(f"until {pause.resumes_at.isoformat(timespec='seconds')}")
    return "; ".join(parts) or None


def _control_change(
    what: str, value: Any, handler: str | None, pause: PauseInfo | None
) -> Controls:
    """Only the control an operator just set: the store leaves every other one as it is."""
    if what == "pause":
        if handler:
            pauses = {handler: pause} if pause is not None else {}
            return Controls(handler_paused={handler: value}, handler_pauses=pauses)
        return Controls(paused=value, pause=pause)
    if what == "batch_size" and handler is not None:
        return Controls(batch_sizes={handler: value})
    return Controls(concurrency=value)
