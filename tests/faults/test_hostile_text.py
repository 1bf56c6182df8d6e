"""Hostile error text, end to end: a handler raising terminal escapes and a database password
reaches neither the operator's terminal nor ``results`` (table and JSON), old rows included."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.clirun import Cli, Project

pytestmark = pytest.mark.slow

HOSTILE = r"\x1b]0;pwned\x07\x1b]52;c;SGVsbG8=\x07\x1b[2J postgresql://app:secret@db/x"
"""As Python source: the handler raises ``Exception`` with this text."""

HANDLER = f'''
from dataclasses import dataclass


@dataclass
class Item:
    id: str


class Hostile:
    def __init__(self, ctx):
        self.ctx = ctx

    async def fetch_next(self, max_items):
        return [Item("item-1")]

    async def process(self, item):
        self.ctx.log.warning("about to fail: %s", "{HOSTILE}")
        raise Exception("{HOSTILE}")
'''


def _configure(project: Project) -> None:
    (project.root / "handlers" / "hostile.py").write_text(HANDLER)
    project.write_config(
        f"""
        [database]
        url = "{project.db_url}"

        [retry]
        max_attempts = 1

        [[handlers]]
        name = "Hostile"
        factory = "handlers.hostile:Hostile"
        """
    )


def _assert_safe(output: str, what: str) -> None:
    assert "\x1b" not in output, f"an ESC byte reached {what}"
    assert "\x07" not in output, f"a BEL byte reached {what}"
    assert "secret" not in output, f"the password reached {what}"


@pytest.mark.parametrize("log_format", ["rich", "json"])
def test_hostile_error_text_is_redacted_in_every_front_end(
    project: Project, cli: Cli, log_format: str
) -> None:
    _configure(project)
    run = cli.run("--no-ui", "--once", "--log-format", log_format)
    assert run.returncode == 1, run.stderr
    _assert_safe(run.stdout + run.stderr, f"the piped {log_format} logs")
    assert "pwned" in run.stderr  # the error is shown, neutralised, not dropped

    table = cli.run("results")
    assert table.returncode == 0, table.stderr
    _assert_safe(table.stdout + table.stderr, "`results`")
    assert "Hostile" in table.stdout and "failed" in table.stdout

    listed = cli.run("results", "--json")
    assert listed.returncode == 0, listed.stderr
    _assert_safe(listed.stdout + listed.stderr, "`results --json`")
    rows = json.loads(listed.stdout)
    assert len(rows) == 1
    for value in rows[0].values():
        _assert_safe(str(value), "a decoded `results --json` field")
    assert "postgresql://app:***@db/x" in rows[0]["error"]


def test_rows_stored_before_redaction_are_redacted_when_shown(project: Project, cli: Cli) -> None:
    _configure(project)
    assert cli.run("--no-ui", "--once").returncode == 1
    raw = HOSTILE.encode().decode("unicode_escape")
    with sqlite3.connect(project.db_path) as db:  # an old row, written by an older version
        db.execute(
            "UPDATE novaconsole_results SET error = ?, traceback = ?, item_id = ?", (raw, raw, raw)
        )
    for args in (("results",), ("results", "--json")):
        shown = cli.run(*args)
        assert shown.returncode == 0, shown.stderr
        _assert_safe(shown.stdout + shown.stderr, " ".join(args))


def test_the_stored_error_and_traceback_are_redacted(project: Project, cli: Cli) -> None:
    _configure(project)
    assert cli.run("--no-ui", "--once").returncode == 1
    with sqlite3.connect(project.db_path) as db:
        stored = db.execute("SELECT item_id, error, traceback FROM novaconsole_results").fetchall()
    assert stored
    for row in stored:
        _assert_safe(" ".join(str(value) for value in row), "the database")
