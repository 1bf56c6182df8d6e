"""The handler author's API (issue 12): plain methods, class defaults, steering exceptions,
mappings from fetch_next, clear errors for a wrong return value, and the public names."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from pydantic import BaseModel

import novaconsole
from novaconsole import (
    GiveUp,
    HandlerContext,
    HandlerPurpose,
    ItemRetrying,
    OutcomeStatus,
    RetryAfter,
    RetryPolicy,
)
from novaconsole.builder import BackgroundProcessing, load_handlers
from novaconsole.settings import load_settings
from tests.engine.support import next_event, processing

pytestmark = pytest.mark.anyio

HANG_GUARD = 20.0


class Thing:
    def __init__(self, id: int) -> None:
        self.id = id


class Plain:
    """Every method a plain def; process blocks the way blocking library code does."""

    calls: list[str] = []
    started = threading.Event()
    release = threading.Event()

    def fetch_next(self, max_items: int) -> list[Thing]:
        Plain.calls.append(f"fetch in {'loop' if _on_loop() else 'thread'}")
        return [Thing(1), Thing(2)]

    def process(self, item: Thing) -> None:
        Plain.calls.append(f"process {item.id} in {'loop' if _on_loop() else 'thread'}")
        if item.id == 1:
            Plain.started.set()
            # On the event loop this would block the test that sets it: a deadlock.
            assert Plain.release.wait(HANG_GUARD), "process blocked the event loop"
            return
        raise ValueError("item 2 fails")

    def on_failure(self, item: Thing, error: BaseException) -> None:
        Plain.calls.append(f"on_failure {item.id} in {'loop' if _on_loop() else 'thread'}")


def _on_loop() -> bool:
    try:
        anyio.get_current_task()
    except RuntimeError:
        return False
    return True


async def test_plain_methods_run_once_per_attempt_in_a_worker_thread() -> None:
    Plain.calls = []
    Plain.started.clear()
    Plain.release.clear()
    service = (
        processing(retry=RetryPolicy(max_attempts=1))
        .add_handler(Plain, name="Plain", max_items_per_cycle=2)
        .build()
    )
    with anyio.fail_after(HANG_GUARD):
        async with service.running(poll=False), anyio.create_task_group() as group:
            group.start_soon(service.run_once)
            await anyio.to_thread.run_sync(Plain.started.wait, HANG_GUARD)
            assert service.snapshot().in_flight >= 1  # the loop runs while process blocks
            Plain.release.set()
    totals = service.snapshot()
    assert (totals.succeeded, totals.failed) == (1, 1)
    assert sorted(Plain.calls) == [
        "fetch in thread",
        "on_failure 2 in thread",
        "process 1 in thread",
        "process 2 in thread",
    ]


class Declared:
    purpose = "export"
    max_items_per_cycle = 3
    poll_interval = "00:01:00"
    item_timeout = 5
    max_attempts = 2

    async def fetch_next(self, max_items: int) -> list[Thing]:
        return []

    async def process(self, item: Thing) -> None:
        pass


def test_registration_defaults_come_from_the_class_then_add_handler() -> None:
    builder = BackgroundProcessing().add_handler(Declared, name="A")
    builder.add_handler(Declared, name="B", max_items_per_cycle=9, purpose="ingestion")
    a, b = builder.registrations
    assert (a.purpose, a.max_items_per_cycle, a.max_attempts) == (HandlerPurpose.EXPORT, 3, 2)
    assert (a.poll_interval, a.item_timeout) == (timedelta(minutes=1), timedelta(seconds=5))
    assert (b.purpose, b.max_items_per_cycle, b.max_attempts) == (HandlerPurpose.INGESTION, 9, 2)


def test_a_bad_class_default_is_a_config_error() -> None:
    class Bad(Declared):
        max_attempts = 0

    with pytest.raises(novaconsole.ConfigError, match=r"handlers\.Bad\.max_attempts: must be"):
        BackgroundProcessing().add_handler(Bad)


@pytest.fixture
def app_dir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "declared_handlers.py").write_text(
        "class Declared:\n"
        "    purpose = 'export'\n"
        "    max_items_per_cycle = 3\n"
        "    max_attempts = 2\n"
        "    async def fetch_next(self, max_items): return []\n"
        "    async def process(self, item): pass\n",
        encoding="utf-8",
    )
    saved = list(sys.path)
    yield tmp_path
    sys.path[:] = saved
    sys.modules.pop("declared_handlers", None)


def test_handlers_keys_override_the_class_and_missing_keys_keep_it(app_dir: Path) -> None:
    config = app_dir / "config.toml"
    config.write_text(
        '[[handlers]]\nname = "Keys"\nfactory = "declared_handlers:Declared"\n'
        "max_items_per_cycle = 7\n"
        '[[handlers]]\nname = "Class"\nfactory = "declared_handlers:Declared"\n',
        encoding="utf-8",
    )
    keys, from_class = load_handlers(load_settings(config))
    assert (keys.max_items_per_cycle, keys.purpose, keys.max_attempts) == (
        7,
        HandlerPurpose.EXPORT,
        2,
    )
    assert (from_class.max_items_per_cycle, from_class.purpose) == (3, HandlerPurpose.EXPORT)


class Opts(BaseModel):
    greeting: str = "hi"


def test_handler_context_is_generic_in_its_options() -> None:
    ctx: HandlerContext[Opts] = HandlerContext[Opts](
        name="x", purpose=HandlerPurpose.INTERNAL, options=Opts()
    )
    assert ctx.options.greeting == "hi"


class Steered:
    attempts: dict[int, int] = {}
    failures: list[tuple[int, str]] = []

    async def fetch_next(self, max_items: int) -> list[Thing]:
        return [Thing(1), Thing(2)]

    async def process(self, item: Thing) -> None:
        n = Steered.attempts[item.id] = Steered.attempts.get(item.id, 0) + 1
        if item.id == 1 and n == 1:
            raise RetryAfter(timedelta(milliseconds=10), "rate limited")
        if item.id == 2:
            raise GiveUp("the record is malformed")

    async def on_failure(self, item: Thing, error: BaseException) -> None:
        Steered.failures.append((item.id, str(error)))


async def test_retry_after_and_give_up_steer_their_item() -> None:
    Steered.attempts, Steered.failures = {}, []
    # The policy's own delay is an hour: only RetryAfter's delay lets the test finish.
    policy = RetryPolicy(max_attempts=5, base_delay=3600, max_delay=3600, jitter=0)
    service = processing(retry=policy).add_handler(Steered, name="Steered").build()
    with anyio.fail_after(HANG_GUARD):
        async with service.running(poll=False):
            events = service.events()
            report = await service.run_once()
            second = await service.run_once()
            retrying = await next_event(events, lambda e: isinstance(e, ItemRetrying))
    by_id = {o.item_id: o for o in report.outcomes}
    assert by_id[1].status is OutcomeStatus.SUCCEEDED and by_id[1].attempts == 2
    assert isinstance(retrying, ItemRetrying) and retrying.delay == pytest.approx(0.01)
    assert by_id[2].status is OutcomeStatus.FAILED and by_id[2].attempts == 1
    assert by_id[2].error == "GiveUp: the record is malformed"
    assert Steered.failures == [(2, "the record is malformed")]
    assert [o.status for o in second.by_handler("Steered") if o.item_id == 2] == [
        OutcomeStatus.SKIPPED
    ]


class FromMappings:
    seen: list[Any] = []

    async def fetch_next(self, max_items: int) -> list[Mapping[str, Any]]:
        return [{"id": "a", "payload": 1}, {"id": "b", "payload": 2}]

    async def process(self, item: Mapping[str, Any]) -> None:
        FromMappings.seen.append(item["payload"])


async def test_fetch_next_may_return_mappings_with_an_id_key() -> None:
    FromMappings.seen = []
    service = processing().add_handler(FromMappings, name="Maps").build()
    async with service.running(poll=False):
        report = await service.run_once()
    assert sorted(o.item_id for o in report.outcomes) == ["a", "b"]
    assert sorted(FromMappings.seen) == [1, 2]


@pytest.mark.parametrize(
    ("returned", "named"),
    [({"id": 1}, "dict"), (42, "int"), ("abc", "str"), (iter([Thing(1)]), "list_iterator")],
)
async def test_a_return_value_that_is_not_a_list_is_one_clear_fetch_error(
    returned: Any, named: str
) -> None:
    class Wrong:
        async def fetch_next(self, max_items: int) -> Sequence[Any]:
            return returned  # type: ignore[no-any-return]

        async def process(self, item: Any) -> None:
            pass

    service = processing().add_handler(Wrong, name="Wrong").build()
    async with service.running(poll=False):
        report = await service.run_once()
    error = report.fetch_errors["Wrong"]
    assert error.startswith(f"TypeError: fetch_next of Wrong returned {named} ")
    assert error.endswith("it must return a list of items (or None)")


async def test_an_item_without_an_id_names_the_handler() -> None:
    class NoId:
        async def fetch_next(self, max_items: int) -> Sequence[Any]:
            return [{"name": "x"}]

        async def process(self, item: Any) -> None:
            pass

    service = processing().add_handler(NoId, name="NoId").build()
    async with service.running(poll=False):
        report = await service.run_once()
    assert (
        "fetch_next of NoId returned {'name': 'x'}, which has no id" in report.fetch_errors["NoId"]
    )


def test_every_public_name_resolves() -> None:
    for name in novaconsole.__all__:
        assert getattr(novaconsole, name) is not None, name
    for name in ("RetryAfter", "GiveUp", "NoDatabaseError", "Duration", "ItemFinished", "Observer"):
        assert name in novaconsole.__all__
