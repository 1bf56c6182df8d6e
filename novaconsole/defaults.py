"""Every default of the configuration, once: read by the engine's options, the builder, the
settings models and the store (``config.toml`` keys in brackets)."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

# [processing]
POLL_INTERVAL: Final = timedelta(minutes=5)
STARTUP_DELAY: Final = timedelta(0)
MAX_CONCURRENCY: Final = 8
QUEUE_CAPACITY: Final = 1000
ITEM_TIMEOUT: Final = timedelta(seconds=30)
FETCH_TIMEOUT: Final = timedelta(seconds=30)
LEASE_DURATION: Final = timedelta(minutes=1)
SHUTDOWN_GRACE: Final = timedelta(seconds=30)
BLOCKED_LOOP_WARNING: Final = timedelta(seconds=1)

# [retry]
MAX_ATTEMPTS: Final = 3
RETRY_BASE_DELAY: Final = timedelta(seconds=2)
RETRY_MAX_DELAY: Final = timedelta(minutes=5)
RETRY_JITTER: Final = 0.5

# [[handlers]]
MAX_ITEMS_PER_CYCLE: Final = 10
PURPOSE: Final = "internal"
"""A ``HandlerPurpose`` value."""

# [database] and [store]
DATABASE_URL: Final = "sqlite+aiosqlite:///novaconsole.db"
KEEP_RESULTS_AGE: Final = timedelta(days=7)
KEEP_RESULTS_COUNT: Final = 100_000
