"""A project on disk and ``novaconsole serve`` run on it in a subprocess, as a user would."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio

from novaconsole.engine.persistence import Controls
from novaconsole.store import SqlStore

TIMEOUT = 180.0
"""How long ``serve`` may take to start or stop: generous, for a loaded 2-core machine."""
TOKEN = "test-token-0123456789abcdef"

HANDLERS = """
from dataclasses import dataclass


@dataclass
class Item:
    id: int


class Toy:
    async def fetch_next(self, max_items):
        return []

    async def process(self, item):
        pass
"""


@dataclass(frozen=True)
class Project:
    root: Path

    @property
    def db_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.root / 'web.db'}"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"


def make_project(root: Path) -> Project:
    """A config with one handler, ``Toy``, on a SQLite file in ``root``."""
    project = Project(root)
    (root / "web_handlers.py").write_text(HANDLERS)
    project.config.write_text(
        f'[database]\nurl = "{project.db_url}"\n\n'
        '[[handlers]]\nname = "Toy"\nfactory = "web_handlers:Toy"\n'
    )
    return project


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    """The printed URL, token included."""

    @property
    def origin(self) -> str:
        return self.url.split("/?", 1)[0]

    @property
    def port(self) -> int:
        return int(self.origin.rsplit(":", 1)[1])


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOVACONSOLE_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextmanager
def serve(project: Project, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """``novaconsole serve --port 0 ARGS`` in ``project``; stopped (SIGINT) when the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "novaconsole", "serve", "--port", "0", *args],
        cwd=project.root,
        env=env if env is not None else clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield Served(process, _wait_for_url(process))
    finally:
        if process.poll() is None:
            process.send_signal(2)
            try:
                process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(TIMEOUT)


def _wait_for_url(process: subprocess.Popen[str]) -> str:
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no URL printed within {TIMEOUT}s: {''.join(seen)}") from None
        if line is None:
            raise AssertionError(f"serve ended before printing its URL: {''.join(seen)}")
        seen.append(line)
        if found := re.search(r"(http://\S+/\?token=\S+)", line):
            return found.group(1)


def load_controls(url: str) -> Controls:
    """The fleet's controls as saved in the database (on a thread of its own: callable
    from inside Playwright's sync API, which runs an event loop in this one)."""

    async def read() -> Controls:
        store = SqlStore(url, shared=False)
        await store.open()
        try:
            return await store.load_controls()
        finally:
            await store.engine.dispose()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, read).result()
