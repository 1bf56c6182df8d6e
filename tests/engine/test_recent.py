"""recent_outcomes(): the latest outcomes, those of earlier runs read back from the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from novaconsole.store import open_store
from tests.engine.support import Source, processing

pytestmark = pytest.mark.anyio


async def test_recent_outcomes_survive_a_restart(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'recent.db'}"
    source = Source(ids=[1, 2, 3])
    build = processing().add_handler(source.handler(), name="A")
    first = build.build(store=open_store(url))
    async with first.running(poll=False):
        await first.run_once()
        assert [o.item_id for o in first.recent_outcomes()] == [1, 2, 3]
    second = build.build(store=open_store(url))
    async with second.running(poll=False):
        recent = second.recent_outcomes()
    assert [(o.handler, o.item_id, o.status.value) for o in recent] == [
        ("A", "1", "succeeded"),
        ("A", "2", "succeeded"),
        ("A", "3", "succeeded"),
    ], "read back from the store (ids as stored: text)"
