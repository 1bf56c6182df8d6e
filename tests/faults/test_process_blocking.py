"""Issue 11, point 8, through the real command: a handler that blocks the event loop is named
in the logs (at the default level) while it blocks, with the fix."""

from __future__ import annotations

import signal

import pytest

from tests.faults.process_support import LedgerProject, exited, ledger, running

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # real processes

__all__ = ["ledger"]  # the fixture

BLOCKED = "the event loop has been blocked for "
NAMED = " by handler Ledger, item 1 (process), at "


async def test_a_blocking_item_is_named_while_it_blocks(ledger: LedgerProject) -> None:
    release = ledger.root / "release"
    ledger.setup(1, options=f'block_until = "{release}"')
    run = ledger.start()
    await running(run, "the blocking warning", lambda: run.said(NAMED))
    release.touch()  # the handler stops blocking only once the warning is out
    await running(run, "the item done", lambda: ledger.done() == {1})
    run.process.send_signal(signal.SIGTERM)
    assert await exited(run) == 0, run.output()
    (warning,) = [m for m in run.messages() if m.startswith(BLOCKED) and NAMED in m]
    assert "/handlers/ledger.py:" in warning
    assert "anyio.to_thread.run_sync" in warning
    assert run.said("the event loop ran again after being blocked for ")
