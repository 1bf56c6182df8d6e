"""Schema migrations: databases written by novaconsole before Alembic (``legacy_schemas/``,
the exact DDL of schema versions 1 and 2) upgrade cleanly on SQLite and PostgreSQL; an older
schema is refused without ``auto_upgrade``; the SQL printed for a DBA does the same job."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from novaconsole.engine.outcomes import OutcomeStatus
from novaconsole.errors import ConfigError
from novaconsole.store import open_store
from novaconsole.store.database import create_engine
from novaconsole.store.models import VERSION_TABLE, metadata
from novaconsole.store.queries import list_results
from novaconsole.store.schema import (
    MIGRATIONS,
    SchemaState,
    ensure_schema,
    head,
    read_schema,
    revisions,
    upgrade,
    upgrade_sql,
)
from tests.postgres import throwaway_database
from tests.store.support import outcome

pytestmark = pytest.mark.anyio

LEGACY = Path(__file__).with_name("legacy_schemas")
BACKENDS = [
    "sqlite",
    # Seconds each (a database created, migrations run on the server): the quick run keeps the
    # SQLite twin and the PostgreSQL-only tests below.
    pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.slow]),
]
OLD_ROW = {
    "sqlite": "INSERT INTO novaconsole_results (handler, item_id, status, attempts, started_at, "
    "finished_at, duration) VALUES ('Old', 'a', 'succeeded', 1, 0, 1000000, 0.5)",
    "postgresql": "INSERT INTO novaconsole_results (handler, item_id, status, attempts, "
    "started_at, finished_at, duration) VALUES ('Old', 'a', 'succeeded', 1, "
    "'1970-01-01 00:00:00+00', '1970-01-01 00:00:01+00', 0.5)",
}


@asynccontextmanager
async def database(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database of ``backend``."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    else:
        async with throwaway_database("novaconsole_schema") as url:
            yield url


async def run_script(url: str, script: str) -> None:
    """Run SQL statements by hand, as a DBA would (the driver directly, not the store)."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.split("///", 1)[1]) as connection:
            connection.executescript(script)
    else:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            await connection.execute(script)
        finally:
            await connection.close()


async def make_legacy(url: str, backend: str, version: int) -> None:
    """The database as novaconsole ``version`` created it, with one result in it."""
    await run_script(url, (LEGACY / f"v{version}.{backend}.sql").read_text())
    await run_script(url, OLD_ROW[backend] + ";")


async def state_of(url: str) -> SchemaState:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await read_schema(connection)
    finally:
        await engine.dispose()


async def differences(url: str) -> list[Any]:
    """What separates the database's tables from the models' (Alembic's autogenerate)."""
    engine = create_engine(url)

    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return [
            diff
            for diff in compare_metadata(context, metadata)
            if not (diff[0] == "remove_table" and diff[1].name == VERSION_TABLE)
        ]

    try:
        async with engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await engine.dispose()


