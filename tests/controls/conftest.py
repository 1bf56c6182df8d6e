"""A user's project for the CLI tests: ``config.toml`` and a handler whose failed items can be
reopened, kept as files (``pending/ID``, ``failed/ID``) so that every process sees them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

TIMEOUT = 60.0

HANDLER = '''
"""Items are files in pending/; an id listed in fail_once fails its first run (on_failure
parks it in failed/), and reopen() puts it back."""

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel


@dataclass
class Item:
    id: int


class Options(BaseModel):
    root: str
    fail_once: list[int] = []


class Files:
    Options = Options

    def __init__(self, ctx):
        self.ctx = ctx
        self.root = Path(ctx.options.root)

    async def fetch_next(self, max_items):
        ids = sorted(int(p.name) for p in (self.root / "pending").iterdir())
        return [Item(i) for i in ids[:max_items]]

    async def process(self, item):
        broke = self.root / "broke" / str(item.id)
        if item.id in self.ctx.options.fail_once and not broke.exists():
            broke.touch()
            raise RuntimeError(f"item {item.id} broke")
        (self.root / "pending" / str(item.id)).unlink(missing_ok=True)
        (self.root / "done" / str(item.id)).touch()

    async def on_failure(self, item, error):
        (self.root / "pending" / str(item.id)).rename(self.root / "failed" / str(item.id))

    async def reopen(self, item_id):
        failed = self.root / "failed" / item_id
        if not failed.exists():
            return False
        failed.rename(self.root / "pending" / item_id)
        return True
'''


@dataclass
class Project:
    root: Path

    @property
    def url(self) -> str:
        return f"sqlite+aiosqlite:///{self.root / 'novaconsole.db'}"

    def add(self, *ids: int) -> None:
        for item_id in ids:
            (self.root / "items" / "pending" / str(item_id)).touch()

    def files(self, state: str) -> set[int]:
        return {int(p.name) for p in (self.root / "items" / state).iterdir()}

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOVACONSOLE_")}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "novaconsole", *args]

    async def cli(self, *args: str, code: int = 0) -> str:
        """Run ``novaconsole ARGS`` here; its stdout (stderr too when it fails)."""
        with anyio.fail_after(TIMEOUT):
            done = await anyio.run_process(
                self.command(*args), cwd=self.root, env=self.env(), check=False
            )
        out, err = done.stdout.decode(), done.stderr.decode()
        assert done.returncode == code, f"novaconsole {' '.join(args)}: {done.returncode}\n{err}"
        return out if code == 0 else err

    async def json(self, *args: str) -> Any:
        return json.loads(await self.cli(*args, "--json"))

    def start(self, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        """A background ``novaconsole ARGS``; its stderr goes to a file."""
        log = self.root / f"worker-{len(list(self.root.glob('worker-*.log')))}.log"
        with log.open("wb") as err:
            process = subprocess.Popen(
                self.command(*args), cwd=self.root, env=self.env(), stdout=err, stderr=err
            )
        return process, log


def make_project(root: Path, fail_once: tuple[int, ...] = (), poll: str = "0.1") -> Project:
    (root / "ops_handlers").mkdir()
    (root / "ops_handlers" / "__init__.py").write_text("")
    (root / "ops_handlers" / "files.py").write_text(HANDLER)
    for state in ("pending", "failed", "done", "broke"):
        (root / "items" / state).mkdir(parents=True)
    (root / "config.toml").write_text(
        textwrap.dedent(
            f"""
            [processing]
            poll_interval = {poll}
            max_concurrency = 4
            lease_duration = 3

            [retry]
            max_attempts = 1

            [[handlers]]
            name = "Files"
            factory = "ops_handlers.files:Files"
            purpose = "internal"
            max_items_per_cycle = 10
            [handlers.options]
            root = "{(root / "items").as_posix()}"
            fail_once = {list(fail_once)}
            """
        )
    )
    return Project(root)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path, fail_once=(2,))
