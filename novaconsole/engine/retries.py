"""Honest retry: an operator's retry request followed until the item runs again, or until it
is clear that it will not.

A request forgets the item's attempts, asks the handler to reopen the item at its source (the
optional hook ``async def reopen(self, item_id: str) -> bool``), makes the handler due at
once, then watches: the item fetched again is ``running``, and its final outcome makes the
request ``succeeded`` or ``failed``; when :data:`NOT_OFFERED_AFTER` fetches that started after
the request do not return it, it is ``not_offered``. Each step is an event
(:class:`RetryProgress`), a log line, and (with a database) the request's row, which the CLI
and an attached console read.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from time import monotonic
from typing import Any

import anyio

from novaconsole.engine.core import EngineCore, describe, log_extra, now, wake
from novaconsole.engine.events import RetryProgress
from novaconsole.engine.handler import HandlerContext
from novaconsole.engine.observers import Observer
from novaconsole.engine.operator import NOT_OFFERED_AFTER, RetryStatus
from novaconsole.engine.outcomes import ItemOutcome, OutcomeStatus
from novaconsole.engine.runtime import HandlerRuntime
from novaconsole.redaction import redact

log = logging.getLogger("novaconsole.engine")

KEEP = 200
"""Retry requests remembered by a service without a database."""
FULL_BATCH_MISS = 0.2
"""What a fetch that filled its batch without the item counts towards "not offered"."""


@dataclass(slots=True)
class _Watch:
    status: RetryStatus
    since: float
    """When the request was ready (monotonic): only fetches started later count."""
    misses: float = 0.0


class RetryTracker(Observer):
    """Retry requests of one service, and what became of them."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core
        self.watching: dict[str, dict[str, _Watch]] = {}
        """Per handler, by item key: requests waiting to see the item again."""
        self.recent: deque[RetryStatus] = deque(maxlen=KEEP)
        self._observing = False

    @property
    def pending(self) -> bool:
        return bool(self.watching)

    async def request(
        self, handler: str, item_id: Any, *, by: str | None = None, taken: RetryStatus | None = None
    ) -> RetryStatus | None:
        """Retry an item (``taken``: a request read from the database). ``None`` when there is
        nothing to retry: no attempts remembered and no ``reopen`` hook to ask the source."""
        core = self.core
        rt = core.runtime(handler)
        key = str(item_id)
        who = by or (taken.requested_by if taken else core.worker_id)
        forgotten = await core.store.forget_item(handler, key)
        plane = getattr(core.store, "control_plane", None)
        if taken is None and not core.is_running:
            # Stopped: saved, carried out at the next start (the CLI's way too).
            if plane is None:
                return None if not forgotten else self._remember(self._new(rt, key, who))
            return self._remember(await plane.insert_retry(handler, key, who))
        # Watched before the source is reopened: the item may run again at once.
        watch = _Watch(taken or self._new(rt, key, who), since=math.inf)
        self.watching.setdefault(rt.name, {})[key] = watch
        if key in rt.active:
            watch.status = replace(watch.status, state="running")
        if not self._observing:
            self._observing = True
            core.observers = (*core.observers, self)
        reopened, detail = await self._reopen(rt, key)
        if taken is None and not forgotten and reopened is None:
            self._forget(rt.name, key, watch)
            return None
        base = watch.status
        if taken is None and plane is not None:
            base = await plane.insert_retry(handler, key, who, taken_by=core.worker_id)
        seen = watch.status
        status = replace(
            base,
            state=seen.state,
            detail=detail if seen.state == "requested" else seen.detail,
            updated_at=now(),
        )
        if not seen.final:
            watch.status = status
            watch.since = monotonic()
            rt.next_due = 0.0  # due now: the item runs within one poll
            wake(core.poll_wake)
        self._report(status)
        return status

    def _forget(self, handler: str, key: str, watch: _Watch) -> None:
        watches = self.watching.get(handler, {})
        if watches.get(key) is watch:
            del watches[key]
            if not watches:
                del self.watching[handler]

    def _new(self, rt: HandlerRuntime, key: str, by: str, detail: str | None = None) -> RetryStatus:
        return RetryStatus(
            handler=rt.name,
            item_id=redact(key),
            state="requested",
            requested_by=by,
            requested_at=now(),
            detail=detail,
            taken_by=self.core.worker_id,
        )

    async def _reopen(self, rt: HandlerRuntime, key: str) -> tuple[bool | None, str]:
        """Call the handler's ``reopen`` hook; (its answer or ``None`` without one, a detail)."""
        core = self.core
        registration = rt.registration
        reopen = getattr(registration.factory, "reopen", None)
        if reopen is None:
            return None, "attempts forgotten (the handler has no reopen hook)"
        ctx = HandlerContext(
            name=rt.name,
            purpose=registration.purpose,
            options=registration.options,
            session_factory=core.session_factory,
            writer=core.writer,
        )
        try:
            handler: Any = registration.create(ctx)
            with anyio.fail_after(rt.item_timeout.total_seconds()):
                if inspect.iscoroutinefunction(handler.reopen):
                    answer = bool(await handler.reopen(key))
                else:  # a plain def runs in a thread, as fetch_next and process do
                    answer = bool(await anyio.to_thread.run_sync(handler.reopen, key))
        except Exception as error:
            log.warning(
                "%s reopen of item %s raised: %s",
                rt.name,
                key,
                describe(error),
                exc_info=error,
                extra=log_extra(rt.name, key),
            )
            return False, redact(f"reopen raised {describe(error)}")
        finally:
            with anyio.CancelScope(shield=True):
                await ctx.aclose()
        return answer, "reopened at its source" if answer else "its source did not reopen it"

    # ------------------------------------------------------------------ watching

    def offered(self, rt: HandlerRuntime, fetched: Sequence[str], started: float) -> None:
        """A fetch of ``rt`` that began at ``started`` (monotonic) returned the items whose
        keys (``str(id)``) are ``fetched``."""
        watches = self.watching.get(rt.name)
        if not watches:
            return
        keys = set(fetched)
        for key, watch in list(watches.items()):
            if watch.status.state != "requested":
                continue
            if key in keys:
                self._move(rt.name, key, "running", None)
                continue
            if started < watch.since:
                continue  # began before the source was reopened: it proves nothing
            # A full batch may have left the item behind a backlog: it counts for less.
            watch.misses += FULL_BATCH_MISS if len(keys) >= rt.batch_size else 1.0
            if watch.misses >= NOT_OFFERED_AFTER:
                self._move(rt.name, key, "not_offered", None)

    def item_finished(self, outcome: ItemOutcome) -> None:
        watches = self.watching.get(outcome.handler)
        if not watches:
            return
        key = str(outcome.item_id)
        if key not in watches:
            return
        if outcome.status is OutcomeStatus.SUCCEEDED:
            self._move(outcome.handler, key, "succeeded", None)
        elif outcome.status in (OutcomeStatus.FAILED, OutcomeStatus.TIMED_OUT):
            self._move(outcome.handler, key, "failed", outcome.error)

    def _move(self, handler: str, key: str, state: str, detail: str | None) -> None:
        watch = self.watching[handler][key]
        watch.status = replace(watch.status, state=state, detail=detail, updated_at=now())
        if watch.status.final:
            self._forget(handler, key, watch)
        if not math.isinf(watch.since):  # else reported once the request is complete
            self._report(watch.status)

    def _report(self, status: RetryStatus) -> None:
        core = self.core
        self._remember(status)
        core.hub.publish(RetryProgress(status))
        log.info(
            "retry of %s item %s (requested by %s): %s",
            status.handler,
            status.item_id,
            status.requested_by,
            status.message(),
            extra=log_extra(status.handler, status.item_id),
        )
        plane = getattr(core.store, "control_plane", None)
        if plane is not None and status.id is not None and core.task_group is not None:
            core.task_group.start_soon(self._save, plane, status)

    async def _save(self, plane: Any, status: RetryStatus) -> None:
        try:
            await plane.update_retry(status.id, status.state, status.detail)
        except Exception:
            log.exception("saving the state of retry request %s failed", status.id)

    def _remember(self, status: RetryStatus) -> RetryStatus:
        for index, known in enumerate(self.recent):
            if (known.handler, known.item_id, known.requested_at) == (
                status.handler,
                status.item_id,
                status.requested_at,
            ):
                del self.recent[index]
                break
        self.recent.append(status)
        return status

    def status(self, handler: str, item_id: Any) -> RetryStatus | None:
        """The latest request for this item made or taken by this service."""
        key = redact(str(item_id))
        for status in reversed(self.recent):
            if status.handler == handler and status.item_id == key:
                return status
        return None
