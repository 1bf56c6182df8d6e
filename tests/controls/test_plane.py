"""The control plane in one process and on a real SQLite file: validation where controls are
read, the audit history, pauses with who/why/expiry, and honest retry."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import text

from novaconsole import BackgroundProcessing
from novaconsole.engine.events import ControlChanged, RetryProgress
from novaconsole.engine.operator import (
    AUDIT_KEEP,
    MAX_BATCH_SIZE,
    MAX_CONCURRENCY,
    PauseInfo,
    describe_pause,
)
from novaconsole.engine.persistence import Controls
from novaconsole.engine.service import ProcessingService
from novaconsole.store import control_plane, open_store
from novaconsole.store.operator import OperatorClient
from tests.engine.support import Source, next_event, processing

pytestmark = pytest.mark.anyio


def _url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'plane.db'}"


def _service(url: str, source: Source, **options: Any) -> ProcessingService:
    options.setdefault("poll_interval", 0.05)
    builder: BackgroundProcessing = processing(**options)
    return builder.add_handler(source.handler(), name="A", max_items_per_cycle=5).build(
        store=open_store(url)
    )


async def _until(check: Any, what: str, within: float = 10.0) -> None:
    """Wait for a condition the service reaches on its own (it has no event for each)."""
    with anyio.fail_after(within):
        while not check():  # noqa: ASYNC110
            await anyio.sleep(0.02)


# ---------------------------------------------------------------------- validation


async def test_a_control_row_written_into_the_database_is_clamped_and_refused_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = _url(tmp_path)
    service = _service(url, Source(ids=[]))
    async with service.running():
        pass  # creates the schema
    with sqlite3.connect(tmp_path / "plane.db") as db:
        db.execute(
            "INSERT INTO novaconsole_controls (scope, name, paused, concurrency, batch_size) "
            "VALUES ('global', '', 0, 100000, NULL), ('handler', 'A', 0, NULL, -5), "
            "('handler', 'Ghost', 1, NULL, 7)"
        )
    caplog.set_level(logging.WARNING)
    async with service.running():
        snapshot = service.snapshot()
        assert snapshot.concurrency == MAX_CONCURRENCY
        assert snapshot.handlers["A"].batch_size == 1
        assert set(snapshot.handlers) == {"A"}
        cycles = service.snapshot().cycles
        await _until(lambda: service.snapshot().cycles > cycles + 3, "a few polls")
    refused = [r.getMessage() for r in caplog.records if "100000" in r.getMessage()]
    assert refused == ["stored concurrency 100000 is outside 1..1000: using 1000"]
    ghosts = [r.getMessage() for r in caplog.records if "Ghost" in r.getMessage()]
    assert len(ghosts) == 2  # its pause and its batch size, each said once
    assert all("no such handler here" in message for message in ghosts)


async def test_setters_refuse_values_out_of_range() -> None:
    service = processing().add_handler(Source().handler(), name="A").build()
    with pytest.raises(ValueError, match="at most 1000"):
        service.set_concurrency(MAX_CONCURRENCY + 1)
    with pytest.raises(ValueError, match=f"at most {MAX_BATCH_SIZE}"):
        service.set_batch_size("A", MAX_BATCH_SIZE + 1)
    with pytest.raises(ValueError, match="at least 1"):
        service.set_batch_size("A", 0)


async def test_unknown_commands_are_refused_by_the_worker_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = _url(tmp_path)
    source = Source(ids=[1], consume=False)
    service = _service(url, source, poll_interval=3600)
    caplog.set_level(logging.WARNING)
    async with service.running():
        with sqlite3.connect(tmp_path / "plane.db") as db:
            now = int(datetime.now(UTC).timestamp() * 1e6)
            db.execute(
                "INSERT INTO novaconsole_commands (kind, args, created_at) VALUES "
                f"('explode', '{{}}', {now}), ('run_once', '{{\"handler\": \"Ghost\"}}', {now})"
            )
        await _until(
            lambda: sum("ignoring fleet command" in r.getMessage() for r in caplog.records) == 2,
            "both commands refused",
        )
    messages = [
        r.getMessage() for r in caplog.records if "ignoring fleet command" in r.getMessage()
    ]
    assert "unknown kind 'explode'" in messages[0]
    assert "bad arguments" in messages[1]


# ---------------------------------------------------------------------- audit


async def test_every_change_is_audited_with_who_when_old_and_new(tmp_path: Path) -> None:
    url = _url(tmp_path)
    service = _service(url, Source(ids=[]))
    async with service.running():
        service.set_batch_size("A", 9, by="console@ops1")
        service.set_concurrency(3, by="console@ops1")
        service.pause_handler("A", reason="db maintenance", by="console@ops1")
        service.resume_handler("A")
    client = OperatorClient(url)
    try:
        await client.change(Controls(concurrency=5), "cli@ops2")
        entries = await client.audit()
    finally:
        await client.close()
    lines = [(e.by, e.what, e.handler, e.old, e.new, e.detail) for e in entries]
    assert lines == [
        ("console@ops1", "batch_size", "A", None, "9", None),
        ("console@ops1", "concurrency", None, None, "3", None),
        ("console@ops1", "pause", "A", "running", "paused", "db maintenance"),
        (service.worker_id, "resume", "A", "paused", "running", None),
        ("cli@ops2", "concurrency", None, "3", "5", None),
    ]
    assert all(entry.at.tzinfo is not None for entry in entries)
    assert [e.what for e in await service.audit()] == [e.what for e in entries]


async def test_the_audit_history_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store's bound, made small: 510 changes of one transaction each cost seconds.
    keep = 20
    assert keep < AUDIT_KEEP
    monkeypatch.setattr(control_plane, "AUDIT_KEEP", keep)
    client = OperatorClient(_url(tmp_path))
    try:
        for size in range(1, keep + 11):
            await client.change(Controls(batch_sizes={"A": size}), "cli@x")
        entries = await client.audit(limit=keep * 2)
    finally:
        await client.close()
    assert len(entries) == keep
    assert entries[-1].new == str(keep + 10)


# ---------------------------------------------------------------------- pause


def test_a_pause_is_described_with_who_when_why_and_until() -> None:
    now = datetime(2026, 1, 1, 13, 48, tzinfo=UTC)
    info = PauseInfo(
        by="cli@ops1",
        at=now - timedelta(minutes=12),
        reason="db maintenance",
        resumes_at=datetime(2026, 1, 1, 14, 0, tzinfo=UTC),
    )
    shown = describe_pause("PhysicalDeletion", info, now)
    local = info.resumes_at.astimezone().strftime("%H:%M") if info.resumes_at else ""
    assert (
        shown
        == f"PhysicalDeletion paused by cli@ops1 12 min ago: db maintenance; resumes at {local}"
    )
    assert describe_pause("everything", None, now) == "everything paused"


async def test_a_pause_carries_who_and_why_into_the_snapshot_and_ends_by_itself(
    tmp_path: Path,
) -> None:
    source = Source(ids=[1, 2], consume=True)
    service = _service(_url(tmp_path), source)
    events = service.events()
    service.pause(reason="db maintenance", until=timedelta(seconds=0.5), by="console@ops1")
    async with service.running():
        snapshot = service.snapshot()
        assert snapshot.paused and snapshot.pause is not None
        assert (snapshot.pause.by, snapshot.pause.reason) == ("console@ops1", "db maintenance")
        assert snapshot.pause.resumes_at is not None
        assert service.paused_lines()[0].startswith("everything paused by console@ops1")
        await next_event(events, lambda e: isinstance(e, ControlChanged) and e.value is False)
        assert not service.snapshot().paused and service.snapshot().pause is None
        await _until(lambda: not source.ids, "the items to run after the pause")
    async with service.running():  # the expiry was saved: it does not come back
        assert not service.snapshot().paused


async def test_a_pause_that_expired_while_nothing_ran_is_over_at_the_next_start(
    tmp_path: Path,
) -> None:
    url = _url(tmp_path)
    client = OperatorClient(url)
    try:
        info = PauseInfo(by="cli@ops1", reason="night")
        await client.change(
            Controls(handler_paused={"A": True}, handler_pauses={"A": info}),
            "cli@ops1",
            pause_for=timedelta(milliseconds=300),
        )
        stored = (await client.read()).controls.handler_pauses["A"]
        assert stored.resumes_at is not None and stored.reason == "night"
        with anyio.fail_after(10):  # the expiry passes with no worker up
            while (await client.read()).controls.handler_paused["A"]:  # noqa: ASYNC110
                await anyio.sleep(0.05)
    finally:
        await client.close()
    service = _service(url, Source(ids=[]))
    async with service.running():
        assert not service.snapshot().handlers["A"].paused


async def test_a_handler_paused_for_an_hour_shows_it_everywhere(tmp_path: Path) -> None:
    url = _url(tmp_path)
    service = _service(url, Source(ids=[]))
    async with service.running():
        service.pause_handler("A", reason="  disk   full ", until=timedelta(hours=1), by="x@y")
        view = service.snapshot().handlers["A"]
        assert view.state == "paused" and view.pause is not None
        assert view.pause.reason == "disk   full"
        await service.store.flush()  # type: ignore[attr-defined]
    client = OperatorClient(url)
    try:
        stored = (await client.read()).controls.handler_pauses["A"]
    finally:
        await client.close()
    assert (stored.by, stored.reason) == ("x@y", "disk   full")
    assert stored.resumes_at is not None
    assert stored.resumes_at - datetime.now(UTC) > timedelta(minutes=59)


# ---------------------------------------------------------------------- retry


class Reopenable:
    """A source whose failed items are parked as failed (fetch skips them) until reopened."""

    def __init__(self, fail_first: int = 1) -> None:
        self.pending = {1, 2}
        self.failed: set[int] = set()
        self.fail_first = fail_first
        self.runs: dict[int, int] = {}
        self.reopened: list[str] = []
        self.refuse_reopen = False

    def handler(self) -> type:
        source = self

        class Parked:
            def __init__(self) -> None:
                pass

            async def fetch_next(self, max_items: int) -> list[Any]:
                return [_Item(i) for i in sorted(source.pending)[:max_items]]

            async def process(self, item: Any) -> None:
                source.runs[item.id] = source.runs.get(item.id, 0) + 1
                if item.id == 1 and source.runs[item.id] <= source.fail_first:
                    raise RuntimeError("broken source row")
                source.pending.discard(item.id)

            async def on_failure(self, item: Any, error: BaseException) -> None:
                source.pending.discard(item.id)
                source.failed.add(item.id)

            async def reopen(self, item_id: str) -> bool:
                source.reopened.append(item_id)
                if source.refuse_reopen or int(item_id) not in source.failed:
                    return False
                source.failed.discard(int(item_id))
                source.pending.add(int(item_id))
                return True

        return Parked


class _Item:
    def __init__(self, item_id: int) -> None:
        self.id = item_id


def _retry_service(url: str, source: Reopenable) -> ProcessingService:
    from novaconsole import RetryPolicy

    return (
        processing(poll_interval=0.05, retry=RetryPolicy(max_attempts=1, base_delay=0.01))
        .add_handler(source.handler(), name="A")
        .build(store=open_store(url))
    )


async def _final(service: ProcessingService, events: Any) -> RetryProgress:
    event = await next_event(
        events, lambda e: isinstance(e, RetryProgress) and e.status.final, within=10
    )
    assert isinstance(event, RetryProgress)
    return event


async def test_a_retried_item_is_reopened_at_its_source_and_runs_again(tmp_path: Path) -> None:
    source = Reopenable(fail_first=1)
    service = _retry_service(_url(tmp_path), source)
    async with service.running():
        await _until(lambda: source.failed == {1} and not source.pending, "item 1 to fail")
        events = service.events()
        status = await service.request_retry("A", 1, by="console@ops1")
        assert status is not None  # it may have run again already
        final = await _final(service, events)
    assert source.reopened == ["1"]
    assert (final.status.state, final.status.message()) == ("succeeded", "ran again: succeeded")
    assert service.retry_status("A", 1) == final.status
    client = OperatorClient(_url(tmp_path))
    try:
        stored = await client.retry_status(final.status.id or 0)
    finally:
        await client.close()
    assert stored is not None and stored.state == "succeeded"
    assert stored.requested_by == "console@ops1"


async def test_a_retry_that_fails_again_says_so(tmp_path: Path) -> None:
    source = Reopenable(fail_first=5)
    service = _retry_service(_url(tmp_path), source)
    async with service.running():
        await _until(lambda: source.failed == {1}, "item 1 to fail")
        events = service.events()
        await service.request_retry("A", 1)
        final = await _final(service, events)
    assert final.status.state == "failed"
    assert final.status.message() == "ran again: failed (RuntimeError: broken source row)"


async def test_an_item_its_source_no_longer_returns_is_reported_not_offered(
    tmp_path: Path,
) -> None:
    source = Reopenable(fail_first=1)
    service = _retry_service(_url(tmp_path), source)
    async with service.running():
        await _until(lambda: source.failed == {1}, "item 1 to fail")
        source.refuse_reopen = True
        events = service.events()
        status = await service.request_retry("A", 1)
        assert status is not None and status.detail == "its source did not reopen it"
        final = await _final(service, events)
    assert final.status.state == "not_offered"
    assert final.status.message() == (
        "not offered again by fetch_next after 2 polls: its source no longer returns it"
    )
    assert source.runs[1] == 1


async def test_nothing_to_retry_without_attempts_or_a_reopen_hook(tmp_path: Path) -> None:
    source = Source(ids=[])
    service = _service(_url(tmp_path), source)
    async with service.running():
        assert await service.request_retry("A", 42) is None
        assert not await service.retry_item("A", 42)


async def test_a_retry_requested_while_stopped_runs_at_the_next_start(tmp_path: Path) -> None:
    url = _url(tmp_path)
    source = Reopenable(fail_first=1)
    service = _retry_service(url, source)
    async with service.running():
        await _until(lambda: source.failed == {1}, "item 1 to fail")
    client = OperatorClient(url)
    try:
        requested = await client.request_retry("A", "1", "cli@ops1")
        assert requested is not None and requested.state == "requested"
        assert requested.taken_by is None
        events = service.events()
        async with service.running():
            final = await _final(service, events)
        stored = await client.retry_status(requested.id or 0)
    finally:
        await client.close()
    assert final.status.state == "succeeded" and source.reopened == ["1"]
    assert stored is not None and stored.state == "succeeded"
    assert stored.taken_by == service.worker_id


async def test_the_store_keeps_controls_pause_info_through_a_restart(tmp_path: Path) -> None:
    url = _url(tmp_path)
    store = open_store(url)
    await store.open()
    info = PauseInfo(
        by="console@h", reason="why", resumes_at=datetime.now(UTC) + timedelta(hours=1)
    )
    store.save_controls(Controls(paused=True, pause=info, by="console@h"))
    await store.close()
    reopened = open_store(url)
    await reopened.open()
    loaded = await reopened.load_controls()
    async with reopened.engine.connect() as connection:
        who = await connection.scalar(text("SELECT by FROM novaconsole_audit"))
    await reopened.close()
    assert loaded.paused and loaded.pause is not None
    assert (loaded.pause.by, loaded.pause.reason) == ("console@h", "why")
    assert who == "console@h"


async def test_a_headless_worker_says_what_is_paused_at_start_and_again_while_it_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from novaconsole.pause_notice import remind_paused

    service = _service(_url(tmp_path), Source(ids=[]))
    service.pause_handler("A", reason="db maintenance", by="cli@ops1")
    caplog.set_level(logging.INFO, logger="novaconsole.headless")
    async with service.running(), anyio.create_task_group() as group:
        group.start_soon(remind_paused, service, 0.05)
        await _until(
            lambda: sum(r.getMessage().startswith("still: ") for r in caplog.records) >= 2,
            "two reminders",
        )
        group.cancel_scope.cancel()
    said = [r for r in caplog.records if r.name == "novaconsole.headless"]
    assert {r.levelname for r in said} == {"WARNING"}
    messages = [r.getMessage() for r in said]
    assert messages[0] == "A paused by cli@ops1 just now: db maintenance"
    assert messages[1] == "resume with `novaconsole resume [HANDLER]` (or wait for the expiry)"
    assert messages[2] == "still: A paused by cli@ops1 just now: db maintenance"
