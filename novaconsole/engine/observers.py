"""Observer hooks: what metrics and tracing see of the engine.

Subclass :class:`Observer`, override the methods you need and register it with
``ProcessingService(..., observers=[...])`` or ``service.add_observer(observer)``. Every method
is called synchronously on the event loop, so it must be cheap; an exception it raises never
reaches the engine (it is logged once per observer class and method, then ignored).

``attempt_started`` runs in the slot task that then awaits ``process``, and
``fetch_started`` in the task that awaits ``fetch_next``: a context variable set there (a span
made current) is current during the call, and the ``*_finished`` hook, called in the same task,
gets back the token ``*_started`` returned to restore it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from novaconsole.engine.outcomes import ItemOutcome, OutcomeStatus

log = logging.getLogger("novaconsole.engine")


class Observer:
    """Engine hooks, all no-ops by default."""

    def fetch_started(self, handler: str) -> object | None:
        """Before a ``fetch_next`` call; the return value is handed to ``fetch_finished``."""
        return None

    def fetch_finished(
        self,
        handler: str,
        token: object | None,
        count: int,
        duration: float,
        error: BaseException | None,
    ) -> None:
        """After a ``fetch_next`` call: ``count`` items returned, or the ``error`` it ended in."""

    def attempt_started(
        self, handler: str, item_id: object, attempt: int, queue_wait: float
    ) -> object | None:
        """Before a ``process`` call (``attempt`` is 1-based, ``queue_wait`` in seconds)."""
        return None

    def attempt_finished(
        self,
        handler: str,
        item_id: object,
        attempt: int,
        token: object | None,
        duration: float,
        status: OutcomeStatus,
        error: BaseException | None,
    ) -> None:
        """After a ``process`` call; ``status`` is the attempt's result: succeeded, failed,
        timed_out or cancelled."""

    def item_finished(self, outcome: ItemOutcome) -> None:
        """Once per final outcome of an item."""


_complained: set[tuple[str, str]] = set()


def _contain(observer: Observer, hook: str, error: Exception) -> None:
    key = (type(observer).__qualname__, hook)
    if key in _complained:
        return
    _complained.add(key)
    log.error(
        "observer %s.%s raised; its errors are ignored from now on",
        key[0],
        hook,
        exc_info=error,
    )


# The functions below call one hook on every observer, containing their errors; the
# ``*_finished`` ones go in reverse order, so context tokens unwind like a stack.


def fetch_started(observers: Sequence[Observer], handler: str) -> list[object | None]:
    tokens: list[object | None] = []
    for observer in observers:
        try:
            tokens.append(observer.fetch_started(handler))
        except Exception as exc:
            _contain(observer, "fetch_started", exc)
            tokens.append(None)
    return tokens


def fetch_finished(
    observers: Sequence[Observer],
    tokens: Sequence[object | None],
    handler: str,
    count: int,
    duration: float,
    error: BaseException | None,
) -> None:
    for observer, token in reversed(list(zip(observers, tokens, strict=False))):
        try:
            observer.fetch_finished(handler, token, count, duration, error)
        except Exception as exc:
            _contain(observer, "fetch_finished", exc)


def attempt_started(
    observers: Sequence[Observer], handler: str, item_id: object, attempt: int, wait: float
) -> list[object | None]:
    tokens: list[object | None] = []
    for observer in observers:
        try:
            tokens.append(observer.attempt_started(handler, item_id, attempt, wait))
        except Exception as exc:
            _contain(observer, "attempt_started", exc)
            tokens.append(None)
    return tokens


def attempt_finished(
    observers: Sequence[Observer],
    tokens: Sequence[object | None],
    handler: str,
    item_id: object,
    attempt: int,
    duration: float,
    status: OutcomeStatus,
    error: BaseException | None,
) -> None:
    for observer, token in reversed(list(zip(observers, tokens, strict=False))):
        try:
            observer.attempt_finished(handler, item_id, attempt, token, duration, status, error)
        except Exception as exc:
            _contain(observer, "attempt_finished", exc)


def item_finished(observers: Sequence[Observer], outcome: ItemOutcome) -> None:
    for observer in observers:
        try:
            observer.item_finished(outcome)
        except Exception as exc:
            _contain(observer, "item_finished", exc)
