"""Every configuration mistake ends in one line naming the file and key, exit status 2."""

from __future__ import annotations

import pytest

TOY = 'name = "Toy"\nfactory = "handlers.toy:Toy"\n'

CASES = {
    "toml-syntax": ("[processing\nmax_concurrency = 2\n", "line 1"),
    "unknown-purpose": (f'[[handlers]]\n{TOY}purpose = "sideways"\n', "handlers[0].purpose"),
    "negative-batch": (f"[[handlers]]\n{TOY}max_items_per_cycle = -5\n", "handlers[0].max_items"),
    "zero-batch": (f"[[handlers]]\n{TOY}max_items_per_cycle = 0\n", "handlers[0].max_items"),
    "bad-duration": ('[processing]\npoll_interval = "five minutes"\n', "processing.poll_interval"),
    "negative-duration": ('[retry]\nbase_delay = "-3"\n', "retry.base_delay"),
    "bad-handler-duration": (f'[[handlers]]\n{TOY}item_timeout = "soon"\n', "handlers[0].item"),
    "zero-timeout": ('[processing]\nitem_timeout = "00:00:00"\n', "processing.item_timeout"),
    "unknown-key": ("[processing]\nmax_workers = 3\n", "processing.max_workers"),
    "unknown-section": ("[procesing]\nmax_concurrency = 3\n", "procesing"),
    "unknown-handler-key": (f"[[handlers]]\n{TOY}batch = 3\n", "handlers[0].batch"),
    "zero-concurrency": ("[processing]\nmax_concurrency = 0\n", "processing.max_concurrency"),
    "unimportable-factory": (
        '[[handlers]]\nname = "Nope"\nfactory = "handlers.nope:Nope"\n',
        "handlers[0].factory: cannot import 'handlers.nope'",
    ),
    "missing-attribute": (
        '[[handlers]]\nname = "Toy"\nfactory = "handlers.toy:Missing"\n',
        "handlers[0].factory: module 'handlers.toy' has no attribute 'Missing'",
    ),
    "not-a-handler": (
        '[[handlers]]\nname = "Toy"\nfactory = "handlers.toy:Item"\n',
        "handlers[0].factory: 'handlers.toy:Item' is not a handler",
    ),
    "factory-without-colon": (
        '[[handlers]]\nname = "Toy"\nfactory = "handlers.toy.Toy"\n',
        "handlers[0].factory: expected 'module:attribute'",
    ),
    "options-fail-model": (
        f'[[handlers]]\n{TOY}[handlers.options]\ncount = "lots"\n',
        "handlers[0].options: count",
    ),
    "options-unknown-type": (
        f"[[handlers]]\n{TOY}[handlers.options]\nfail = 3\n",
        "handlers[0].options: fail",
    ),
    "options-unknown-key": (
        f"[[handlers]]\n{TOY}[handlers.options]\ncount = 2\ncuont = 3\n",
        "handlers[0].options.cuont: unknown key (the handler's ToyOptions takes: count,",
    ),
    "infinite-duration": ("[processing]\npoll_interval = inf\n", "processing.poll_interval"),
    "nan-duration": ("[processing]\npoll_interval = nan\n", "processing.poll_interval"),
    "overflowing-duration": ("[processing]\npoll_interval = 1e300\n", "too long"),
    "overflowing-days": ('[retry]\nmax_delay = "99999999999.00:00:00"\n', "retry.max_delay"),
    "huge-duration": ("[processing]\nlease_duration = 1e10\n", "at most 3650 days"),
    "infinite-handler-duration": (f"[[handlers]]\n{TOY}poll_interval = inf\n", "handlers[0].poll"),
    "duplicate-names": (f"[[handlers]]\n{TOY}[[handlers]]\n{TOY}", "handlers[1].name"),
    "missing-name": ('[[handlers]]\nfactory = "handlers.toy:Toy"\n', "handlers[0].name"),
}


