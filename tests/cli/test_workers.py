"""``novaconsole workers`` and ``[database] shared``: two headless workers on one SQLite file."""

from __future__ import annotations

import json
import signal
import time

CONFIG = """\
[processing]
poll_interval = "PT0.2S"
lease_duration = "PT2S"

[database]
shared = true

[[handlers]]
name = "Toy"
factory = "handlers.toy:Toy"
[handlers.options]
count = 3
"""


def _workers(cli, project) -> list[dict]:
    result = cli.run("workers", "--json", "--db", project.db_url)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_workers_lists_every_worker_of_a_shared_database(project, cli) -> None:
    project.write_config(CONFIG)
    first, first_log = cli.start("--no-ui", "--db", project.db_url, "--log-format", "json")
    second, second_log = cli.start("--no-ui", "--db", project.db_url, "--log-format", "json")
    for log in (first_log, second_log):
        log.wait_for(lambda line: "novaconsole started" in line)
    deadline = time.monotonic() + 20
    listed = _workers(cli, project)
    while len(listed) < 2 and time.monotonic() < deadline:  # first beats are under a second
        listed = _workers(cli, project)
    assert {row["worker_id"].rsplit(":", 1)[1] for row in listed} == {
        str(first.pid),
        str(second.pid),
    }
    assert all(row["alive"] and row["state"] == "running" for row in listed)

    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    by_pid = {row["worker_id"].rsplit(":", 1)[1]: row for row in _workers(cli, project)}
    assert (by_pid[str(second.pid)]["state"], by_pid[str(second.pid)]["alive"]) == (
        "stopped",
        False,
    )
    assert by_pid[str(first.pid)]["alive"]
    # Items of the same source were shared, never recorded twice for one claim.
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0

    table = cli.run("workers", "--db", project.db_url)
    assert table.returncode == 0
    assert "stopped" in table.stdout and str(first.pid) in table.stdout


def test_workers_of_a_database_nobody_used(project, cli) -> None:
    result = cli.run("workers", "--db", project.db_url)
    assert result.returncode == 0, result.stderr
    assert "(none)" in result.stdout


def test_a_bad_shared_value_is_one_line(project, cli) -> None:
    project.write_config('[database]\nshared = "sometimes"\n')
    result = cli.run("workers")
    assert result.returncode == 2
    assert "database.shared" in result.stderr
    assert "Traceback" not in result.stderr


def test_attach_to_an_unreachable_database_is_one_line(project, cli) -> None:
    result = cli.run("attach", "--db", "postgresql+asyncpg://app:secret@127.0.0.1:1/fleet")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "novaconsole: database.url: cannot open database"
    )
    assert "secret" not in result.stderr
