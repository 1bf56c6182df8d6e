"""Prometheus metrics scraped over HTTP from a real service on a SQLite file, while it works."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import anyio
import httpx
import pytest

pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")

from novaconsole import RetryPolicy
from novaconsole.engine.service import ProcessingService
from novaconsole.errors import ConfigError
from novaconsole.observability import instrumented
from novaconsole.observability.metrics import serving_metrics
from novaconsole.settings import load_settings
from tests.engine.support import Item, Source, processing
from tests.observability.support import scrape, value

pytestmark = pytest.mark.anyio


class Gated:
    """Items 0-2 succeed, 3 always fails (a secret in its message), 4 and 5 wait for ``gate``."""

    def __init__(self) -> None:
        self.gate = anyio.Event()
        self.waiting = 0
        self.both_waiting = anyio.Event()

    async def __call__(self, item: Item, attempt: int) -> None:
        if item.id == 3:
            raise ValueError("postgresql://app:hunter2@db/x refused")
        if item.id in (4, 5):
            self.waiting += 1
            if self.waiting == 2:
                self.both_waiting.set()
            await self.gate.wait()


def sqlite_service(tmp_path: Path, source: Source) -> ProcessingService:
    builder = processing(
        max_concurrency=4,
        retry=RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0),
    ).add_handler(source.handler(), name="Toy", max_items_per_cycle=10)
    return builder.build(database_url=f"sqlite+aiosqlite:///{tmp_path / 'metrics.db'}")


async def test_scraped_while_items_run_then_after(tmp_path: Path) -> None:
    gated = Gated()
    source = Source(ids=list(range(6)), behaviour=gated)
    service = sqlite_service(tmp_path, source)
    async with serving_metrics(service, host="127.0.0.1", port=0) as port:
        async with service.running(poll=False), anyio.create_task_group() as group:
            group.start_soon(service.run_once)
            with anyio.fail_after(30):
                await gated.both_waiting.wait()
            during = await scrape(port)
            assert value(during, "novaconsole_items_in_flight", handler="Toy") == 2
            assert value(during, "novaconsole_concurrency") == 4
            assert value(during, "novaconsole_handler_paused", handler="Toy") == 0
            assert value(during, "novaconsole_items_fetched_total", handler="Toy") == 6
            assert value(during, "novaconsole_fetch_duration_seconds_count", handler="Toy") == 1
            assert value(during, "novaconsole_items_total", handler="Toy", status="succeeded") == 3
            assert value(during, "novaconsole_queue_wait_seconds_count", handler="Toy") >= 5
            service.pause_handler("Toy")
            assert value(await scrape(port), "novaconsole_handler_paused", handler="Toy") == 1
            gated.gate.set()
        after = await scrape(port)
    assert value(after, "novaconsole_items_total", handler="Toy", status="succeeded") == 5
    assert value(after, "novaconsole_items_total", handler="Toy", status="failed") == 1
    assert value(after, "novaconsole_items_dead_total", handler="Toy") == 1
    assert value(after, "novaconsole_attempts_total", handler="Toy", status="failed") == 2
    assert value(after, "novaconsole_attempts_total", handler="Toy", status="succeeded") == 5
    assert value(after, "novaconsole_attempt_duration_seconds_count", handler="Toy") == 7
    assert value(after, "novaconsole_items_in_flight", handler="Toy") == 0
    assert value(after, "novaconsole_queue_depth") == 0
    assert value(after, "novaconsole_outcomes_buffered") == 0  # written on leaving running()
    assert value(after, "novaconsole_stale_outcomes_rejected_total") == 0
    assert value(after, "novaconsole_cycles_total") == 1
    assert ("process_cpu_seconds_total", frozenset()) in after


async def test_a_fetch_error_is_counted(tmp_path: Path) -> None:
    source = Source(ids=[1], fetch_error=ConnectionError("down"))
    service = sqlite_service(tmp_path, source)
    async with serving_metrics(service, host="127.0.0.1", port=0) as port:
        async with service.running(poll=False):
            await service.run_once()
        samples = await scrape(port)
    assert value(samples, "novaconsole_fetch_errors_total", handler="Toy") == 1
    assert value(samples, "novaconsole_fetch_duration_seconds_count", handler="Toy") == 1


async def test_metrics_are_off_unless_a_port_is_set(tmp_path: Path) -> None:
    service = sqlite_service(tmp_path, Source())
    before = len(service._core.observers)
    async with instrumented(service, load_settings(None)):
        pass
    tracing = 1 if "opentelemetry" in sys.modules or _otel_installed() else 0
    assert len(service._core.observers) == before + tracing  # no metrics observer


def _otel_installed() -> bool:
    from novaconsole.observability import tracing_available

    return tracing_available()


async def test_a_port_in_use_is_a_config_error(tmp_path: Path) -> None:
    service = sqlite_service(tmp_path, Source())
    async with serving_metrics(service, host="127.0.0.1", port=0) as port:
        settings = load_settings(None, overrides={"metrics.port": port})
        with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            async with instrumented(sqlite_service(tmp_path, Source()), settings):
                pass


HANDLERS = """
from dataclasses import dataclass

import anyio


@dataclass
class Item:
    id: int


class Slow:
    async def fetch_next(self, max_items):
        return [Item(i) for i in range(max_items)]

    async def process(self, item):
        await anyio.sleep(3600)
"""


@pytest.mark.slow  # the real headless worker in a subprocess
def test_the_headless_worker_serves_metrics_as_configured(tmp_path: Path) -> None:
    (tmp_path / "metric_handlers.py").write_text(HANDLERS)
    (tmp_path / "config.toml").write_text(
        textwrap.dedent(
            f"""
            [processing]
            shutdown_grace = "00:00:00"
            [database]
            url = "sqlite+aiosqlite:///{tmp_path / "w.db"}"
            [metrics]
            port = 0
            [[handlers]]
            name = "Slow"
            factory = "metric_handlers:Slow"
            max_items_per_cycle = 3
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOVACONSOLE_")}
    worker = subprocess.Popen(
        [sys.executable, "-m", "novaconsole", "--no-ui", "--log-format", "json"],
        cwd=tmp_path,
        env=env | {"PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stderr is not None
        port = None
        for line in worker.stderr:
            if found := re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", line):
                port = int(found.group(1))
                break
        assert port is not None, "the worker never said where its metrics are"
        url = f"http://127.0.0.1:{port}/metrics"
        for _ in range(600):  # until the three items are in flight (each scrape waits on I/O)
            text = httpx.get(url, timeout=30).text
            if 'novaconsole_items_in_flight{handler="Slow"} 3.0' in text:
                break
            threading.Event().wait(0.05)  # poll again: the worker is still fetching
        else:
            raise AssertionError(f"the items never showed in flight:\n{text}")
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait(60)


def test_metrics_settings_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[metrics]\nport = 70000\n")
    with pytest.raises(ConfigError, match=r"metrics\.port"):
        load_settings(config)
    config.write_text('[metrics]\nport = 9464\nhost = "0.0.0.0"\n')
    settings = load_settings(config)
    assert (settings.metrics.port, settings.metrics.host) == (9464, "0.0.0.0")
    assert load_settings(None).metrics.port is None  # off by default
