"""Retry policy: exponential backoff with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta

from novaconsole import defaults
from novaconsole.durations import DurationLike, parse_duration


@dataclass(frozen=True, slots=True, init=False)
class RetryPolicy:
    """How often and how soon a failed item is tried again.

    The n-th retry waits ``min(max_delay, base_delay * 2**(n-1))`` scaled by a random factor in
    ``[1 - jitter, 1]`` so that many failures at once do not retry in lockstep.
    """

    max_attempts: int
    base_delay: timedelta
    max_delay: timedelta
    jitter: float = field(default=defaults.RETRY_JITTER)

    def __init__(
        self,
        max_attempts: int = defaults.MAX_ATTEMPTS,
        base_delay: DurationLike = defaults.RETRY_BASE_DELAY,
        max_delay: DurationLike = defaults.RETRY_MAX_DELAY,
        jitter: float = defaults.RETRY_JITTER,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter must be between 0 and 1, got {jitter}")
        object.__setattr__(self, "max_attempts", max_attempts)
        object.__setattr__(self, "base_delay", parse_duration(base_delay))
        object.__setattr__(self, "max_delay", parse_duration(max_delay))
        object.__setattr__(self, "jitter", jitter)

    def delay(self, failed_attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before the next try, after ``failed_attempts`` failures (≥ 1)."""
        exponent = max(failed_attempts - 1, 0)
        base = self.base_delay.total_seconds()
        ceiling = self.max_delay.total_seconds()
        raw = min(ceiling, base * (2 ** min(exponent, 62)))
        factor = 1.0 - self.jitter * (rng or random).random()
        return float(raw * factor)
