"""OpenTelemetry spans: one per fetch, one per processing attempt (the ``otel`` extra).

Only imported when ``opentelemetry-api`` is installed. Spans go to the tracer provider the
application set up; while it has set none, none are made (the API alone would make no-op
spans at some 15 µs per item). Text a handler controls (item ids,
error messages, tracebacks) is redacted before it becomes an attribute.
"""

from __future__ import annotations

import traceback

from opentelemetry import context, trace
from opentelemetry.trace import ProxyTracerProvider, Span, Status, StatusCode, Tracer

from novaconsole.engine.observers import Observer
from novaconsole.engine.outcomes import OutcomeStatus
from novaconsole.redaction import redact

SCOPE = "novaconsole"
HANDLER = "novaconsole.handler"
ITEM_ID = "novaconsole.item_id"
ATTEMPT = "novaconsole.attempt"
OUTCOME = "novaconsole.outcome"
ITEMS = "novaconsole.items"
QUEUE_WAIT = "novaconsole.queue_wait_seconds"

_ERRORS = frozenset({OutcomeStatus.FAILED, OutcomeStatus.TIMED_OUT})


class TracingObserver(Observer):
    """Starts a span (made current, so spans a handler starts are its children) before each
    ``fetch_next`` and ``process`` call and ends it after, with the outcome."""

    def __init__(self, tracer: Tracer | None = None) -> None:
        self._global = tracer is None
        self.tracer = tracer if tracer is not None else trace.get_tracer(SCOPE)
        self.active = True
        """False while no tracer provider is set up (the API alone): spans are skipped."""

    def _start(self, name: str, attributes: dict[str, str | int | float]) -> object:
        span = self.tracer.start_span(name, attributes=attributes)
        return span, context.attach(trace.set_span_in_context(span))

    def fetch_started(self, handler: str) -> object | None:
        if self._global:
            # Looked up once per fetch, not per item (it costs about 3 µs): an application
            # that sets its provider after start-up is traced from its next fetch on.
            self.active = not isinstance(trace.get_tracer_provider(), ProxyTracerProvider)
        if not self.active:
            return None
        return self._start(f"fetch {handler}", {HANDLER: handler})

    def fetch_finished(
        self,
        handler: str,
        token: object | None,
        count: int,
        duration: float,
        error: BaseException | None,
    ) -> None:
        span = _end_context(token)
        if span is None:
            return
        span.set_attribute(ITEMS, count)
        if error is not None:
            _record(span, error)
        span.end()

    def attempt_started(
        self, handler: str, item_id: object, attempt: int, queue_wait: float
    ) -> object | None:
        if not self.active:
            return None
        return self._start(
            f"process {handler}",
            {
                HANDLER: handler,
                ITEM_ID: redact(str(item_id)),
                ATTEMPT: attempt,
                QUEUE_WAIT: queue_wait,
            },
        )

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
        span = _end_context(token)
        if span is None:
            return
        span.set_attribute(OUTCOME, status.value)
        if error is not None:
            _record(span, error)
        elif status in _ERRORS:
            span.set_status(Status(StatusCode.ERROR, status.value))
        span.end()


def _end_context(token: object | None) -> Span | None:
    """Restore the context that was current before the span started; the span."""
    if not isinstance(token, tuple):
        return None
    span, context_token = token
    context.detach(context_token)
    return span if isinstance(span, Span) else None


def _record(span: Span, error: BaseException) -> None:
    message = redact(str(error))
    span.record_exception(
        error,
        attributes={
            "exception.message": message,
            "exception.stacktrace": redact("".join(traceback.format_exception(error))),
        },
    )
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {message}"))
