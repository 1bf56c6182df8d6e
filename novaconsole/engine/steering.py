"""Exceptions a handler raises from ``process`` to steer its item."""

from __future__ import annotations

from novaconsole.durations import Duration, parse_duration


class RetryAfter(Exception):
    """Try the item again after ``delay`` instead of the retry policy's backoff.

    The attempt counts: once the item is out of attempts it fails as any other error would.
    ``raise RetryAfter(30, "rate limited")`` waits 30 seconds.
    """

    def __init__(self, delay: Duration, reason: str = "") -> None:
        self.delay = parse_duration(delay)
        self.reason = reason
        seconds = self.delay.total_seconds()
        super().__init__(
            f"{reason}: retry after {seconds:g}s" if reason else f"retry after {seconds:g}s"
        )


class GiveUp(Exception):
    """Fail the item now with ``reason``: no further attempts, and ``on_failure`` runs."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
