"""A failure that repeats is logged in full once: with its traceback, except for a lost
database connection, whose message says all there is."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from novaconsole.engine.repeated import RepeatedFailure

log = logging.getLogger("tests.repeated")


def lost_connection() -> DBAPIError:
    """What SQLAlchemy raises for a statement whose connection turned out dead."""
    return DBAPIError.instance(
        "SELECT 1",
        None,
        sqlite3.OperationalError("connection is closed"),
        sqlite3.Error,
        connection_invalidated=True,
    )


def test_a_lost_connection_is_one_line_and_any_other_error_has_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger=log.name)
    lost = lost_connection()
    assert lost.connection_invalidated
    RepeatedFailure(log, "coordination failed").failed("connection is closed", lost)
    try:
        raise RuntimeError("boom")
    except RuntimeError as error:
        RepeatedFailure(log, "claiming failed").failed("RuntimeError: boom", error)
    (first, second) = caplog.records
    assert first.getMessage() == "coordination failed: connection is closed"
    assert first.exc_info is None
    assert second.getMessage() == "claiming failed: RuntimeError: boom"
    assert second.exc_info is not None and second.exc_info[0] is RuntimeError


def test_a_lost_connection_still_starts_a_streak(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=log.name)
    failures = RepeatedFailure(log, "coordination failed")
    for _ in range(3):
        failures.failed("connection is closed", lost_connection())
    failures.succeeded()
    assert [r.getMessage() for r in caplog.records] == [
        "coordination failed: connection is closed",
        "coordination failed: works again after 3 failures",
    ]


async def connecting_error(url: str) -> BaseException:
    """What connecting to ``url`` raises."""
    engine = create_async_engine(url)
    try:
        async with engine.connect():
            pass
    except Exception as error:
        return error
    finally:
        await engine.dispose()
    raise AssertionError(f"{url} accepted a connection")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql+asyncpg://postgres@127.0.0.1:1/x", id="nothing listens"),
        pytest.param(
            "postgresql+asyncpg://postgres@127.0.0.1:5432/novaconsole_no_such_database",
            id="the server refuses",
            marks=pytest.mark.postgres,
        ),
    ],
)
async def test_a_refused_connection_is_one_line(url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=log.name)
    error = await connecting_error(url)
    RepeatedFailure(log, "fetch from A failed").failed(str(error), error)
    [record] = caplog.records
    assert record.exc_info is None, type(error)
