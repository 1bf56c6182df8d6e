"""The SQLite file deleted while the service runs: noticed and said, not written on in silence."""

from __future__ import annotations

import signal

import pytest

from tests.clirun import Cli, Project

pytestmark = pytest.mark.slow


def test_a_deleted_database_file_is_warned_about(project: Project, cli: Cli) -> None:
    project.write_config(
        "[processing]\npoll_interval = 1\n"
        '[[handlers]]\nname = "Toy"\nfactory = "handlers.toy:Toy"\n'
    )
    process, stderr = cli.start("--no-ui", "--db", project.db_url)
    stderr.wait_for(lambda line: "running headless" in line)
    for path in project.root.glob("x.db*"):
        path.unlink()
    line = stderr.wait_for(lambda line: "database file" in line)
    assert f"{project.db_path} was deleted while running" in line
    assert "WARNING" in line
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
