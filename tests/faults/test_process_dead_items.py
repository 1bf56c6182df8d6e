"""Issue 11, point 9: an item out of attempts that its source keeps returning is recorded
``skipped`` once and then only counted, and is never claimed again to be skipped."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from novaconsole import BackgroundProcessing, OutcomeStatus, RetryPolicy
from novaconsole.engine.service import ProcessingService
from novaconsole.store import open_store
from tests.faults.process_support import until

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Item:
    id: int


class Broken:
    """Returns item 1 on every fetch; it always fails."""

    async def fetch_next(self, max_items: int) -> Sequence[Item]:
        return [Item(1)]

    async def process(self, item: Item) -> None:
        raise RuntimeError("broken for good")


def build(db_path: Path) -> ProcessingService:
    store = open_store(f"sqlite+aiosqlite:///{db_path}", shared=True)  # claims, as a fleet
    return (
        BackgroundProcessing(poll_interval=0.01, shutdown_grace=5, retry=RetryPolicy(1, 0, 0))
        .add_handler(Broken, name="Broken")
        .build(store=store)
    )


def statuses(db_path: Path) -> list[str]:
    with sqlite3.connect(db_path) as connection:
        rows = connection.execute("SELECT status FROM novaconsole_results ORDER BY id")
        return [row[0] for row in rows]


def count_claims(service: ProcessingService) -> list[str]:
    """Every claim statement the service's store sends from now on."""
    sent: list[str] = []

    def seen(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "INSERT INTO novaconsole_claims" in statement:
            sent.append(statement)

    event.listen(service.store.engine.sync_engine, "before_cursor_execute", seen)  # type: ignore[attr-defined]
    return sent


async def test_a_dead_item_returned_on_every_poll_is_recorded_once_and_counted(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "dead.db"
    service = build(db_path)
    async with service.running():
        await until(lambda: service.snapshot().handlers["Broken"].dead_returned >= 1, "dead")
        claims = count_claims(service)
        await until(lambda: service.snapshot().handlers["Broken"].dead_returned >= 20, "polls")
        view = service.snapshot().handlers["Broken"]
        forced = await service.run_once()
        assert claims == [], "a dead item is skipped without claiming it"
    # Its failure is the record; a run-once still reports it skipped, without a row.
    assert [o.status for o in forced.outcomes] == [OutcomeStatus.SKIPPED]
    assert (view.dead_items, view.failed, view.skipped) == (1, 1, 0)
    assert statuses(db_path) == ["failed"]

    again = build(db_path)  # a restart records the skip once more, then counts
    async with again.running():
        await until(lambda: again.snapshot().handlers["Broken"].dead_returned >= 10, "polls")
        view = again.snapshot().handlers["Broken"]
    assert (view.dead_items, view.skipped) == (1, 1)
    assert statuses(db_path) == ["failed", "skipped"]


class BrokenPair:
    """Returns items 1 and 2, a full batch of 2, on every fetch; they always fail."""

    async def fetch_next(self, max_items: int) -> Sequence[Item]:
        return [Item(1), Item(2)][:max_items]

    async def process(self, item: Item) -> None:
        raise RuntimeError("broken for good")


async def test_a_handler_whose_full_batch_is_all_dead_is_warned_of_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its source returns the same dead items first, batch after batch: the handler makes no
    progress, and the log says so (once a streak, not at every poll)."""
    service = (
        BackgroundProcessing(poll_interval=0.01, retry=RetryPolicy(1, 0, 0))
        .add_handler(BrokenPair, name="Pair", max_items_per_cycle=2)
        .build(database_url=f"sqlite+aiosqlite:///{tmp_path / 'pair.db'}")
    )
    async with service.running():
        await until(lambda: service.snapshot().handlers["Pair"].dead_returned >= 20, "polls")
    warned = [r for r in caplog.records if "makes no progress" in r.getMessage()]
    assert len(warned) == 1
    assert warned[0].levelname == "WARNING"
    assert "novaconsole retry Pair ITEM_ID" in warned[0].getMessage()
