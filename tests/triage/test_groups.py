"""Failure groups formed from mixed errors in a real SQLite store, and the same groups from a
service without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from novaconsole.engine.outcomes import OutcomeStatus
from novaconsole.store import open_store
from novaconsole.store.triage import failure_groups, group_members
from novaconsole.triage import group_failures, rows_from_outcomes
from tests.store.support import outcome

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
FAILED = OutcomeStatus.FAILED


def mixed() -> list:
    at = [T0 + timedelta(minutes=n) for n in range(20)]
    return [
        # CatalogImport: three items with the same error but for the offset.
        outcome(
            "a.csv",
            handler="CatalogImport",
            status=FAILED,
            finished_at=at[0],
            error="SourceError: not UTF-8 text (bad byte at offset 17)",
        ),
        outcome(
            "b.csv",
            handler="CatalogImport",
            status=FAILED,
            finished_at=at[1],
            error="SourceError: not UTF-8 text (bad byte at offset 4021)",
        ),
        outcome(
            "c.csv",
            handler="CatalogImport",
            status=FAILED,
            finished_at=at[2],
            error="SourceError: not UTF-8 text (bad byte at offset 3)",
        ),
        # c.csv failed twice: counted once, its latest failure.
        outcome(
            "c.csv",
            handler="CatalogImport",
            status=FAILED,
            finished_at=at[3],
            error="SourceError: not UTF-8 text (bad byte at offset 9)",
        ),
        # d.csv failed, then was retried and succeeded: no longer failed.
        outcome(
            "d.csv",
            handler="CatalogImport",
            status=FAILED,
            finished_at=at[4],
            error="SourceError: not UTF-8 text (bad byte at offset 1)",
        ),
        outcome("d.csv", handler="CatalogImport", finished_at=at[5]),
        # Another exception type of the same handler: its own group.
        outcome(
            "e.csv",
            handler="CatalogImport",
            status=FAILED,
            finished_at=at[6],
            error="ValueError: no column 'sku' in row 12",
        ),
        # Timeouts and a secret in the error text.
        outcome(
            7,
            handler="NotificationExport",
            status=OutcomeStatus.TIMED_OUT,
            finished_at=at[7],
            error="TimeoutError: timed out after 30s",
        ),
        outcome(
            8,
            handler="NotificationExport",
            status=OutcomeStatus.TIMED_OUT,
            finished_at=at[8],
            error="TimeoutError: timed out after 30s",
        ),
        outcome(
            9,
            handler="NotificationExport",
            status=FAILED,
            finished_at=at[9],
            error="ConnectionError: postgresql://app:s3cret@db:5432/x refused \x1b[2J",
        ),
        # Skipped and succeeded outcomes never form groups.
        outcome(
            10,
            handler="NotificationExport",
            status=OutcomeStatus.SKIPPED,
            finished_at=at[10],
            error="out of attempts (3)",
        ),
    ]


async def test_groups_form_from_mixed_errors(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'n.db'}"
    store = open_store(url)
    await store.open()
    store.record(mixed())
    await store.close()

    groups = await failure_groups(url)
    titles = [(g.handler, g.title, g.count) for g in groups]
    assert titles == [
        ("CatalogImport", "SourceError: not UTF-8 text (bad byte at offset #)", 3),
        ("NotificationExport", "TimeoutError: timed out after #s", 2),
        ("CatalogImport", "ValueError: no column '…' in row #", 1),
        ("NotificationExport", "ConnectionError: postgresql://app:***@db:#/x refused \\x1b[#J", 1),
    ]
    source = groups[0]
    assert source.first_seen == T0 and source.last_seen == T0 + timedelta(minutes=3)
    assert source.sample_item_id == "c.csv"
    assert source.sample_error == "SourceError: not UTF-8 text (bad byte at offset 9)"
    assert source.sample_traceback and "Traceback" in source.sample_traceback
    assert "s3cret" not in str(groups[3].as_dict()) and "\x1b" not in str(groups[3].as_dict())

    # Ids are stable across calls; a group opens its items, latest first.
    again = await failure_groups(url)
    assert [g.id for g in again] == [g.id for g in groups]
    found, items = await group_members(url, source.id)
    assert found == source
    assert [i.item_id for i in items] == ["c.csv", "b.csv", "a.csv"]
    assert await group_members(url, "0000000000") == (None, [])

    only = await failure_groups(url, "NotificationExport")
    assert [g.handler for g in only] == ["NotificationExport"] * 2
    # The same groups without a database, from outcomes kept in memory.
    memory = group_failures(rows_from_outcomes(mixed()))
    assert [(g.id, g.count) for g in memory] == [(g.id, g.count) for g in groups]


async def test_no_database_yet_means_no_groups(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing.db'}"
    assert await failure_groups(url) == []
    assert not (tmp_path / "missing.db").exists()