def test_the_revisions_found_by_file_name_are_alembics_in_order() -> None:
    script = ScriptDirectory(str(MIGRATIONS))
    walked = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert tuple(walked) == revisions()
    assert script.get_current_head() == head()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_new_database_gets_the_models_schema(backend: str, tmp_path: Path) -> None:
    async with database(backend, tmp_path) as url:
        store = open_store(url)
        await store.open()
        await store.close()
        assert (await state_of(url)).status == "current"
        assert await differences(url) == []


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("version", [1, 2])
async def test_a_database_of_every_earlier_version_upgrades_cleanly(
    backend: str, version: int, tmp_path: Path
) -> None:
    async with database(backend, tmp_path) as url:
        await make_legacy(url, backend, version)
        assert await state_of(url) == SchemaState(f"{version:04d}", head(), legacy=True)

        store = open_store(url, auto_upgrade=True)
        await store.open()
        store.record([outcome("b", handler="New", status=OutcomeStatus.FAILED, error="x")])
        await store.close()

        assert (await state_of(url)).status == "current"
        assert await differences(url) == []
        rows = await list_results(url)
        assert [(r["handler"], r["item_id"], r["worker_id"]) for r in rows] == [
            ("New", "b", store.worker_id),
            ("Old", "a", None),
        ]
        engine = create_engine(url)
        async with engine.connect() as connection:
            legacy = await connection.scalar(text("SELECT value FROM novaconsole_meta"))
        await engine.dispose()
        assert legacy == str(int(head()))  # what a novaconsole before Alembic checks


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_older_schema_is_refused_without_auto_upgrade_and_left_alone(
    backend: str, tmp_path: Path
) -> None:
    async with database(backend, tmp_path) as url:
        await make_legacy(url, backend, 1)
        store = open_store(url, auto_upgrade=False)
        with pytest.raises(ConfigError) as refused:
            await store.open()
        await store.engine.dispose()
        assert str(refused.value) == (
            f"database {store.display_url} has schema revision 0001, older than this "
            f"novaconsole's ({head()}): run `novaconsole db upgrade` "
            "(or set [database] auto_upgrade = true)"
        )
        assert await state_of(url) == SchemaState("0001", head(), legacy=True)
        assert any(d[0] == "add_column" for d in await differences(url))


async def test_auto_upgrade_is_on_by_default_on_sqlite(tmp_path: Path) -> None:
    async with database("sqlite", tmp_path) as url:
        await make_legacy(url, "sqlite", 1)
        store = open_store(url)
        await store.open()
        await store.close()
        assert (await state_of(url)).status == "current"


@pytest.mark.postgres
async def test_auto_upgrade_is_off_by_default_on_postgresql(tmp_path: Path) -> None:
    async with database("postgresql", tmp_path) as url:
        await make_legacy(url, "postgresql", 1)
        engine = create_engine(url)
        with pytest.raises(ConfigError, match="run `novaconsole db upgrade`"):
            await ensure_schema(engine)
        before, after = await upgrade(engine)  # what `novaconsole db upgrade` does
        await engine.dispose()
        assert (before.revision, before.status, after.status) == ("0001", "older", "current")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_version_2_database_is_adopted_then_upgraded(backend: str, tmp_path: Path) -> None:
    async with database(backend, tmp_path) as url:
        await make_legacy(url, backend, 2)
        assert await state_of(url) == SchemaState("0002", head(), legacy=True)
        store = open_store(url, auto_upgrade=True)  # later revisions add tables
        await store.open()
        await store.close()
        assert (await state_of(url)).status == "current"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("version", [None, 1, 2])
async def test_the_sql_for_a_dba_brings_the_database_to_the_current_schema(
    backend: str, version: int | None, tmp_path: Path
) -> None:
    async with database(backend, tmp_path) as url:
        if version is not None:
            await make_legacy(url, backend, version)
        else:
            await run_script(url, "SELECT 1;")  # creates the SQLite file, as a DBA would
        script = upgrade_sql(backend, await state_of(url))
        await run_script(url, script)
        assert (await state_of(url)).status == "current"
        assert await differences(url) == []
        assert upgrade_sql(backend, await state_of(url)) == ""


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_upgrade_that_fails_half_way_changes_nothing(backend: str, tmp_path: Path) -> None:
    async with database(backend, tmp_path) as url:
        await make_legacy(url, backend, 1)
        # In the way of revision 0002's third step, after it has altered a table already.
        await run_script(url, "CREATE TABLE novaconsole_workers (x INTEGER);")
        engine = create_engine(url)
        with pytest.raises(ConfigError, match="cannot open database"):
            await ensure_schema(engine, auto_upgrade=True)
        await engine.dispose()
        assert await state_of(url) == SchemaState("0001", head(), legacy=True)
        missing = [(d[2], d[3].name) for d in await differences(url) if d[0] == "add_column"]
        assert ("novaconsole_results", "worker_id") in missing  # the ALTER was rolled back
