"""Shared fixtures: anyio on asyncio for every async test; subprocess tests marked slow."""

from __future__ import annotations

import pytest

SUBPROCESS_FIXTURES = frozenset({"cli", "shared_cli", "pg_fleet", "sqlite_fleet"})
"""Fixtures that start real ``novaconsole`` or worker processes: their tests are ``slow``."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that runs real processes, so ``-m "not slow"`` is quick."""
    for item in items:
        if SUBPROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
