"""``python -m benchmarks [--quick] [--only B1,B3] [--repeat N] [--peers]``: print one table."""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
from dataclasses import replace
from time import perf_counter

from benchmarks.report import render
from benchmarks.runner import NAMES, run_all
from benchmarks.sizes import FULL, QUICK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="novaconsole benchmarks (issue 7): one table."
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    parser.add_argument("--only", help="e.g. B1,B5 (default: all; with --peers: none)")
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also the no-op and drain workloads through huey and dramatiq, where installed",
    )
    parser.add_argument("--repeat", type=int, help="interleaved rounds per comparison")
    parser.add_argument(
        "--workers", help="B7's worker counts, e.g. 1,2,4 (default: 1,2,4,8; quick: 1,2)"
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.repeat:
        sizes = replace(sizes, repeat=args.repeat)
    if args.workers:
        try:
            counts = tuple(int(count) for count in args.workers.split(","))
        except ValueError:
            parser.error(f"--workers takes counts like 1,2,4, not {args.workers!r}")
        if not counts or min(counts) < 1:
            parser.error("--workers: each count must be at least 1")
        sizes = replace(sizes, b7_workers=counts)
    chosen = args.only if args.only is not None else ("" if args.peers else ",".join(NAMES))
    only = [name.strip().upper() for name in chosen.split(",") if name.strip()]
    logging.basicConfig(level=logging.WARNING)
    started = perf_counter()
    rows = run_all(sizes, only, with_peers=args.peers)
    print(render(rows))
    print(
        f"\n{'quick' if args.quick else 'full'} run, {sizes.repeat} rounds, "
        f"{perf_counter() - started:.0f} s; Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
