"""load_settings / load_handlers in process: sources, priorities, paths and imports."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest

from novaconsole.builder import BackgroundProcessing, load_handlers
from novaconsole.engine.handler import HandlerPurpose
from novaconsole.errors import ConfigError
from novaconsole.settings import (
    DEFAULT_DATABASE_URL,
    load_settings,
    resolve_sqlite_url,
)

FULL = """
[processing]
poll_interval = "00:01:00"
startup_delay = "PT2S"
max_concurrency = 3
queue_capacity = 50
item_timeout = 12
fetch_timeout = "00:00:04"
lease_duration = "PT90S"
shutdown_grace = "1.5"

[retry]
max_attempts = 5
base_delay = "00:00:01"
max_delay = "PT1M"

[database]
url = "sqlite+aiosqlite:///data/app.db"

[store]
keep_results_age = "P2D"
keep_results_count = 500

[[handlers]]
name = "Toy"
factory = "handlers.toy:Toy"
purpose = "ingestion"
max_items_per_cycle = 7
enabled = false
poll_interval = "PT10S"
item_timeout = "00:00:02"
max_attempts = 2
[handlers.options]
count = 4
fail = [1, 2]
"""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    import os

    for name in list(os.environ):
        if name.upper().startswith("NOVACONSOLE_"):
            monkeypatch.delenv(name)


def _is_handlers(name: str) -> bool:
    return name == "handlers" or name.startswith("handlers.")


@pytest.fixture(autouse=True)
def _data_directory(project):
    """FULL's database directory: settings refuse a SQLite path in a missing directory."""
    (project.root / "data").mkdir()


@pytest.fixture
def _restore_sys_path():
    """The project's ``handlers`` package, not the repository's (or another test's)."""
    saved_path = list(sys.path)
    saved = {name: sys.modules.pop(name) for name in list(sys.modules) if _is_handlers(name)}
    yield
    sys.path[:] = saved_path
    for name in [name for name in sys.modules if _is_handlers(name)]:
        del sys.modules[name]
    sys.modules.update(saved)


def test_every_key_is_read(project):
    settings = load_settings(project.write_config(FULL))
    p = settings.processing
    assert (p.poll_interval, p.startup_delay) == (timedelta(minutes=1), timedelta(seconds=2))
    assert (p.max_concurrency, p.queue_capacity) == (3, 50)
    assert (p.item_timeout, p.fetch_timeout) == (timedelta(seconds=12), timedelta(seconds=4))
    assert p.lease_duration == timedelta(seconds=90)
    assert p.shutdown_grace == timedelta(seconds=1.5)
    r = settings.retry
    assert (r.max_attempts, r.base_delay, r.max_delay) == (5, timedelta(0, 1), timedelta(0, 60))
    assert settings.store.keep_results_age == timedelta(days=2)
    assert settings.store.keep_results_count == 500
    (handler,) = settings.handlers
    assert handler.purpose is HandlerPurpose.INGESTION
    assert (handler.max_items_per_cycle, handler.enabled, handler.max_attempts) == (7, False, 2)
    assert handler.poll_interval == timedelta(seconds=10)
    assert handler.item_timeout == timedelta(seconds=2)
    assert handler.options == {"count": 4, "fail": [1, 2]}
    assert settings.source == project.config
    assert settings.base_dir == project.root.resolve()


def test_defaults_without_a_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None)
    assert settings.source is None
    assert settings.base_dir == tmp_path
    assert settings.processing.poll_interval == timedelta(minutes=5)
    assert settings.processing.max_concurrency == 8
    assert settings.retry.max_attempts == 3
    assert settings.store.keep_results_age == timedelta(days=7)
    assert settings.store.keep_results_count == 100_000
    assert settings.handlers == []
    assert settings.database.url == f"sqlite+aiosqlite:///{tmp_path / 'novaconsole.db'}"


def test_default_config_toml_in_working_directory(project, monkeypatch):
    project.write_config("[processing]\nmax_concurrency = 6\n")
    monkeypatch.chdir(project.root)
    settings = load_settings(None)
    assert settings.processing.max_concurrency == 6
    assert settings.source == Path("config.toml")


def test_limits_can_be_switched_off(project):
    text = '[store]\nkeep_results_age = "none"\nkeep_results_count = "none"\n'
    settings = load_settings(project.write_config(text))
    assert settings.store.keep_results_age is None
    assert settings.store.keep_results_count is None


def test_relative_sqlite_path_is_relative_to_the_config_file(project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)
    settings = load_settings(project.write_config(FULL))
    assert settings.database.url == f"sqlite+aiosqlite:///{project.root / 'data' / 'app.db'}"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:////abs/x.db",
        "sqlite+aiosqlite:///:memory:",
        "postgresql+asyncpg://u:p@localhost/db",
    ],
)
def test_other_urls_are_left_alone(url):
    assert resolve_sqlite_url(url, Path("/base")) == url


def test_sqlite_query_string_is_kept():
    url = resolve_sqlite_url("sqlite+aiosqlite:///x.db?timeout=5", Path("/base"))
    assert url == "sqlite+aiosqlite:////base/x.db?timeout=5"


def test_priority_flags_over_environment_over_file(project, monkeypatch):
    path = project.write_config("[processing]\nmax_concurrency = 2\nqueue_capacity = 20\n")
    monkeypatch.setenv("NOVACONSOLE_PROCESSING__MAX_CONCURRENCY", "4")
    monkeypatch.setenv("NOVACONSOLE_PROCESSING__QUEUE_CAPACITY", "40")
    monkeypatch.setenv("NOVACONSOLE_DATABASE__URL", "sqlite+aiosqlite:////tmp/x.db")
    settings = load_settings(path, overrides={"processing.max_concurrency": 9})
    assert settings.processing.max_concurrency == 9  # flag
    assert settings.processing.queue_capacity == 40  # environment
    assert settings.database.url == "sqlite+aiosqlite:////tmp/x.db"
    nested = load_settings(path, overrides={"database": {"url": "sqlite+aiosqlite:////flag.db"}})
    assert nested.database.url == "sqlite+aiosqlite:////flag.db"
    assert nested.processing.max_concurrency == 4


