"""The audit screen (key A): who changed which control, when; pictures from fixed entries at a
fixed time, hostile text neutralised; the key, reload and the palette on a real service."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

import pytest

from novaconsole import BackgroundProcessing
from novaconsole.console import NovaConsole
from novaconsole.console.commands import console_commands
from novaconsole.console.screens.audit import AuditScreen, audit_rows, entry_text
from novaconsole.engine.operator import AuditEntry
from novaconsole.store import open_store
from tests.console.support import T0, FixedService, fixed_app, wait_until
from tests.factories import Source

HOSTILE = "db maintenance \x1b]0;pwned\x07 see postgresql://ops:hunter2@db.internal/app"

ENTRIES = [
    AuditEntry(T0 - timedelta(minutes=50), "cli@ops1", "concurrency", None, "8", "12"),
    AuditEntry(
        T0 - timedelta(minutes=41), "console@ops2", "batch_size", "CatalogueImport", None, "80"
    ),
    AuditEntry(
        T0 - timedelta(minutes=30),
        "console@ops2",
        "pause",
        "NotificationExport",
        "running",
        "paused",
        f"{HOSTILE}; until 2026-01-02T14:00:00+00:00",
    ),
    AuditEntry(
        T0 - timedelta(minutes=12),
        "cli@ops1",
        "run_once",
        None,
        None,
        None,
        "every handler",
    ),
    AuditEntry(
        T0 - timedelta(minutes=9),
        "cli@\x1b[31mops3\x1b[0m",
        "retry",
        "CatalogueImport",
        None,
        None,
        "batch-17/row-4",
    ),
    AuditEntry(
        T0 - timedelta(minutes=4),
        "console@ops2",
        "breaker_reset",
        "CatalogueImport",
        "tripped",
        "closed",
        "2 workers",
    ),
    AuditEntry(
        T0 - timedelta(minutes=1),
        "worker-1",
        "resume",
        None,
        "paused",
        "running",
        "pause set by console@ops2 expired",
    ),
]


class AuditService(FixedService):
    """Fixed data with a fixed audit history."""

    def __init__(self, entries: list[AuditEntry] | None = None) -> None:
        super().__init__()
        self.entries = list(ENTRIES if entries is None else entries)
        self.asked: list[int] = []

    async def audit(self, limit: int = 50) -> list[AuditEntry]:
        self.asked.append(limit)
        return self.entries[-limit:]


async def _open_audit(pilot: Any) -> None:
    await pilot.press("A")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, AuditScreen))
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=str)
def test_audit_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    """Key A: "7 changes, newest first"; the expired pause's resume by worker-1 at 11:59:00
    on top (highlighted: the panel under the table shows it in full), the breaker reset, the
    retry by cli@ops3 (its colour escapes shown as text, not obeyed), run once,
    NotificationExport's pause with its reason (the OSC title escape neutralised, the URL's
    password shown as ***), the batch size "as configured → 80", the concurrency "8 → 12"
    at the bottom; footer: Back, Reload."""
    assert snap_compare(fixed_app(AuditService()), terminal_size=size, run_before=_open_audit)


def test_empty_audit_screen(snap_compare: Any) -> None:
    """No entry yet: one line saying what will be kept here, no table."""
    assert snap_compare(fixed_app(AuditService([])), terminal_size=(80, 24), run_before=_open_audit)


def test_rows_are_newest_first_and_neutralise_hostile_text() -> None:
    rows = audit_rows(ENTRIES, UTC)
    assert [row.cells[2] for row in rows] == [
        "resume: paused → running",
        "breaker reset CatalogueImport: tripped → closed",
        "retry CatalogueImport",
        "run once",
        "pause NotificationExport: running → paused",
        "batch size CatalogueImport: as configured → 80",
        "concurrency: 8 → 12",
    ]
    assert rows[0].cells[:2] == ("2026-01-02 11:59:00", "worker-1")
    assert [row.key for row in rows] == ["6", "5", "4", "3", "2", "1", "0"]
    shown = " ".join(" ".join(row.cells) for row in rows)
    shown += " ".join(entry_text(entry, UTC) for entry in ENTRIES).replace("\n", " ")
    assert "hunter2" not in shown and "postgresql://ops:***@db.internal/app" in shown
    assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in shown)
    assert entry_text(ENTRIES[2], UTC).splitlines()[1].endswith("; until 2026-01-02T14:00:00+00:00")


@pytest.mark.anyio
async def test_a_opens_the_audit_of_a_real_service_and_r_reloads_it(tmp_path: Any) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    service = (
        BackgroundProcessing(poll_interval=3600, startup_delay=3600)
        .add_handler(Source([1]).handler(), name="Ping", max_items_per_cycle=5)
        .build(store=open_store(url))
    )
    async with service.running():
        service.pause(reason="db maintenance", until=timedelta(hours=1), by="console@test")
        app = NovaConsole(service, refresh_interval=None, tz=UTC)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await pilot.press("A")
            await wait_until(pilot, lambda: isinstance(app.screen, AuditScreen), limit=10)
            screen = app.screen
            assert isinstance(screen, AuditScreen)
            assert [(e.by, e.what, e.handler) for e in screen.entries] == [
                ("console@test", "pause", None)
            ]
            assert screen.entries[0].detail and "db maintenance" in screen.entries[0].detail
            # r reloads: a change made meanwhile appears (r is not the app's run once here).
            service.set_batch_size("Ping", 7, by="cli@elsewhere")
            # Buffered for the store's writer, yet in the audit: it is written first.
            assert len(await service.audit()) == 2 and len(screen.entries) == 1
            cycles = service.snapshot().cycles
            await pilot.press("r")
            await wait_until(pilot, lambda: len(screen.entries) == 2, limit=10)
            assert (screen.entries[-1].what, screen.entries[-1].new) == ("batch_size", "7")
            assert service.snapshot().cycles == cycles
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, AuditScreen)


@pytest.mark.anyio
async def test_the_palette_and_help_offer_the_audit() -> None:
    service = AuditService()
    app = fixed_app(service)
    async with app.run_test(size=(120, 40)) as pilot:
        commands = {command.title: command for command in console_commands(app)}
        assert "Audit history" in commands
        commands["Audit history"].callback()
        await wait_until(pilot, lambda: isinstance(app.screen, AuditScreen))
        assert service.asked == [200]
        assert ("A", "Audit") in [(key, action) for key, action, _ in app.key_help()]
