"""Issue 11, point 10, through the real command: SIGTERM with hung items drains within
``shutdown_grace``; a second signal is a force quit; the drain names what it waits for."""

from __future__ import annotations

import signal

import pytest

from tests.faults.process_support import LedgerProject, exited, ledger, running

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # real processes

__all__ = ["ledger"]  # the fixture

HUNG = "hang = true"
ITEMS = "3 items (Ledger#1, Ledger#2, Ledger#3)"


async def hung_items(ledger: LedgerProject, grace: str) -> object:
    ledger.setup(3, processing=f'shutdown_grace = "{grace}"', options=HUNG)
    run = ledger.start()
    await running(run, "three items in flight", lambda: sum(ledger.executions().values()) == 3)
    return run


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_hung_items_are_cancelled_when_the_grace_is_over(
    ledger: LedgerProject, signum: signal.Signals
) -> None:
    run = await hung_items(ledger, "00:00:01")
    run.process.send_signal(signum)
    assert await exited(run) == 0, run.output()
    messages = run.messages()
    assert f"draining: waiting up to 1s for {ITEMS}" in messages
    assert f"shutdown grace of 1s over: cancelling {ITEMS}" in messages
    assert sorted(ledger.results()) == [(str(i), "cancelled") for i in (1, 2, 3)]
    assert ledger.done() == set(), "cancelled items stay pending at their source"


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_a_second_signal_cancels_the_drain_at_once(
    ledger: LedgerProject, signum: signal.Signals, status: int
) -> None:
    run = await hung_items(ledger, "01:00:00")  # only the force quit can end this drain
    run.process.send_signal(signum)
    await running(run, "the drain to begin", lambda: run.said("draining: waiting up to"))
    run.process.send_signal(signum)
    assert await exited(run) == status, run.output()
    messages = run.messages()
    assert f"draining: waiting up to 3600s for {ITEMS}" in messages
    assert f"{signum.name} received again: force quit, cancelling what is left" in messages
    assert f"force quit: cancelling {ITEMS}" in messages
    assert sorted(ledger.results()) == [(str(i), "cancelled") for i in (1, 2, 3)]
    assert "Traceback" not in run.err.read_text()


async def test_a_second_signal_during_once_forces_the_quit(ledger: LedgerProject) -> None:
    ledger.setup(3, processing='shutdown_grace = "01:00:00"', options=HUNG)
    run = ledger.start("--once")
    await running(run, "three items in flight", lambda: sum(ledger.executions().values()) == 3)
    run.process.send_signal(signal.SIGTERM)
    await running(run, "the drain to begin", lambda: run.said("draining: waiting up to"))
    run.process.send_signal(signal.SIGINT)
    assert await exited(run) == 130, run.output()
    assert "SIGTERM received: stopping the cycle" in run.messages()
    assert sorted(ledger.results()) == [(str(i), "cancelled") for i in (1, 2, 3)]
