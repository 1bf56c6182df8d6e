"""The operator's controls: pause, batch sizes, concurrency, retrying an item."""

from __future__ import annotations

import logging
from typing import Any

from novaconsole.engine.core import EngineCore, log_extra, wake
from novaconsole.engine.events import ControlChanged
from novaconsole.engine.outcomes import shown_id
from novaconsole.engine.persistence import Controls
from novaconsole.redaction import redact

log = logging.getLogger("novaconsole.engine")


class OperatorControls:
    """Applies controls set here (saved to the store) and ones read back from it."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core

    def set_paused(self, paused: bool) -> None:
        core = self.core
        core.paused = paused
        core.queue.paused = paused
        if core.is_running and not core.stopping:
            core.set_state("paused" if paused else "running")
        self._changed("pause", paused)
        wake(core.poll_wake, core.work)

    def set_handler_paused(self, name: str, paused: bool) -> None:
        core = self.core
        core.runtime(name).paused = paused
        self._changed("pause", paused, name)
        wake(core.poll_wake, core.work)

    def set_batch_size(self, name: str, size: int) -> None:
        if size < 1:
            raise ValueError(f"batch size must be at least 1, got {size}")
        self.core.runtime(name).batch_size = size
        self._changed("batch_size", size, name)

    def set_concurrency(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"concurrency must be at least 1, got {slots}")
        core = self.core
        core.concurrency = slots
        core.slot_runner.spawn()
        wake(core.work)
        self._changed("concurrency", slots)

    async def retry_item(self, handler: str, item_id: Any) -> bool:
        core = self.core
        core.runtime(handler)
        forgotten = await core.store.forget_item(handler, str(item_id))
        if forgotten:
            shown = shown_id(item_id)
            log.info("item %s will be retried", shown, extra=log_extra(handler, item_id))
            core.hub.publish(ControlChanged("retry", redact(str(item_id)), handler))
        return forgotten

    def _changed(self, what: str, value: Any, handler: str | None = None) -> None:
        core = self.core
        core.store.save_controls(_control_change(what, value, handler))
        core.hub.publish(ControlChanged(what, value, handler))
        log.info(
            "%s%s set to %s",
            what.replace("_", " "),
            f" of {handler}" if handler else "",
            value,
            extra={"handler": handler} if handler else None,
        )

    def apply(self, controls: Controls) -> None:
        """Controls saved by an earlier run, applied at start."""
        core = self.core
        if controls.paused is not None:
            core.paused = core.queue.paused = controls.paused
        if controls.concurrency is not None and controls.concurrency >= 1:
            core.concurrency = controls.concurrency
        for name, paused in controls.handler_paused.items():
            if name in core.runtimes:
                core.runtimes[name].paused = paused
        for name, size in controls.batch_sizes.items():
            if name in core.runtimes and size >= 1:
                core.runtimes[name].batch_size = size

    def follow(self, stored: Controls) -> None:
        """Apply controls another process wrote to the database (not saved back)."""
        core = self.core
        if stored.paused is not None and stored.paused != core.paused:
            core.paused = core.queue.paused = stored.paused
            core.set_state("paused" if stored.paused else "running")
            core.hub.publish(ControlChanged("pause", stored.paused))
            wake(core.poll_wake, core.work)
        if stored.concurrency and stored.concurrency != core.concurrency:
            core.concurrency = stored.concurrency
            core.slot_runner.spawn()
            core.hub.publish(ControlChanged("concurrency", stored.concurrency))
        for name, rt in core.runtimes.items():
            paused = stored.handler_paused.get(name)
            if paused is not None and paused != rt.paused:
                rt.paused = paused
                core.hub.publish(ControlChanged("pause", paused, name))
                wake(core.poll_wake, core.work)
            size = stored.batch_sizes.get(name)
            if size and size != rt.batch_size:
                rt.batch_size = size
                core.hub.publish(ControlChanged("batch_size", size, name))


def _control_change(what: str, value: Any, handler: str | None) -> Controls:
    """Only the control an operator just set: the store leaves every other one as it is."""
    if what == "pause":
        return Controls(handler_paused={handler: value}) if handler else Controls(paused=value)
    if what == "batch_size" and handler is not None:
        return Controls(batch_sizes={handler: value})
    return Controls(concurrency=value)
