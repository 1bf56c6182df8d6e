"""Database set-up: URLs, masked secrets, unusable databases and the schema version."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from novaconsole.errors import ConfigError
from novaconsole.store import mask_url, open_store
from novaconsole.store.models import VERSION_TABLE
from novaconsole.store.queries import handler_totals, list_results
from novaconsole.store.schema import head
from tests.store.support import join_driver_threads, outcome

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-pw"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            f"postgresql+asyncpg://app:{SECRET}@db.example:5432/jobs",
            "postgresql+asyncpg://app:***@db.example:5432/jobs",
        ),
        (
            f"postgresql+asyncpg://db.example/jobs?user=app&password={SECRET}&ssl=true",
            "postgresql+asyncpg://db.example/jobs?user=app&password=***&ssl=true",
        ),
        ("sqlite+aiosqlite:///novaconsole.db", "sqlite+aiosqlite:///novaconsole.db"),
        ("postgresql+asyncpg://app@db.example/jobs", "postgresql+asyncpg://app@db.example/jobs"),
        (f"postgresql+asyncpg://app:{SECRET}@[bad", "postgresql+asyncpg://app:***@[bad"),
    ],
)
def test_mask_url_hides_passwords(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_store_shows_its_url_masked() -> None:
    store = open_store(f"postgresql+asyncpg://app:{SECRET}@127.0.0.1:1/jobs")

    assert store.display_url == "postgresql+asyncpg://app:***@127.0.0.1:1/jobs"
    assert SECRET not in repr(store)


def test_bare_scheme_gets_its_async_driver(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'x.db'}")

    assert store.engine.url.drivername == "sqlite+aiosqlite"


@pytest.mark.parametrize(
    "url",
    [
        f"nosuchdb+driver://app:{SECRET}@host/db",
        f"postgresql+nosuchdriver://app:{SECRET}@host/db",
        f"postgresql+psycopg2://app:{SECRET}@host/db",
        f"://app:{SECRET}@",
    ],
)
def test_a_bad_url_is_one_config_error_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_store(url)

    message = str(caught.value)
    assert SECRET not in message
    assert "\n" not in message
    assert message.startswith("database.url: ")


def test_a_missing_postgresql_driver_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # as on a plain `pip install novaconsole`
    with pytest.raises(ConfigError) as caught:
        open_store(f"postgresql+asyncpg://app:{SECRET}@host/db")
    message = str(caught.value)
    assert SECRET not in message
    assert "pip install 'novaconsole[postgres]'" in message


async def test_an_unreachable_database_is_a_config_error_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    store = open_store(f"postgresql+asyncpg://app:{SECRET}@127.0.0.1:1/jobs", connect_timeout=0)

    with pytest.raises(ConfigError) as caught:
        await store.open()
    await store.engine.dispose()

    message = str(caught.value)
    assert message.startswith("database.url: cannot open database ")
    assert "postgresql+asyncpg://app:***@127.0.0.1:1/jobs" in message
    assert SECRET not in message
    assert "\n" not in message
    assert SECRET not in caplog.text


async def test_a_sqlite_file_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    # A short connect_timeout: the default would retry the open for 30 s before giving up.
    store = open_store(f"sqlite+aiosqlite:///{blocker / 'novaconsole.db'}", connect_timeout=0.2)

    with pytest.raises(ConfigError, match="cannot open database"):
        await store.open()
    await store.engine.dispose()
    await join_driver_threads()


async def test_opening_creates_the_directory_of_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "data" / "deeper" / "novaconsole.db"
    store = open_store(f"sqlite+aiosqlite:///{path}")

    await store.open()
    await store.close()

    assert path.is_file()


async def test_a_database_of_a_newer_version_is_refused_and_left_alone(
    db_url: str, db_path: Path
) -> None:
    store = open_store(db_url)
    await store.open()
    store.record([outcome(1)])
    await store.close()
    async with store.engine.begin() as connection:
        await connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
        await connection.execute(text("DROP TABLE novaconsole_controls"))
    await store.engine.dispose()
    expected = (
        f"database {db_url} has schema revision 9999, newer than this novaconsole's "
        f"({head()}); upgrade novaconsole"
    )

    again = open_store(db_url, auto_upgrade=True)
    with pytest.raises(ConfigError) as opening:
        await again.open()
    with pytest.raises(ConfigError) as reading:
        await list_results(db_url)
    with pytest.raises(ConfigError):
        await handler_totals(db_url)

    assert str(opening.value) == expected
    assert str(reading.value) == expected
    async with again.engine.connect() as connection:
        tables = await connection.scalar(
            text("SELECT count(*) FROM sqlite_master WHERE name = 'novaconsole_controls'")
        )
        version = await connection.scalar(text(f"SELECT version_num FROM {VERSION_TABLE}"))
    await again.engine.dispose()
    assert (tables, version) == (0, "9999")


async def test_a_newer_schema_message_masks_the_password() -> None:
    from novaconsole.store.database import create_engine
    from novaconsole.store.schema import SchemaState, refuse

    engine = create_engine(f"postgresql+asyncpg://app:{SECRET}@127.0.0.1:1/jobs")
    with pytest.raises(ConfigError) as caught:
        refuse(SchemaState("9999", head()), engine)
    await engine.dispose()

    assert SECRET not in str(caught.value)
    assert "app:***@" in str(caught.value)
