"""Fixtures for the example handlers: a real SQLite file, contexts, and a local HTTP server."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from novaconsole.engine.handler import HandlerContext, HandlerPurpose
from novaconsole.examples.domain import create_schema
from novaconsole.store import create_engine

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[Sessions]:
    """Sessions on a fresh SQLite file, configured as the service configures them."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    await create_schema(engine)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


@pytest.fixture
async def make_context(sessions: Sessions) -> AsyncIterator[Callable[..., HandlerContext]]:
    """``make_context(name, purpose, options)``: a scope as the engine would hand it over,
    closed (with whatever the handler opened in it) after the test."""
    contexts: list[HandlerContext] = []

    def make(name: str, purpose: HandlerPurpose, options: Any) -> HandlerContext:
        ctx = HandlerContext(name=name, purpose=purpose, options=options, session_factory=sessions)
        contexts.append(ctx)
        return ctx

    yield make
    for ctx in contexts:
        await ctx.aclose()


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class LocalServer:
    """What the test HTTP server serves and what it received."""

    url: str
    files: dict[str, tuple[int, bytes, str]] = field(default_factory=dict)
    """GET path → (status, body, content type)."""
    post_statuses: list[int] = field(default_factory=list)
    """Statuses for the next POSTs, in order; 200 once it is empty."""
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def posts(self) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == "POST"]


def _request_handler(state: LocalServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _record(self, body: bytes) -> None:
            with state.lock:
                state.requests.append(
                    Recorded(self.command, self.path, dict(self.headers.items()), body)
                )

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._record(b"")
            status, body, content_type = state.files.get(self.path, (404, b"", "text/plain"))
            self._answer(status, body, content_type)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self._record(body)
            with state.lock:
                status = state.post_statuses.pop(0) if state.post_statuses else 200
            self._answer(status, b"{}", "application/json")

    return Handler


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    """A real HTTP server on 127.0.0.1 (a free port), stopped after the test."""
    state = LocalServer(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _request_handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="test-http", daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
