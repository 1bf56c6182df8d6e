"""Helpers of the ``test_process_*`` fault tests: waiting on a condition, and a user's project
(``config.toml`` beside a ``handlers`` package) run by the real ``novaconsole`` command."""

from __future__ import annotations

from collections.abc import Callable

import anyio

WITHIN = 60.0
"""Upper bound for any one wait: a loaded 2-core machine, never a timing assertion."""


async def until(check: Callable[[], object], what: str, within: float = WITHIN) -> None:
    """Wait until ``check()`` is true (looking every 10 ms); fail naming ``what`` otherwise."""
    with anyio.move_on_after(within):
        while True:  # a condition, not an event, is awaited
            if check():
                return
            await anyio.sleep(0.01)
    raise AssertionError(f"not within {within:g}s: {what}")
