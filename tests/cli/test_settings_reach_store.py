"""The [store] keys and [database] shared reach the store that the service writes to."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from novaconsole import BackgroundProcessing
from novaconsole.settings import load_settings
from novaconsole.store.sql_store import SqlStore


def test_store_retention_comes_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[database]\nurl = "sqlite+aiosqlite:///results.db"\nshared = true\n'
        '[store]\nkeep_results_age = "01:00:00"\nkeep_results_count = 250\n'
    )
    settings = load_settings(config)
    service = BackgroundProcessing.from_settings(settings).build(database_url=settings.database.url)
    assert isinstance(service.store, SqlStore)
    assert service.store.keep_results_age == timedelta(hours=1)
    assert service.store.keep_results_count == 250
    assert service.store.coordinator is not None, "[database] shared = true claims items"
