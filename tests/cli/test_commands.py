"""handlers, results and retry against the database a real --once run wrote."""

from __future__ import annotations

import json

import pytest

CONFIG = """\
[retry]
max_attempts = 1

[[handlers]]
name = "Toy"
factory = "handlers.toy:Toy"
purpose = "ingestion"
max_items_per_cycle = 5
[handlers.options]
count = 3
fail = [1]

[[handlers]]
name = "Quiet"
factory = "handlers.toy:Toy"
purpose = "export"
poll_interval = "PT30S"
[handlers.options]
count = 0
"""


def run_one_cycle(project, cli):
    """A database holding one cycle: Toy items 0 and 2 succeeded, item 1 failed for good."""
    project.write_config(CONFIG)
    result = cli.run("--no-ui", "--once", "--db", project.db_url)
    assert result.returncode == 1, result.stderr
    return project


@pytest.fixture(scope="module")
def ran_once(shared_project, shared_cli):
    """Shared by the tests that only read."""
    return run_one_cycle(shared_project, shared_cli)


def test_handlers_json_joins_config_and_totals(ran_once, shared_cli):
    result = shared_cli.run("handlers", "--json", "--db", ran_once.db_url)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    toy, quiet = rows["Toy"], rows["Quiet"]
    assert (toy["purpose"], toy["batch_size"], toy["enabled"]) == ("ingestion", 5, True)
    assert (toy["succeeded"], toy["failed"], toy["skipped"]) == (2, 1, 0)
    assert toy["poll_interval"] == 300.0
    assert toy["last_finished_at"] is not None
    assert (quiet["succeeded"], quiet["poll_interval"], quiet["last_finished_at"]) == (
        0,
        30.0,
        None,
    )


def test_handlers_filtered_by_purpose_as_a_table(ran_once, shared_cli):
    result = shared_cli.run("handlers", "--purpose", "export", "--db", ran_once.db_url)
    assert result.returncode == 0, result.stderr
    assert "Quiet" in result.stdout
    assert "Toy" not in result.stdout


def test_results_json_and_filters(ran_once, shared_cli):
    everything = json.loads(shared_cli.run("results", "--json", "--db", ran_once.db_url).stdout)
    assert sorted((r["item_id"], r["status"]) for r in everything) == [
        ("0", "succeeded"),
        ("1", "failed"),
        ("2", "succeeded"),
    ]
    failed = shared_cli.run("results", "--status", "failed", "--json", "--db", ran_once.db_url)
    (row,) = json.loads(failed.stdout)
    assert row["handler"] == "Toy"
    assert row["error"] == "RuntimeError: item 1 broke"
    assert "Traceback" in row["traceback"]
    limited = shared_cli.run(
        "results", "--limit", "1", "--handler", "Toy", "--json", "--db", ran_once.db_url
    )
    assert len(json.loads(limited.stdout)) == 1


def test_results_table(ran_once, shared_cli):
    table = shared_cli.run("results", "--db", ran_once.db_url)
    assert table.returncode == 0
    assert "RuntimeError: item 1 broke" in table.stdout


def test_retry_lets_a_dead_item_run_again(project, cli):
    db = ("--db", run_one_cycle(project, cli).db_url)
    result = cli.run("retry", "Toy", "1", *db)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Toy 1: retry requested",
        "Toy 1: saved; runs at next start",
    ]
    never_failed = cli.run("retry", "Toy", "0", *db)
    assert never_failed.returncode == 2  # nothing to retry: one line
    assert "Toy 0: no failed result or attempts remembered" in never_failed.stderr

    again = cli.run("--no-ui", "--once", *db)
    assert again.returncode == 1  # tried again (not skipped as a dead item), and failed again
    assert "FAILED" in again.stdout


def test_retry_of_unknown_handler_says_so(ran_once, shared_cli):
    result = shared_cli.run("retry", "Nope", "1", "--db", ran_once.db_url)
    assert result.returncode == 2
    assert "no handler named 'Nope' (registered: Toy, Quiet)" in result.stderr


def test_results_of_a_database_not_yet_created(project, cli):
    result = cli.run("results", "--json", "--db", project.db_url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert not (project.root / "x.db").exists()


def test_global_db_flag_before_the_subcommand(ran_once, shared_cli):
    result = shared_cli.run("--db", ran_once.db_url, "results", "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 3


def test_unreachable_database_is_one_line_exit_2(project, cli):
    result = cli.run("results", "--db", "postgresql+asyncpg://u:secret@127.0.0.1:9/none")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "secret" not in result.stderr
    assert "Traceback" not in result.stderr
