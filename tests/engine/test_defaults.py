"""Each default lives once (novaconsole.defaults) and every layer reads it; status and
purpose sets have one home on their enums."""

from __future__ import annotations

from pathlib import Path

from novaconsole import BackgroundProcessing, HandlerPurpose, OutcomeStatus, RetryPolicy, defaults
from novaconsole.engine.registry import HandlerRegistration, ProcessingOptions
from novaconsole.settings import Settings
from novaconsole.store import open_store

PROCESSING = {
    "poll_interval": defaults.POLL_INTERVAL,
    "startup_delay": defaults.STARTUP_DELAY,
    "max_concurrency": defaults.MAX_CONCURRENCY,
    "queue_capacity": defaults.QUEUE_CAPACITY,
    "item_timeout": defaults.ITEM_TIMEOUT,
    "fetch_timeout": defaults.FETCH_TIMEOUT,
    "lease_duration": defaults.LEASE_DURATION,
    "shutdown_grace": defaults.SHUTDOWN_GRACE,
}


def test_processing_defaults_agree_in_options_builder_and_settings() -> None:
    settings = Settings()
    for name, value in PROCESSING.items():
        assert getattr(ProcessingOptions(), name) == value, name
        assert getattr(BackgroundProcessing().options, name) == value, name
        assert getattr(settings.processing, name) == value, name


def test_retry_handler_and_store_defaults_agree(tmp_path: Path) -> None:
    settings = Settings()
    retry = RetryPolicy()
    assert (retry.max_attempts, retry.base_delay, retry.max_delay) == (
        defaults.MAX_ATTEMPTS,
        defaults.RETRY_BASE_DELAY,
        defaults.RETRY_MAX_DELAY,
    )
    assert BackgroundProcessing().retry == retry
    assert (settings.retry.max_attempts, settings.retry.base_delay, settings.retry.max_delay) == (
        retry.max_attempts,
        retry.base_delay,
        retry.max_delay,
    )
    registration = HandlerRegistration(name="x", factory=object)
    assert registration.max_items_per_cycle == defaults.MAX_ITEMS_PER_CYCLE
    assert registration.purpose == HandlerPurpose(defaults.PURPOSE)
    assert settings.database.url == defaults.DATABASE_URL
    store = open_store(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    assert (store.keep_results_age, store.keep_results_count) == (
        defaults.KEEP_RESULTS_AGE,
        defaults.KEEP_RESULTS_COUNT,
    )
    assert (settings.store.keep_results_age, settings.store.keep_results_count) == (
        defaults.KEEP_RESULTS_AGE,
        defaults.KEEP_RESULTS_COUNT,
    )


def test_status_and_purpose_sets() -> None:
    assert OutcomeStatus.failures() == {OutcomeStatus.FAILED, OutcomeStatus.TIMED_OUT}
    assert OutcomeStatus.unsuccessful() == OutcomeStatus.failures() | {OutcomeStatus.CANCELLED}
    assert [s for s in OutcomeStatus if s.is_failure] == [
        OutcomeStatus.FAILED,
        OutcomeStatus.TIMED_OUT,
    ]
    assert OutcomeStatus.choices() == (
        "succeeded",
        "failed",
        "timed_out",
        "skipped",
        "cancelled",
    )
    assert HandlerPurpose.choices() == ("ingestion", "internal", "export")