def test_environment_durations_and_limits(project, monkeypatch):
    monkeypatch.setenv("NOVACONSOLE_RETRY__BASE_DELAY", "PT3S")
    monkeypatch.setenv("NOVACONSOLE_STORE__KEEP_RESULTS_AGE", "none")
    settings = load_settings(project.write_config(""))
    assert settings.retry.base_delay == timedelta(seconds=3)
    assert settings.store.keep_results_age is None


def test_flag_error_names_the_command_line(project):
    with pytest.raises(ConfigError) as error:
        load_settings(project.write_config(""), overrides={"processing.max_concurrency": 0})
    assert str(error.value).startswith("command line: processing.max_concurrency:")


@pytest.mark.usefixtures("_restore_sys_path")
def test_handlers_are_imported_from_the_config_directory(project):
    settings = load_settings(project.write_config(FULL))
    (registration,) = load_handlers(settings)
    assert sys.path[0] == str(project.root.resolve())
    assert registration.factory.__module__ == "handlers.toy"
    assert registration.name == "Toy"
    assert registration.purpose is HandlerPurpose.INGESTION
    assert registration.max_items_per_cycle == 7
    assert registration.options.count == 4  # validated by the handler's Options model
    assert registration.options.fail == [1, 2]


@pytest.mark.usefixtures("_restore_sys_path")
def test_from_settings_builds_the_registry(project):
    settings = load_settings(project.write_config(FULL))
    processing = BackgroundProcessing.from_settings(settings)
    assert processing.options.max_concurrency == 3
    assert processing.retry.max_attempts == 5
    assert processing.handlers(HandlerPurpose.INGESTION) == ["Toy"]
    assert processing.handlers(HandlerPurpose.EXPORT) == []


@pytest.mark.usefixtures("_restore_sys_path")
def test_options_error_names_file_and_handler_index(project):
    text = (
        '[[handlers]]\nname = "Toy"\nfactory = "handlers.toy:Toy"\n'
        '[handlers.options]\ncount = "x"\n'
    )
    with pytest.raises(ConfigError) as error:
        load_handlers(load_settings(project.write_config(text)))
    assert str(error.value).startswith(f"{project.config}: handlers[0].options: count:")


def test_default_database_url_constant():
    assert DEFAULT_DATABASE_URL == "sqlite+aiosqlite:///novaconsole.db"


def test_environment_changes_one_key_of_one_handler(project, monkeypatch):
    monkeypatch.setenv("NOVACONSOLE_HANDLERS__0__ENABLED", "true")
    monkeypatch.setenv("NOVACONSOLE_HANDLERS__0__OPTIONS__COUNT", "9")
    (handler,) = load_settings(project.write_config(FULL)).handlers
    assert handler.enabled is True  # the file says false
    assert handler.options == {"count": "9", "fail": [1, 2]}  # the Options model coerces later
    assert (handler.name, handler.max_items_per_cycle) == ("Toy", 7)  # the rest as in the file


def test_environment_cannot_invent_a_handler(project, monkeypatch):
    monkeypatch.setenv("NOVACONSOLE_HANDLERS__1__ENABLED", "false")
    with pytest.raises(ConfigError) as error:
        load_settings(project.write_config(FULL))
    assert "NOVACONSOLE_HANDLERS__1" in str(error.value)
    assert "there is no handlers[1]" in str(error.value)


def test_bad_handler_value_from_environment_names_the_variable(project, monkeypatch):
    monkeypatch.setenv("NOVACONSOLE_HANDLERS__0__MAX_ITEMS_PER_CYCLE", "0")
    with pytest.raises(ConfigError) as error:
        load_settings(project.write_config(FULL))
    assert str(error.value).startswith(
        "environment NOVACONSOLE_HANDLERS__0__MAX_ITEMS_PER_CYCLE: handlers[0].max_items_per_cycle:"
    )


FREE_HANDLER = """
from pydantic import BaseModel, ConfigDict


class FreeOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    count: int = 1


class Free:
    Options = FreeOptions

    def __init__(self, ctx):
        self.ctx = ctx

    async def fetch_next(self, max_items):
        return []

    async def process(self, item):
        pass
"""


@pytest.mark.usefixtures("_restore_sys_path")
def test_unknown_options_are_errors_unless_the_model_allows_extras(project):
    (project.root / "handlers" / "free.py").write_text(FREE_HANDLER)
    text = (
        '[[handlers]]\nname = "Toy"\nfactory = "handlers.toy:Toy"\n'
        "[handlers.options]\ncount = 2\n"
        '[[handlers]]\nname = "Free"\nfactory = "handlers.free:Free"\n'
        "[handlers.options]\ncount = 2\nanything = 3\n"
    )
    _toy, free = load_handlers(load_settings(project.write_config(text)))
    assert free.options.anything == 3  # extra="allow": free keys on purpose
    with pytest.raises(ConfigError) as error:
        load_handlers(
            load_settings(project.write_config(text.replace("count = 2\n", "coutn = 2\n", 1)))
        )
    assert str(error.value) == (
        f"{project.config}: handlers[0].options.coutn: unknown key "
        "(the handler's ToyOptions takes: count, fail, fetch_error, marker_dir, slow)"
    )
