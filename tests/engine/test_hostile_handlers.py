"""Handlers that raise odd things or return odd batches: contained, never fatal (issue 11)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy

from novaconsole import HandlerContext, OutcomeStatus, RetryPolicy
from novaconsole.engine.outcomes import CycleReport
from novaconsole.engine.registry import ProcessingOptions
from novaconsole.engine.service import ProcessingService
from tests.engine.support import Item, Source, processing

pytestmark = pytest.mark.anyio

HANG_GUARD = 20.0
"""Seconds after which a wedged service fails the test instead of hanging the run."""


class Poison(BaseException):
    """A BaseException subclass that is neither ours nor asyncio's (a test framework's)."""


class Unprintable(Exception):
    """An error whose own ``str()`` raises (a broken ``__str__`` in a library)."""

    def __str__(self) -> str:
        raise RuntimeError("str() of this error fails too")


async def cancelled_elsewhere() -> None:
    """Await a task that something else cancels: a CancelledError the handler did not ask for."""
    task = asyncio.ensure_future(asyncio.sleep(3600))
    asyncio.get_running_loop().call_soon(task.cancel)
    await task


def raising(error: BaseException | None) -> Any:
    async def behaviour(item: Item, attempt: int) -> None:
        if item.id == 2:
            if error is None:
                await cancelled_elsewhere()
            raise error  # type: ignore[misc]

    return behaviour


async def run_twice(service: ProcessingService) -> tuple[CycleReport, CycleReport]:
    try:
        with anyio.fail_after(HANG_GUARD):
            async with service.running(poll=False):
                first = await service.run_once()
                second = await service.run_once()
    except BaseException as error:  # anything escaping is the bug
        pytest.fail(f"the service let {error!r} escape")
    return first, second


@pytest.mark.parametrize(
    "error",
    [
        None,
        asyncio.CancelledError(),
        KeyboardInterrupt(),
        SystemExit(3),
        Poison("boom"),
        Unprintable(),
    ],
    ids=[
        "cancelled-elsewhere",
        "CancelledError",
        "KeyboardInterrupt",
        "SystemExit",
        "Poison",
        "Unprintable",
    ],
)
async def test_an_odd_exception_from_process_fails_that_item_only(
    error: BaseException | None,
) -> None:
    source = Source(ids=[1, 2, 3], behaviour=raising(error))
    service = (
        processing(max_concurrency=2)
        .add_handler(source.handler(), name="Odd", max_items_per_cycle=3, max_attempts=2)
        .build()
    )
    first, second = await run_twice(service)
    statuses = {o.item_id: o.status for o in first.outcomes}
    assert statuses == {
        1: OutcomeStatus.SUCCEEDED,
        2: OutcomeStatus.FAILED,
        3: OutcomeStatus.SUCCEEDED,
    }
    failed = first.by_handler("Odd")[[o.item_id for o in first.outcomes].index(2)]
    assert failed.attempts == 2
    expected = "CancelledError" if error is None else type(error).__name__
    assert failed.error is not None and failed.error.startswith(expected)
    assert failed.traceback is not None and expected in failed.traceback
    # The worker slots live on: the dead item is skipped, nothing else is wedged.
    assert [o.status for o in second.outcomes] == [OutcomeStatus.SKIPPED]


@pytest.mark.parametrize(
    "error",
    [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(3), Poison("boom"), Unprintable()],
    ids=["CancelledError", "KeyboardInterrupt", "SystemExit", "Poison", "Unprintable"],
)
async def test_an_odd_exception_from_fetch_next_is_a_failed_fetch(error: BaseException) -> None:
    broken, healthy = Source(ids=[1], fetch_error=error), Source(ids=[7])
    service = (
        processing()
        .add_handler(broken.handler(), name="Broken")
        .add_handler(healthy.handler(), name="Healthy")
        .build()
    )
    first, second = await run_twice(service)
    assert first.fetch_errors["Broken"].startswith(type(error).__name__)
    assert [(o.handler, o.status) for o in first.outcomes] == [("Healthy", OutcomeStatus.SUCCEEDED)]
    assert "Broken" in second.fetch_errors  # fetched again, failing again: nothing wedged
    assert service.snapshot().handlers["Broken"].last_error is not None


@dataclass(frozen=True)
class AnyId:
    id: Any


class Returning:
    """A handler whose fetch_next returns what the test put in ``batch``."""

    batch: Any = None
    processed: list[Any] = []

    def __init__(self) -> None:
        pass

    async def fetch_next(self, max_items: int) -> Sequence[Any]:
        batch = Returning.batch
        Returning.batch = None  # once
        return batch  # type: ignore[no-any-return]

    async def process(self, item: Any) -> None:
        Returning.processed.append(item)


def returning(batch: Any) -> ProcessingService:
    Returning.batch = batch
    Returning.processed = []
    return processing().add_handler(Returning, name="Ret", max_items_per_cycle=10).build()


async def test_a_fetch_returning_more_than_asked_is_cut_to_the_batch_size(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = returning([AnyId(i) for i in range(100_000)])
    with caplog.at_level(logging.WARNING, logger="novaconsole.engine"):
        first, _ = await run_twice(service)
        Returning.batch = [AnyId(i) for i in range(50)]
        async with service.running(poll=False):
            third = await service.run_once()
    assert len(first.outcomes) == 10
    assert len(third.outcomes) == 10
    surplus = [r for r in caplog.records if "when asked for 10" in r.getMessage()]
    assert len(surplus) == 1  # said once, not on every fetch
    assert "100000 items" in surplus[0].getMessage()


async def test_ids_that_are_not_str_int_or_uuid_are_refused_with_a_clear_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    batch = [AnyId(1), AnyId(1.5), AnyId(("a", 1)), AnyId(True), AnyId("ok")]
    service = returning(batch)
    with caplog.at_level(logging.ERROR, logger="novaconsole.engine"):
        first, _ = await run_twice(service)
    assert sorted(str(o.item_id) for o in first.outcomes) == ["1", "ok"]
    assert sorted(str(item.id) for item in Returning.processed) == ["1", "ok"]
    message = next(
        r.getMessage() for r in caplog.records if "not a str, int or UUID" in r.getMessage()
    )
    assert "fetch_next of Ret returned 3 items" in message
    assert "1.5 of type float" in message
    assert service.snapshot().handlers["Ret"].last_error == message


async def test_duplicate_ids_in_one_batch_are_processed_once_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = returning([AnyId("a"), AnyId("b"), AnyId("a"), AnyId("a")])
    with caplog.at_level(logging.WARNING, logger="novaconsole.engine"):
        first, _ = await run_twice(service)
    assert sorted(o.item_id for o in first.outcomes) == ["a", "b"]
    assert len(Returning.processed) == 2
    assert any("2 duplicate ids in one batch (e.g. a)" in r.getMessage() for r in caplog.records)


HOSTILE = "connect postgresql://app:s3cret@db/x failed \x1b]0;pwned\x07\x1b[2J"


async def test_error_text_traceback_and_logged_ids_are_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Leaky:
        async def fetch_next(self, max_items: int) -> Sequence[Any]:
            return [AnyId("id\x1b[2J")]

        async def process(self, item: Any) -> None:
            raise ValueError(HOSTILE)

    service = processing(retry=RetryPolicy(max_attempts=1)).add_handler(Leaky, name="Leaky").build()
    with caplog.at_level(logging.WARNING, logger="novaconsole.engine"):
        first, _ = await run_twice(service)
    (outcome,) = first.outcomes
    texts = [outcome.error or "", outcome.traceback or "", outcome.history[0].error or ""]
    texts.append(service.snapshot().handlers["Leaky"].last_error or "")
    texts += [r.getMessage() for r in caplog.records]
    texts += [str(getattr(r, "item_id", "")) for r in caplog.records]
    for text in texts:
        assert "s3cret" not in text
        assert "\x1b" not in text and "\x07" not in text
    assert "postgresql://app:***@db/x" in (outcome.error or "")
    assert "\\x1b]0;pwned" in (outcome.traceback or "")
    assert any("id\\x1b[2J" in r.getMessage() for r in caplog.records)


async def test_a_failed_statement_is_one_line_without_its_sql_or_parameters(
    tmp_path: Path,
) -> None:
    """The error of a handler's failed statement is the driver's first line; the statement
    and its parameters (item data) stay in the traceback."""

    class BadQuery:
        def __init__(self, ctx: HandlerContext) -> None:
            self.ctx = ctx

        async def fetch_next(self, max_items: int) -> Sequence[Any]:
            return [Item(1)]

        async def process(self, item: Item) -> None:
            async with self.ctx.session() as session:
                query = sqlalchemy.text("SELECT nope FROM t WHERE id = :v")
                await session.execute(query, {"v": "value-7"})

    url = f"sqlite+aiosqlite:///{tmp_path / 'bad.db'}"
    service = (
        processing(retry=RetryPolicy(max_attempts=1))
        .add_handler(BadQuery, name="BadQuery")
        .build(url)
    )
    async with service.running(poll=False):
        async with service.store.engine.begin() as connection:
            await connection.execute(sqlalchemy.text("CREATE TABLE t (id TEXT)"))
        (outcome,) = (await service.run_once()).outcomes
    assert outcome.error == "OperationalError: no such column: nope"
    assert "SELECT nope FROM t" in (outcome.traceback or "")


def test_the_database_shown_never_carries_its_password() -> None:
    service = ProcessingService(
        options=ProcessingOptions(),
        retry=RetryPolicy(),
        registrations=(),
        database_url="postgresql://app:s3cret@db/x",
    )
    assert service.database_display == "postgresql://app:***@db/x"
