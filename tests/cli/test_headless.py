"""The headless runner through the real command: --once, SIGTERM, JSON logs, no Textual."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest


def toy_config(*, options: str = "", retry: str = "max_attempts = 2\nbase_delay = 0") -> str:
    return (
        f"[retry]\n{retry}\n\n"
        '[[handlers]]\nname = "Toy"\nfactory = "handlers.toy:Toy"\n'
        f"[handlers.options]\n{options}\n"
    )


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def summary_row(stdout: str, handler: str) -> dict[str, str]:
    """One handler's row of the summary table, by column title."""
    lines = stdout.splitlines()
    header = next(line for line in lines if "succeeded" in line)
    row = next(line for line in lines if line.startswith("│") and f" {handler} " in line)
    titles = [cell.strip() for cell in header.split("┃")[1:-1]]
    return dict(zip(titles, (cell.strip() for cell in row.split("│")[1:-1]), strict=True))


def test_once_exits_0_when_every_item_succeeded(project, cli):
    project.write_config(toy_config(options="count = 3"))
    result = cli.run("--no-ui", "--once", "--db", project.db_url)
    assert result.returncode == 0, result.stderr
    assert "one cycle: 3 items" in result.stdout
    row = summary_row(result.stdout, "Toy")
    assert (row["fetched"], row["succeeded"], row["failed"]) == ("3", "3", "0")
    assert "Traceback" not in result.stderr


def test_once_exits_1_when_an_item_failed_and_logs_carry_item_ids(project, cli):
    project.write_config(toy_config(options="count = 3\nfail = [1]"))
    result = cli.run("--no-ui", "--once", "--db", project.db_url, "--log-format", "json")
    assert result.returncode == 1, result.stderr
    assert "FAILED" in result.stdout
    row = summary_row(result.stdout, "Toy")
    assert (row["succeeded"], row["failed"], row["cancelled"]) == ("2", "1", "0")

    records = json_lines(result.stderr)  # every stderr line is one JSON object
    started = [r for r in records if r["message"] == "processing started"]
    assert sorted(r["item_id"] for r in started) == [0, 1, 1, 2]  # item 1 tried twice
    assert {r["handler"] for r in started} == {"Toy"}
    failure = [r for r in records if r["level"] == "ERROR" and r.get("item_id") == 1]
    assert failure and failure[0]["handler"] == "Toy"
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)


def test_once_exits_1_when_a_fetch_failed(project, cli):
    project.write_config(toy_config(options="fetch_error = true"))
    result = cli.run("--no-ui", "--once", "--db", project.db_url)
    assert result.returncode == 1
    assert "fetch from Toy failed: ConnectionError: source is down" in result.stdout


def test_environment_and_flag_choose_the_database(project, cli):
    project.write_config(toy_config(options="count = 1"))
    from_env = project.root / "env.db"
    from_flag = project.root / "flag.db"
    env = cli.env(NOVACONSOLE_DATABASE__URL=f"sqlite+aiosqlite:///{from_env}")
    assert cli.run("--no-ui", "--once", env=env).returncode == 0
    assert from_env.exists()
    flagged = cli.run("--no-ui", "--once", "--db", f"sqlite+aiosqlite:///{from_flag}", env=env)
    assert flagged.returncode == 0
    assert from_flag.exists()
    assert not (project.root / "novaconsole.db").exists()


def test_config_database_path_is_relative_to_the_config_file(project, cli, tmp_path):
    project.write_config('[database]\nurl = "sqlite+aiosqlite:///state/app.db"\n' + toy_config())
    (project.root / "state").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "novaconsole", "--config", project.config, "--no-ui", "--once"],
        cwd=elsewhere,
        env=cli.env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (project.root / "state" / "app.db").exists()
    assert not list(elsewhere.iterdir())


def test_concurrency_flag_overrides_environment(project, cli):
    project.write_config(toy_config())
    env = cli.env(NOVACONSOLE_PROCESSING__MAX_CONCURRENCY="4")
    args = ("--no-ui", "--once", "--db", project.db_url)
    assert "concurrency 4" in cli.run(*args, env=env).stderr
    assert "concurrency 6" in cli.run(*args, "--concurrency", "6", env=env).stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_in_flight_items_and_exits_0(project, cli, signum):
    markers = project.root / "done"
    markers.mkdir()
    project.write_config(toy_config(options=f'count = 2\nslow = 0.5\nmarker_dir = "{markers}"'))
    process, reader = cli.start("--no-ui", "--db", project.db_url, "--log-format", "json")
    reader.wait_for(lambda line: "running headless" in line)
    reader.wait_for(lambda line: "processing started" in line)  # an item is in flight
    process.send_signal(signum)
    assert process.wait(30) == 0
    logs = json_lines(reader.rest())
    messages = [r["message"] for r in logs]
    assert f"{signal.Signals(signum).name} received: draining" in messages
    assert messages[-1] == "novaconsole stopped"
    # Drained, not cut off: the items in flight finished before the process left.
    assert sorted(p.name for p in markers.iterdir()) == ["done-0", "done-1"]
    assert sum(m == "processing finished" for m in messages) == 2
    assert process.stdout is not None
    assert summary_row(process.stdout.read(), "Toy")["succeeded"] == "2"  # counted while draining


def test_signal_during_once_drains_and_exits_128_plus_signal(project, cli):
    markers = project.root / "done"
    markers.mkdir()
    project.write_config(toy_config(options=f'count = 1\nslow = 0.5\nmarker_dir = "{markers}"'))
    process, reader = cli.start("--no-ui", "--once", "--db", project.db_url, "--log-format", "json")
    reader.wait_for(lambda line: "processing started" in line)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 128 + signal.SIGTERM
    messages = [r["message"] for r in json_lines(reader.rest())]
    assert "SIGTERM received: stopping the cycle" in messages
    assert (markers / "done-0").exists()  # the item in flight was drained, not cut off
    assert "Traceback" not in "\n".join(messages)


HYGIENE = """
import json, sys
from novaconsole.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
with open(sys.argv[0] + ".modules", "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""


def test_headless_never_imports_textual(project, cli):
    project.write_config(toy_config(options="count = 2"))
    script = project.root / "probe.py"
    script.write_text(textwrap.dedent(HYGIENE))
    result = subprocess.run(
        [sys.executable, script, "--no-ui", "--once", "--db", project.db_url],
        cwd=project.root,
        env=cli.env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    report = json.loads((project.root / "probe.py.modules").read_text())
    assert report["code"] == 0, result.stderr
    assert "novaconsole.headless" in report["modules"]  # the headless path really ran
    assert not [m for m in report["modules"] if m == "textual" or m.startswith("textual.")]
    assert "novaconsole.console" not in report["modules"]


def test_help_imports_nothing_heavy(cli):
    """``novaconsole --help`` must be instant: no pydantic, SQLAlchemy, Textual, Rich or anyio."""
    probe = (
        "import sys\n"
        "from novaconsole.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as exit:\n    assert exit.code == 0\n"
        "print(sorted(sys.modules), file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True
    )
    assert "usage: novaconsole" in result.stdout
    loaded = result.stderr
    for heavy in ("sqlalchemy", "textual", "pydantic", "pydantic_settings", "rich", "anyio"):
        assert f"'{heavy}'" not in loaded