def assert_config_error(result, *expected: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("novaconsole: ")
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in lines[0]


@pytest.mark.parametrize("case", CASES)
def test_bad_config_is_one_line_exit_2(project, cli, case):
    text, key = CASES[case]
    project.write_config(text)
    result = cli.run("--no-ui", "--once", "--db", project.db_url)
    assert_config_error(result, "config.toml", key)


def test_bad_config_also_stops_subcommands(project, cli):
    project.write_config(CASES["unimportable-factory"][0])
    result = cli.run("handlers", "--db", project.db_url)
    assert_config_error(result, "config.toml: handlers[0].factory: cannot import")


def test_missing_config_file_named(project, cli):
    result = cli.run("--config", "elsewhere.toml", "--no-ui", "--once")
    assert_config_error(result, "elsewhere.toml", "no such file")


def test_handler_module_that_crashes_on_import(project, cli):
    (project.root / "handlers" / "broken.py").write_text("import os\nraise RuntimeError('boom')\n")
    project.write_config('[[handlers]]\nname = "B"\nfactory = "handlers.broken:B"\n')
    result = cli.run("--no-ui", "--once", "--db", project.db_url)
    assert_config_error(result, "handlers[0].factory", "RuntimeError: boom")


def test_bad_environment_value_names_the_variable(project, cli):
    project.write_config("[processing]\nmax_concurrency = 2\n")
    env = cli.env(NOVACONSOLE_PROCESSING__POLL_INTERVAL="whenever")
    result = cli.run("--no-ui", "--once", "--db", project.db_url, env=env)
    assert_config_error(
        result, "environment NOVACONSOLE_PROCESSING__POLL_INTERVAL", "processing.poll_interval"
    )


def test_unknown_environment_key_is_rejected(project, cli):
    env = cli.env(NOVACONSOLE_RETRY__MAX_ATTEMPT="3")
    result = cli.run("--no-ui", "--once", "--db", project.db_url, env=env)
    assert_config_error(result, "NOVACONSOLE_RETRY__MAX_ATTEMPT", "retry.max_attempt", "unknown")


def test_unusable_database_url(project, cli):
    project.write_config(f"[[handlers]]\n{TOY}")
    result = cli.run("--no-ui", "--once", "--db", "nosuchdb://x")
    assert_config_error(result, "database")


@pytest.mark.parametrize("mode", [["--no-ui"], ["--no-ui", "--once"]])
def test_unreachable_database_is_one_line(project, cli, mode):
    project.write_config(f"[[handlers]]\n{TOY}")
    # connect_timeout 0: no retries at start (each would log a line); tests/faults has those.
    env = cli.env(NOVACONSOLE_DATABASE__CONNECT_TIMEOUT="0")
    result = cli.run(*mode, "--db", "postgresql+asyncpg://u:secret@127.0.0.1:9/none", env=env)
    assert_config_error(result, "database.url", "u:***@127.0.0.1:9")
    assert "secret" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--concurrency", "0"],
        ["--concurrency", "many"],
        ["--log-format", "xml"],
        ["--no-such-flag"],
        ["results", "--status", "sideways"],
        ["results", "--limit", "-1"],
    ],
)
def test_usage_errors_exit_2(project, cli, args):
    result = cli.run(*args)
    assert result.returncode == 2
    assert "usage: novaconsole" in result.stderr
    assert "Traceback" not in result.stderr


def test_retry_with_a_handler_but_no_item_is_one_line_and_exit_2(project, cli):
    """retry takes HANDLER ITEM_ID or --group ID: half of the first is one line, not a usage
    dump (argparse cannot say it, since both positionals are optional for --group)."""
    result = cli.run("retry", "OnlyHandler")
    assert result.returncode == 2
    assert result.stderr == "novaconsole: retry needs HANDLER ITEM_ID, or --group ID\n"


def test_unknown_option_from_environment_names_the_variable(project, cli):
    project.write_config(f"[[handlers]]\n{TOY}")
    env = cli.env(NOVACONSOLE_HANDLERS__0__OPTIONS__CUONT="3")
    result = cli.run("--no-ui", "--once", "--db", project.db_url, env=env)
    assert_config_error(
        result, "environment NOVACONSOLE_HANDLERS__0__OPTIONS__CUONT", "options.cuont: unknown key"
    )


@pytest.mark.parametrize("where", ["file", "flag"])
def test_sqlite_directory_that_does_not_exist_is_one_line_and_is_not_created(project, cli, where):
    missing = project.root / "dtaa" / "deeper"
    url = f"sqlite+aiosqlite:///{missing / 'app.db'}"
    if where == "file":
        project.write_config(f'[database]\nurl = "{url}"\n[[handlers]]\n{TOY}')
        result = cli.run("--no-ui", "--once")
    else:
        project.write_config(f"[[handlers]]\n{TOY}")
        result = cli.run("--no-ui", "--once", "--db", url)
    source = "config.toml" if where == "file" else "command line"
    assert_config_error(result, source, "database.url", f"{missing} does not exist")
    assert not (project.root / "dtaa").exists()


@pytest.mark.parametrize("mode", [["--no-ui"], ["--no-ui", "--once"]])
@pytest.mark.parametrize("config", ["missing", "empty"])
def test_no_handlers_is_one_line_exit_2_and_creates_no_database(project, cli, mode, config):
    if config == "empty":
        project.write_config("[processing]\nmax_concurrency = 2\n")
    result = cli.run(*mode)
    if config == "missing":
        assert_config_error(result, f"{project.config} does not exist", "--config PATH")
    else:
        assert_config_error(result, f"{project.config.resolve()} has no [[handlers]]", "add one")
    assert not list(project.root.glob("*.db*"))
