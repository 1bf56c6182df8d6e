"""The toolkit's console screens: failure groups (key e), a group's items, the retry confirm,
peek (key d) and a tripped handler; pictures from fixed data, keys on a real service."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from novaconsole import BackgroundProcessing, RetryPolicy
from novaconsole.console import NovaConsole
from novaconsole.console.screens.confirm import ConfirmScreen
from novaconsole.console.screens.failures import FailureGroupsScreen, FailureItemsScreen
from novaconsole.console.screens.peek import PeekScreen
from novaconsole.engine.peek import PeekedItem, PeekError, PeekResult
from novaconsole.triage import FailedItem, FailedRow, group_failures, members_of
from tests.console.support import T0, FixedService, fixed_app, wait_until
from tests.factories import Item, Source


def _row(handler: str, item: str, error: str, minutes: int) -> FailedRow:
    return FailedRow(
        FailedItem(handler, item, "failed", 3, T0 - timedelta(minutes=minutes), error),
        f"Traceback (most recent call last):\n  ...\n{error}",
    )


ROWS = [
    *(
        _row(
            "CatalogImport",
            f"batch-{n}",
            f"SourceError: not UTF-8 text (bad byte at offset {n * 7})",
            n,
        )
        for n in range(1, 38)
    ),
    _row("NotificationExport", "n-552", "TimeoutError: timed out after 30s", 3),
    _row("NotificationExport", "n-553", "TimeoutError: timed out after 30s", 2),
    _row("CatalogImport", "batch-99", "ValueError: no column 'sku' in row 12", 1),
]


class TriageService(FixedService):
    """Fixed data for the toolkit's screens."""

    def __init__(self) -> None:
        super().__init__()
        self.retried: list[tuple[str, Any]] = []
        handlers = dict(self._snapshot.handlers)
        handlers["CatalogueImport"] = replace(
            handlers["CatalogueImport"],
            tripped=True,
            breaker_reason="breaker: 5 failures in a row: ValueError: bad ISRC 'XX-000'",
            breaker_retry_in=25.0,
        )
        self._snapshot = replace(self._snapshot, handlers=handlers)

    async def failure_groups(self, handler: str | None = None) -> Any:
        return group_failures(ROWS, handler)

    async def failure_group(self, group: str) -> Any:
        found = next((g for g in group_failures(ROWS) if g.id == group), None)
        return found, members_of(ROWS, group) if found else []

    async def peek(self, handler: str, limit: int | None = None) -> PeekResult:
        if handler == "NotificationExport":
            raise PeekError("fetch_next raised ConnectionError: webhook store unreachable")
        items = tuple(
            PeekedItem(str(n), f"Track(id={n}, path='audio/{n}.flac')") for n in (41, 42, 43)
        )
        return PeekResult(handler, 50, items, rolled_back=True)

    async def retry_item(self, handler: str, item_id: Any) -> bool:
        self.retried.append((handler, item_id))
        return True


async def _open_groups(pilot: Any) -> None:
    await pilot.press("e")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, FailureGroupsScreen))
    await pilot.pause()


def test_failure_groups_screen(snap_compare: Any) -> None:
    """Key e: three groups, most items first: 37 CatalogImport SourceError items with the
    offset shown as #, 2 NotificationExport timeouts, 1 ValueError with the quoted column as
    '…'; footer: Back, Retry group."""
    assert snap_compare(
        fixed_app(TriageService()), terminal_size=(140, 30), run_before=_open_groups
    )


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
def test_failure_group_items(snap_compare: Any) -> None:
    """Enter on the first group: its summary (handler, error, 37 items, first and last seen,
    the sample) and its items, latest failure first."""

    async def open_items(pilot: Any) -> None:
        await _open_groups(pilot)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, FailureItemsScreen))
        await pilot.pause()

    assert snap_compare(fixed_app(TriageService()), terminal_size=(140, 36), run_before=open_items)


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
def test_retry_group_confirm(snap_compare: Any) -> None:
    """t on the first group: "Retry 37 items of CatalogImport: SourceError: not UTF-8 text
    (bad byte at offset #)?" with y/n."""

    async def ask(pilot: Any) -> None:
        await _open_groups(pilot)
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
        await pilot.pause()

    assert snap_compare(fixed_app(TriageService()), terminal_size=(120, 24), run_before=ask)


def test_peek_modal(snap_compare: Any) -> None:
    """Key d on PhysicalDeletion: fetch_next(50) would return 3 items (rolled back), their
    ids and reprs."""

    async def peek(pilot: Any) -> None:
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, PeekScreen))
        await pilot.pause()

    assert snap_compare(fixed_app(TriageService()), terminal_size=(120, 24), run_before=peek)


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
def test_peek_modal_failed_fetch(snap_compare: Any) -> None:
    """Key d on NotificationExport, whose fetch fails: the one line saying why."""

    async def peek(pilot: Any) -> None:
        await pilot.press("down", "down", "d")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, PeekScreen))
        await pilot.pause()

    assert snap_compare(fixed_app(TriageService()), terminal_size=(120, 24), run_before=peek)


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
def test_tripped_handler_row(snap_compare: Any) -> None:
    """CatalogueImport is tripped: its state cell says tripped (red) and the "Why / last
    error" column, before Last run and Purpose, the breaker's reason whole over two lines."""
    assert snap_compare(fixed_app(TriageService()), terminal_size=(160, 45))


# --------------------------------------------------------------------------- keys


@pytest.mark.anyio
async def test_e_then_t_then_y_retries_every_item_of_the_group() -> None:
    service = TriageService()
    app = fixed_app(service)
    async with app.run_test(size=(140, 36)) as pilot:
        await _open_groups(pilot)
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question.startswith("Retry 37 items of CatalogImport: SourceError:")
        await pilot.press("y")
        await wait_until(pilot, lambda: len(service.retried) == 37)
        assert {handler for handler, _ in service.retried} == {"CatalogImport"}
        # n declines: nothing more is retried.
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await pilot.pause()
        assert len(service.retried) == 37
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, FailureGroupsScreen)


@pytest.mark.slow  # a console drawn and driven: the quick run keeps one of each kind
@pytest.mark.anyio
async def test_e_and_d_on_a_real_service() -> None:
    source = Source([1, 2], behaviour=_fail_even)
    service = (
        BackgroundProcessing(
            poll_interval=3600, startup_delay=3600, retry=RetryPolicy(max_attempts=1)
        )
        .add_handler(source.handler(), name="A", max_items_per_cycle=5)
        .build()
    )
    async with service.running():
        await service.run_once()
        app = NovaConsole(service, refresh_interval=None)
        async with app.run_test(size=(140, 36)) as pilot:
            app.refresh_view()
            await pilot.pause()
            await pilot.press("e")
            await wait_until(pilot, lambda: isinstance(app.screen, FailureGroupsScreen))
            assert isinstance(app.screen, FailureGroupsScreen)
            assert [(g.handler, g.title, g.count) for g in app.screen.groups] == [
                ("A", "RuntimeError: even item #", 1)
            ]
            await pilot.press("escape")
            await pilot.pause()
            await pilot.press("d")
            await wait_until(pilot, lambda: isinstance(app.screen, PeekScreen))
            assert isinstance(app.screen, PeekScreen) and app.screen.result is not None
            assert [item.id for item in app.screen.result.items] == ["2"]  # 1 succeeded: gone
            assert source.attempts == {1: 1, 2: 1}  # peek processed nothing
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, PeekScreen)


async def _fail_even(item: Item, attempt: int) -> None:
    if item.id % 2 == 0:
        raise RuntimeError(f"even item {item.id}")
