"""B6 start-up: ``novaconsole --help`` and the console's first frame, each a fresh process.

Both are timed from spawning the process: ``--help`` until it exits; the first frame until
the child (``python -m benchmarks.b6_startup``) prints that ``NovaConsole(service)``, run
headless with a service running, has mounted its first screen (``run_test()`` has entered).
Best of ``repeat`` each.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from time import perf_counter

from benchmarks.measure import progress
from benchmarks.report import Row, limit_row

HELP_TARGET = 0.3
FRAME_TARGET = 1.0
ROOT = Path(__file__).resolve().parent.parent


def _command() -> list[str]:
    script = Path(sys.executable).with_name("novaconsole")
    if script.exists():
        return [str(script)]
    found = shutil.which("novaconsole")
    return [found] if found else [sys.executable, "-m", "novaconsole"]


def help_seconds() -> float:
    started = perf_counter()
    subprocess.run([*_command(), "--help"], check=True, capture_output=True, cwd=ROOT)
    return perf_counter() - started


def first_frame_seconds() -> float:
    started = perf_counter()
    with subprocess.Popen(
        [sys.executable, "-m", "benchmarks.b6_startup"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    ) as child:
        assert child.stdout is not None
        line = child.stdout.readline()
        elapsed = perf_counter() - started
        child.wait()
    if line.strip() != "mounted":
        raise RuntimeError(f"the console child said {line!r}")
    return elapsed


def run(repeat: int) -> list[Row]:
    helps = [help_seconds() for _ in range(repeat)]
    frames = [first_frame_seconds() for _ in range(repeat)]
    progress(
        "B6: --help "
        + ", ".join(f"{s:.3f}" for s in helps)
        + " s; first frame "
        + ", ".join(f"{s:.3f}" for s in frames)
        + " s"
    )
    return [
        limit_row("B6", f"novaconsole --help (best of {repeat})", min(helps), "s", HELP_TARGET),
        limit_row("B6", f"first console frame (best of {repeat})", min(frames), "s", FRAME_TARGET),
    ]


async def _first_frame() -> None:
    from benchmarks.workloads import Counter, no_op_service
    from novaconsole.console import NovaConsole

    service = no_op_service(Counter(0).handler(), poll_interval=60.0)
    async with service.running(), NovaConsole(service).run_test(size=(120, 40)):
        print("mounted", flush=True)


if __name__ == "__main__":
    import anyio

    anyio.run(_first_frame)
