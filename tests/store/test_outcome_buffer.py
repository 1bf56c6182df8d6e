"""The outcome buffer: it wakes the writer, never blocks, and drops only loudly when full."""

from __future__ import annotations

import logging

import pytest

from novaconsole.store.outcome_buffer import OutcomeBuffer
from tests.store.support import outcome


def test_reaching_flush_at_wakes_the_writer() -> None:
    wakes: list[int] = []
    buffer = OutcomeBuffer(capacity=10, flush_at=3, wake=lambda: wakes.append(len(buffer)))

    buffer.add([outcome(1), outcome(2)])
    assert wakes == []
    buffer.add([outcome(3)])

    assert wakes == [3]


def test_a_full_buffer_drops_new_outcomes_counts_and_logs_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="novaconsole.store")
    buffer = OutcomeBuffer(capacity=3, flush_at=100)

    buffer.add([outcome(i) for i in range(2)])
    buffer.add([outcome(i) for i in range(2, 5)])
    buffer.add([outcome(5)])

    assert [o.item_id for o in buffer.peek()] == [0, 1, 2]
    assert buffer.dropped == 3
    assert [r.message for r in caplog.records] == [
        "outcome buffer full (3 waiting): the database is not keeping up; "
        "dropping new outcomes until it does"
    ]

    batch = buffer.take(2)
    buffer.written()
    buffer.add([outcome(6)])

    assert [o.item_id for o in batch] == [0, 1]
    assert [o.item_id for o in buffer.peek()] == [2, 6]
    assert caplog.records[-1].message == (
        "3 outcomes were dropped while the database was not keeping up"
    )


def test_a_batch_that_failed_goes_back_in_front() -> None:
    buffer = OutcomeBuffer(capacity=10)
    buffer.add([outcome(i) for i in range(4)])

    batch = buffer.take(3)
    buffer.add([outcome(9)])
    buffer.put_back(batch)

    assert [o.item_id for o in buffer.peek()] == [0, 1, 2, 3, 9]
