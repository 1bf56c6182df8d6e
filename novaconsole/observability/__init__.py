"""Metrics and traces for a running service: Prometheus (``[metrics]``, the ``metrics``
extra) and OpenTelemetry (when ``opentelemetry-api`` is installed, the ``otel`` extra).

Neither library is imported unless it is used: with ``[metrics] port`` unset and no
OpenTelemetry installed, :func:`instrumented` adds nothing to the service.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

from novaconsole.errors import ConfigError

if TYPE_CHECKING:
    from novaconsole.engine.service import ProcessingService
    from novaconsole.settings import Settings


def tracing_available() -> bool:
    """Whether ``opentelemetry-api`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("opentelemetry.trace") is not None
    except (ImportError, ValueError):
        return False


def add_tracing(service: ProcessingService) -> bool:
    """Give ``service`` a span per fetch and per attempt if OpenTelemetry is installed."""
    if not tracing_available():
        return False
    from novaconsole.observability.tracing import TracingObserver

    service.add_observer(TracingObserver())
    return True


@asynccontextmanager
async def instrumented(
    service: ProcessingService, settings: Settings | None = None
) -> AsyncIterator[None]:
    """Trace ``service`` and serve its metrics while the block runs, as ``settings`` say
    (``[metrics]``, ``[tracing]``; None: defaults, so traces only).

    Enter it before ``service.running()`` so the first fetch is seen, and leave it after, so
    ``/metrics`` answers while the service drains.
    """
    metrics = settings.metrics if settings is not None else None
    if settings is None or settings.tracing.enabled:
        add_tracing(service)
    async with AsyncExitStack() as stack:
        if metrics is not None and metrics.port is not None:
            await stack.enter_async_context(_metrics(service, metrics.host, metrics.port))
        yield


@asynccontextmanager
async def _metrics(service: ProcessingService, host: str, port: int) -> AsyncIterator[int]:
    try:
        from novaconsole.observability.metrics import serving_metrics
    except ImportError as error:
        raise ConfigError(
            f"needs prometheus-client ({error.name} is missing): "
            "pip install 'novaconsole[metrics]'",
            key="metrics.port",
        ) from None
    async with AsyncExitStack() as stack:
        try:
            bound = await stack.enter_async_context(serving_metrics(service, host=host, port=port))
        except OSError as error:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {error.strerror or error}",
                key="metrics.port",
            ) from None
        yield bound
