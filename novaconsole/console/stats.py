"""The console's own history of snapshots: a bounded ring sampled every few seconds."""

from __future__ import annotations

from collections import deque
from datetime import datetime

from novaconsole.console.view_models import (
    STATS_BUCKET,
    STATS_WINDOW,
    StatsSample,
    stats_sample,
)
from novaconsole.engine.snapshot import Snapshot


class StatsHistory:
    """Samples of snapshots, at most one per ``bucket`` seconds, the last ``window`` seconds.

    Fed by the console's refresh (no engine change, no extra reads): :meth:`offer` keeps a
    snapshot only when a bucket has passed since the last kept one.
    """

    def __init__(self, *, bucket: float = STATS_BUCKET, window: float = STATS_WINDOW) -> None:
        self.bucket = bucket
        self.samples: deque[StatsSample] = deque(maxlen=int(window / bucket) + 1)

    def offer(self, snapshot: Snapshot, at: datetime) -> bool:
        """Keep a sample of ``snapshot`` if ``bucket`` seconds passed; True when kept."""
        if self.samples and (at - self.samples[-1].at).total_seconds() < self.bucket:
            return False
        self.samples.append(stats_sample(snapshot, at))
        return True
