"""The CLI's error handling and argument parsing, in process."""

from __future__ import annotations

import argparse

import pytest

from novaconsole import cli
from novaconsole.errors import ConfigError


def fails_with(error: BaseException):
    def command(args: argparse.Namespace) -> int:
        raise error

    return command


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("cannot open database", key="database.url"),
        ExceptionGroup("task group", [ConfigError("cannot open database", key="database.url")]),
        BaseExceptionGroup(
            "outer", [ExceptionGroup("inner", [ConfigError("cannot open", key="database.url")])]
        ),
    ],
)
def test_config_error_is_one_line_and_status_2(error, capsys):
    assert cli._guarded(fails_with(error), argparse.Namespace()) == 2
    err = capsys.readouterr().err
    assert err.startswith("novaconsole: database.url: cannot open")
    assert err.count("\n") == 1


def test_multi_line_message_is_folded(capsys):
    error = ConfigError("first line\nsecond line", source="config.toml", key="k")
    assert cli._guarded(fails_with(error), argparse.Namespace()) == 2
    assert capsys.readouterr().err == "novaconsole: config.toml: k: first line second line\n"


def test_interrupt_is_quiet_130(capsys):
    assert cli._guarded(fails_with(KeyboardInterrupt()), argparse.Namespace()) == 130
    grouped = BaseExceptionGroup("g", [KeyboardInterrupt()])
    assert cli._guarded(fails_with(grouped), argparse.Namespace()) == 130
    assert capsys.readouterr().err == ""


def test_other_errors_are_bugs_and_propagate():
    with pytest.raises(ExceptionGroup):
        cli._guarded(fails_with(ExceptionGroup("g", [ZeroDivisionError()])), argparse.Namespace())


def test_subcommand_options_do_not_hide_global_ones():
    parser = cli.build_parser()
    before = parser.parse_args(["--db", "sqlite+aiosqlite:///a.db", "results", "--limit", "5"])
    assert (before.db, before.limit, before.command_func) == (
        "sqlite+aiosqlite:///a.db",
        5,
        cli._results,
    )
    after = parser.parse_args(["results", "--db", "sqlite+aiosqlite:///b.db"])
    assert after.db == "sqlite+aiosqlite:///b.db"
    plain = parser.parse_args(["--no-ui", "--once", "--concurrency", "3", "--log-level", "DEBUG"])
    assert (plain.no_ui, plain.once, plain.concurrency, plain.log_level) == (True, True, 3, "debug")
    assert plain.command_func is cli._run_service


def test_demo_defaults():
    args = cli.build_parser().parse_args(["demo"])
    assert (args.rate, args.failure_rate, args.no_ui, str(args.dir)) == (
        5.0,
        0.1,
        False,
        "demo-data",
    )


def test_main_exits_with_the_status(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["--help"])
    assert exit.value.code == 0
    assert "retry" in capsys.readouterr().out
