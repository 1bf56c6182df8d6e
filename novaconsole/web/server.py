"""The web server: textual-serve's, with a token, Host and Origin checks, on loopback.

Every browser session runs :mod:`novaconsole.web.session` as its own process (that is how
textual-serve works): a console attached to the configured database, hosting no service,
so a browser tab is a window on the fleet that already runs and closing it stops no work.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import anyio
from aiohttp import web
from textual_serve.server import Server

log = logging.getLogger("novaconsole.web")

TOKEN_ENV = "NOVACONSOLE_SERVE_TOKEN"
"""Environment variable holding the access token (when ``--token`` is not given)."""
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """What ``novaconsole serve`` was asked for."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    """0: any free port (the printed URL names the one taken)."""
    token: str | None = None
    """None: a random one, printed in the URL."""
    read_only: bool = False
    config: Path | None = None
    public_url: str | None = None
    """The address browsers use, when it is not ``http://host:port`` (a proxy, 0.0.0.0)."""


def new_token() -> str:
    """A random access token (32 bytes of entropy, URL-safe)."""
    return secrets.token_urlsafe(32)


def session_command(config: Path | None, *, read_only: bool) -> str:
    """The shell command textual-serve runs for each browser session."""
    parts = [sys.executable, "-m", "novaconsole.web.session"]
    if config is not None:
        parts += ["--config", str(config.resolve())]
    if read_only:
        parts.append("--read-only")
    return shlex.join(parts)


class Guard:
    """Who may talk to the server: a request must name the served address in its Host, come
    from the served origin when it has an Origin (browsers always send one on a websocket),
    and carry the token, in the query (``?token=``) or in the cookie the page sets with it.
    """

    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self.cookie = "novaconsole_serve"
        self.hosts: frozenset[str] = frozenset()
        self.origins: frozenset[str] = frozenset()

    def bind(self, public_url: str, port: int) -> None:
        """Accept requests addressed to ``public_url`` (and both loopback names on loopback)."""
        parts = urlsplit(public_url)
        netloc = parts.netloc.lower()
        hosts = {netloc}
        if _is_loopback(parts.hostname or ""):
            hosts |= {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
        self.hosts = frozenset(hosts)
        self.origins = frozenset(f"{parts.scheme}://{host}" for host in hosts)
        self.cookie = f"novaconsole_serve_{port}"  # cookies ignore ports: one per server

    def _valid(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self._token)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.host.lower() not in self.hosts:
            log.warning("refused %s: foreign Host %r", request.path, request.host)
            raise web.HTTPForbidden(text="forbidden: this server is not addressed by that Host\n")
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() not in self.origins:
            log.warning("refused %s: foreign Origin %r", request.path, origin)
            raise web.HTTPForbidden(text="forbidden: cross-origin request\n")
        in_query = request.query.get("token")
        if not self._valid(in_query) and not self._valid(request.cookies.get(self.cookie)):
            log.warning("refused %s: missing or wrong token", request.path)
            raise web.HTTPUnauthorized(text="unauthorized: open the URL with its token\n")
        response = await handler(request)
        if in_query is not None and isinstance(response, web.Response):
            # The page's scripts, styles and websocket carry no query: they carry this.
            response.set_cookie(self.cookie, in_query, httponly=True, samesite="Strict")
            response.headers["Referrer-Policy"] = "no-referrer"
        return response


class ConsoleServer(Server):
    """textual-serve's server with a :class:`Guard` in front of every route."""

    def __init__(self, command: str, guard: Guard, *, host: str, port: int) -> None:
        super().__init__(command, host=host, port=port, title="novaconsole")
        self.guard = guard

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self.guard.middleware)
        return app

    async def on_startup(self, app: web.Application) -> None:
        """Say nothing here: :func:`serve` prints the URL once the socket is bound."""


def check_options(options: ServeOptions) -> str | None:
    """Why ``options`` cannot be served, in one line; None when they can."""
    if options.host in _WILDCARDS and options.public_url is None:
        return (
            f"--host {options.host!r} listens on every address: give --public-url "
            "(the address browsers use) so Host and Origin can be checked"
        )
    if options.public_url is not None:
        parts = urlsplit(options.public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"--public-url must be an http(s) URL, got {options.public_url!r}"
    if options.token is not None and len(options.token) < 16:
        return "the token must be at least 16 characters long"
    return None


async def serve(options: ServeOptions, *, out: TextIO | None = None) -> None:
    """Serve the console until SIGINT or SIGTERM; print its URL (with the token) to ``out``."""
    out = out if out is not None else sys.stdout
    token = options.token or new_token()
    guard = Guard(token)
    command = session_command(options.config, read_only=options.read_only)
    server = ConsoleServer(command, guard, host=options.host, port=options.port)
    runner = web.AppRunner(await server._make_app(), handle_signals=False, access_log=None)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        await runner.setup()
        try:
            site = web.TCPSite(runner, options.host, options.port)
            await site.start()
            port = int(runner.addresses[0][1])
            public_url = options.public_url or _url(options.host, port)
            server.public_url = public_url.rstrip("/")
            guard.bind(server.public_url, port)
            mode = " (read-only)" if options.read_only else ""
            print(f"novaconsole serve{mode}: {server.public_url}/?token={token}", file=out)
            print("Open that URL in a browser; stop with Ctrl+C.", file=out, flush=True)
            async for signum in signals:
                log.info("%s received: stopping", signal.Signals(signum).name)
                break
        finally:
            with anyio.CancelScope(shield=True):
                await runner.cleanup()


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
