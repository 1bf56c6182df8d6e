"""How big each benchmark runs: the full sizes of issue 7, a quick pass and a smoke pass."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sizes:
    repeat: int
    """Interleaved rounds of every comparison (B1, B2, B5) and start-up samples (B6)."""
    b1_items: int
    b2_rows: int
    b3_rate: float
    b3_seconds: float
    b4_items: int
    b5_seconds: float
    b5_rate: float
    b5_presses: int
    b5_warm_up: float
    """Seconds a service (and the console) runs before anything is measured."""
    b7_items: int = 20_000
    """Items (and drained rows) of each B7 run. The 5 ms items were a fifth of them: runs of
    under a second at 4 workers, where start-up and the 50 ms poll scaled worse than the
    work did."""
    b7_workers: tuple[int, ...] = (1, 2, 4, 8)
    peers_items: int = 20_000
    """Items of each ``--peers`` workload."""


FULL = Sizes(
    repeat=3,
    b1_items=200_000,
    b2_rows=20_000,
    b3_rate=2_000,
    b3_seconds=10.0,
    b4_items=1_000_000,
    b5_seconds=3.0,
    b5_rate=10_000,
    b5_presses=20,
    b5_warm_up=0.5,
)
QUICK = Sizes(
    repeat=2,
    b1_items=20_000,
    b2_rows=1_000,
    b3_rate=1_000,
    b3_seconds=2.0,
    b4_items=50_000,
    b5_seconds=1.0,
    b5_rate=10_000,
    b5_presses=6,
    b5_warm_up=0.5,
    b7_items=5_000,
    b7_workers=(1, 2),
    peers_items=5_000,
)
SMOKE = Sizes(
    repeat=1,
    b1_items=2_000,
    b2_rows=60,
    b3_rate=200,
    b3_seconds=0.3,
    b4_items=3_000,
    b5_seconds=0.2,
    b5_rate=500,
    b5_presses=2,
    b5_warm_up=0.05,
    b7_items=600,
    b7_workers=(1, 2),
    peers_items=300,
)
