"""Issue 11, point 10 with a blocked loop, through the real command: a handler blocks the event
loop (``time.sleep`` in ``async def process``), so the loop cannot hear signals; a second
signal still ends the process at once, naming what blocks it, and nothing is lost: the item
runs again after a restart."""

from __future__ import annotations

import signal

import pytest

from tests.faults.process_support import LedgerProject, ledger, running, until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # real processes

__all__ = ["ledger"]  # the fixture

BLOCK = 60
"""Seconds the handler blocks the loop (the Ledger's limit): far longer than the guard below."""


async def test_a_second_signal_ends_a_process_whose_loop_is_blocked(
    ledger: LedgerProject,
) -> None:
    never = ledger.root / "never"  # the handler blocks until this file exists: it never does
    ledger.setup(1, options=f'block_until = "{never}"')
    run = ledger.start()
    await running(run, "the watchdog to see the blocked loop", lambda: run.said("blocked for"))
    # Two different signals: two of the same, sent back to back, may arrive as one. Python
    # runs pending handlers in signal-number order, so either may count as the second.
    run.process.send_signal(signal.SIGTERM)
    run.process.send_signal(signal.SIGINT)
    # A guard well under the block's length: without the force path the process would only
    # hear the signals (and quit through the drain) once the handler stops blocking.
    await until(lambda: run.process.poll() is not None, "the process to exit", BLOCK / 2)
    second = signal.Signals(run.process.returncode - 128)
    assert second in (signal.SIGINT, signal.SIGTERM), run.output()
    said = [m for m in run.messages() if "received again while the event loop" in m]
    assert len(said) == 1, run.output()
    assert said[0].startswith(f"{second.name} received again while the event loop has been")
    assert "by handler Ledger, item 1 (process)" in said[0]
    assert "run again after a restart" in said[0]
    assert "Traceback" not in run.err.read_text()
    assert ledger.results() == [], "the blocked item was not recorded"

    ledger.config()  # the handler fixed: it no longer blocks
    again = ledger.start("--once")
    await until(lambda: again.process.poll() is not None, "the restarted run to finish")
    assert again.process.returncode == 0, again.output()
    assert ledger.results() == [("1", "succeeded")], "the item ran again and was recorded"
    assert ledger.done() == {1}
