"""``novaconsole db upgrade|current|sql`` and the worker's schema check, as a user runs them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import anyio
import pytest

from novaconsole.store.schema import head
from tests.cli.test_bad_config import assert_config_error
from tests.cli.test_headless import toy_config
from tests.clirun import Cli, Project
from tests.postgres import throwaway_database
from tests.store.test_schema import make_legacy

V1_SQLITE = Path(__file__).parents[1] / "store" / "legacy_schemas" / "v1.sqlite.sql"


def _version_1(project: Project) -> None:
    with sqlite3.connect(project.root / "x.db") as connection:
        connection.executescript(V1_SQLITE.read_text())


def test_current_upgrade_and_sql_on_a_version_1_sqlite_file(project: Project, cli: Cli) -> None:
    _version_1(project)
    db = ("--db", project.db_url)

    current = cli.run("db", "current", *db)
    described = json.loads(cli.run("db", "current", "--json", *db).stdout)
    sql = cli.run("db", "sql", *db)
    upgraded = cli.run("db", "upgrade", *db)
    again = cli.run("db", "upgrade", *db)
    after = json.loads(cli.run("db", "current", "--json", *db).stdout)
    nothing = cli.run("db", "sql", *db)

    assert current.returncode == 0, current.stderr
    assert "revision  0001 (from novaconsole_meta, before migrations)" in current.stdout
    assert "status    older: run `novaconsole db upgrade`" in current.stdout
    assert described == {
        "database": project.db_url,
        "revision": "0001",
        "head": head(),
        "status": "older",
        "legacy": True,
    }
    assert "ALTER TABLE novaconsole_results ADD COLUMN worker_id" in sql.stdout
    assert "INSERT INTO novaconsole_alembic_version (version_num) VALUES ('0001')" in sql.stdout
    assert (
        upgraded.stdout == f"{project.db_url}: upgraded from revision 0001 to revision {head()}\n"
    )
    assert again.stdout == f"{project.db_url}: already at revision {head()}, the latest\n"
    assert (after["revision"], after["status"]) == (head(), "current")
    assert (nothing.returncode, nothing.stdout) == (0, "")
    assert "nothing to apply" in nothing.stderr


def test_sql_from_an_empty_database_needs_no_connection(project: Project, cli: Cli) -> None:
    result = cli.run("db", "sql", "--from", "none", "--db", "postgresql://u:pw@127.0.0.1:9/x")
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE novaconsole_alembic_version" in result.stdout
    assert "TIMESTAMP WITH TIME ZONE" in result.stdout  # PostgreSQL's DDL, not SQLite's


def test_a_worker_upgrades_an_older_sqlite_file_by_default(project: Project, cli: Cli) -> None:
    _version_1(project)
    project.write_config(toy_config(options="count = 1"))
    result = cli.run("--no-ui", "--once", "--db", project.db_url)
    assert result.returncode == 0, result.stderr
    current = json.loads(cli.run("db", "current", "--json", "--db", project.db_url).stdout)
    assert current["status"] == "current"


@pytest.mark.postgres
def test_a_worker_refuses_an_older_postgresql_schema_in_one_line(
    project: Project, cli: Cli
) -> None:
    async def scenario() -> None:
        async with throwaway_database("novaconsole_cli_db") as url:
            await make_legacy(url, "postgresql", 1)
            project.write_config(toy_config(options="count = 1"))
            refused = cli.run("--no-ui", "--once", "--db", url)
            attach = cli.run("db", "current", "--db", url)
            upgraded = cli.run("db", "upgrade", "--db", url)
            started = cli.run("--no-ui", "--once", "--db", url)
            assert_config_error(
                refused, "schema revision 0001, older", "run `novaconsole db upgrade`"
            )
            assert "status    older" in attach.stdout
            assert upgraded.returncode == 0, upgraded.stderr
            assert started.returncode == 0, started.stderr

    anyio.run(scenario)
