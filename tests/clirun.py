"""Driving the real ``novaconsole`` command in subprocesses, as a user would: a project
directory with a toy handler, a runner, and a reader of a running process's stderr.

Shared by the CLI and fault suites; their conftests turn these into fixtures."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TIMEOUT = 30.0
"""Upper bound for one subprocess; the runs themselves take well under a second or two."""

HANDLER_MODULE = '''
"""A tiny handler for the CLI tests: a few items, some of which can fail or be slow."""

from dataclasses import dataclass
from pathlib import Path

import anyio
from pydantic import BaseModel


@dataclass
class Item:
    id: int


class ToyOptions(BaseModel):
    count: int = 3
    fail: list[int] = []
    slow: float = 0.0
    marker_dir: str = ""
    fetch_error: bool = False


class Toy:
    Options = ToyOptions

    def __init__(self, ctx):
        self.ctx = ctx
        self.options = ctx.options

    async def fetch_next(self, max_items):
        if self.options.fetch_error:
            raise ConnectionError("source is down")
        return [Item(i) for i in range(min(self.options.count, max_items))]

    async def process(self, item):
        self.ctx.log.info("processing started")
        if self.options.slow:
            await anyio.sleep(self.options.slow)
        if item.id in self.options.fail:
            raise RuntimeError(f"item {item.id} broke")
        if self.options.marker_dir:
            Path(self.options.marker_dir, f"done-{item.id}").touch()
        self.ctx.log.info("processing finished")
'''


@dataclass
class Project:
    """A user's project directory: ``config.toml`` beside a ``handlers`` package."""

    root: Path
    db_url: str

    @property
    def db_path(self) -> Path:
        return self.root / "x.db"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    def write_config(self, text: str) -> Path:
        self.config.write_text(textwrap.dedent(text))
        return self.config


def make_project(root: Path) -> Project:
    package = root / "handlers"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "toy.py").write_text(HANDLER_MODULE)
    return Project(root=root, db_url=f"sqlite+aiosqlite:///{root / 'x.db'}")  # = db_path


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path)


@pytest.fixture(scope="module")
def shared_project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """One project for a module's read-only tests (each CLI run costs about a second)."""
    return make_project(tmp_path_factory.mktemp("project"))


class Cli:
    """Runs ``python -m novaconsole`` in a project directory, as a user would."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.started: list[subprocess.Popen[str]] = []

    @staticmethod
    def env(**extra: str) -> dict[str, str]:
        """The environment: no stray NOVACONSOLE_* settings from outside, plus ``extra``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOVACONSOLE_")}
        env.update(extra)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def run(
        self, *args: str | Path, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run to completion and capture stdout and stderr."""
        return subprocess.run(
            [sys.executable, "-m", "novaconsole", *map(str, args)],
            cwd=self.cwd,
            env=env if env is not None else self.env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )

    def start(self, *args: str | Path) -> tuple[subprocess.Popen[str], LineReader]:
        """Start in the background; read its stderr with the returned reader."""
        process = subprocess.Popen(
            [sys.executable, "-m", "novaconsole", *map(str, args)],
            cwd=self.cwd,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(process)
        return process, LineReader(process)


def _stop_leftovers(runner: Cli) -> None:
    for process in runner.started:  # a failed test must not leave a process behind
        if process.poll() is None:
            process.kill()
        process.wait(TIMEOUT)


@pytest.fixture
def cli(project: Project) -> Iterator[Cli]:
    runner = Cli(project.root)
    yield runner
    _stop_leftovers(runner)


@pytest.fixture(scope="module")
def shared_cli(shared_project: Project) -> Iterator[Cli]:
    runner = Cli(shared_project.root)
    yield runner
    _stop_leftovers(runner)


class LineReader:
    """Reads a running process's stderr on a thread so a test can wait for a given line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream: Iterator[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, wanted: Callable[[str], bool], timeout: float = TIMEOUT) -> str:
        """The first line (from now) for which ``wanted`` is true; fails on EOF or when none
        came within ``timeout`` (however many other lines did)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no such line within {timeout}s; got:\n{''.join(self.lines)}")
            if line is None:
                pytest.fail(f"the process ended first; it wrote:\n{''.join(self.lines)}")
            self.lines.append(line)
            if wanted(line):
                return line

    def rest(self) -> str:
        """Everything after the process has closed its stderr."""
        self._thread.join(TIMEOUT)
        while not self._queue.empty():
            line = self._queue.get()
            if line is not None:
                self.lines.append(line)
        return "".join(self.lines)
