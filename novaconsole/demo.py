"""``novaconsole demo``: the example handlers on seeded data, with new work trickling in.

The demo keeps everything in its own directory (``--dir``, default ``./demo-data``): a SQLite
database, an object store of audio and waveform files, and staging-batch files. A local web
server on 127.0.0.1 (a random port) receives the notifications and serves some batches by URL;
it fails a share of requests (``--failure-rate``), some once (the retry recovers) and some
always (the item ends failed). A trickle adds new work at ``--rate`` items per second.

The handlers are the examples shipped in :mod:`novaconsole.examples`, so the demo runs from any
install. Without httpx (the ``demo`` extra) it leaves out the web parts: notifications go to a
JSON-lines file and batches are files only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio

from novaconsole import defaults
from novaconsole.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from novaconsole.engine.service import ProcessingService
    from novaconsole.settings import Settings

log = logging.getLogger("novaconsole.demo")

MARKER = ".novaconsole-demo"
"""The file that makes a directory a demo directory (which a later run may reuse)."""

HANDLER_MODULES = (
    "novaconsole.examples.physical_deletion",
    "novaconsole.examples.catalog_import",
    "novaconsole.examples.notification_export",
)

Fate = Literal["ok", "flaky", "broken"]


# ---------------------------------------------------------------------- the demo directory


@dataclass(frozen=True, slots=True)
class DemoPaths:
    """Where one demo keeps its data."""

    root: Path
    database_url: str

    @property
    def objects(self) -> Path:
        return self.root / "objects"

    @property
    def batches(self) -> Path:
        return self.root / "batches"

    @property
    def outbox(self) -> Path:
        """The notifications' JSON-lines file when there is no webhook (no httpx)."""
        return self.root / "outbox.jsonl"


def prepare_directory(directory: Path, db: str | None = None) -> tuple[DemoPaths, bool]:
    """Create (or reuse) a demo directory; ``(paths, reused)``.

    A directory that exists, is not empty and is not a demo directory is refused, so the demo
    never writes into a user's files.
    """
    root = directory.expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{directory} is a file; pass --dir with a directory", key="demo.dir")
    reused = (root / MARKER).is_file()
    if root.is_dir() and not reused and any(root.iterdir()):
        raise ConfigError(
            f"{directory} is not empty and holds no novaconsole demo; pass --dir with a new or "
            "empty directory",
            key="demo.dir",
        )
    try:
        for path in (root, root / "objects", root / "batches"):
            path.mkdir(parents=True, exist_ok=True)
        (root / MARKER).write_text("novaconsole demo data; safe to delete\n")
    except OSError as error:
        raise ConfigError(
            f"cannot create {directory}: {error.strerror or error}", key="demo.dir"
        ) from None
    url = db if db is not None else f"sqlite+aiosqlite:///{(root / 'demo.db').as_posix()}"
    return DemoPaths(root=root, database_url=url), reused


# ---------------------------------------------------------------------- the local web server


@dataclass
class WebStats:
    """What the demo web server saw (read by tests and the closing summary)."""

    requests: int = 0
    refused: int = 0
    delivered: set[str] = field(default_factory=set)
    duplicates: int = 0
    seen: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class DemoWebServer:
    """The notification webhook (``POST /webhook``) and a batch file server
    (``GET /batches/NAME``) on 127.0.0.1, failing a share of requests.

    Each idempotency key (or path) has a fate drawn from ``failure_rate``: most are ``ok``;
    ``flaky`` ones fail their first request only; a quarter of the failing share is
    ``broken`` and always fails. A context manager: the server stops when the block ends.
    """

    def __init__(
        self,
        batches: Path,
        failure_rate: float,
        *,
        latency: tuple[float, float] = (0.0, 0.0),
        salt: str | None = None,
    ) -> None:
        self.batches = batches
        self.failure_rate = failure_rate
        self.latency = latency
        self.salt = salt if salt is not None else secrets.token_hex(4)
        self.stats = WebStats()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the demo web server is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/webhook"

    def fate(self, key: str) -> Fate:
        """The deterministic fate of ``key`` (same salt, same fate)."""
        digest = hashlib.sha256(f"{self.salt}:{key}".encode()).digest()
        draw = int.from_bytes(digest[:8], "big") / 2**64
        if draw < self.failure_rate / 4:
            return "broken"
        return "flaky" if draw < self.failure_rate else "ok"

    def answer(self, key: str) -> bool:
        """Whether the request for ``key`` succeeds (and count it)."""
        with self.stats.lock:
            self.stats.requests += 1
            tries = self.stats.seen[key] = self.stats.seen.get(key, 0) + 1
            fate = self.fate(key)
            ok = fate == "ok" or (fate == "flaky" and tries > 1)
            if not ok:
                self.stats.refused += 1
            return ok

    def __enter__(self) -> DemoWebServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _web_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="demo-web", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _web_handler(web: DemoWebServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _pause(self) -> None:
            low, high = web.latency
            if high > 0:
                time.sleep(random.uniform(low, high))

        def _outage(self) -> None:
            self._reply(503, b'{"error": "simulated outage"}', "application/json")

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            key = self.headers.get("Idempotency-Key")
            if self.path != "/webhook" or not key:
                self._reply(
                    400, b'{"error": "POST /webhook with an Idempotency-Key"}', "text/plain"
                )
                return
            self._pause()
            if not web.answer(key):
                self._outage()
                return
            with web.stats.lock:
                if key in web.stats.delivered:
                    web.stats.duplicates += 1
                web.stats.delivered.add(key)
            self._reply(200, b'{"ok": true}', "application/json")

        def do_GET(self) -> None:
            name = self.path.removeprefix("/batches/")
            file = web.batches / name
            if name == self.path or "/" in name or not file.is_file():
                self._reply(404, b"not found", "text/plain")
                return
            self._pause()
            if not web.answer(self.path):
                self._outage()
                return
            kind = "text/csv" if name.endswith(".csv") else "application/x-ndjson"
            self._reply(200, file.read_bytes(), kind)

    return Handler


# ---------------------------------------------------------------------- demo data

_WORDS = (
    "amber", "blue", "cinder", "delta", "echo", "falling", "glass", "harbour", "iron", "july",
    "kite", "lantern", "meadow", "night", "ocean", "paper", "quiet", "river", "silver", "tide",
    "umbra", "velvet", "winter", "yellow", "zephyr",
)  # fmt: skip
_ARTISTS = ("The Lanterns", "Mira Lane", "Nord", "Quiet Room", "Cobalt Hearts", "Ada & the Ions")
_COUNTRIES = ("US", "GB", "SE", "DE", "FR", "JP")
_REGISTRANTS = ("RC1", "AJY", "UM7", "K2Z")


def _title(rng: random.Random) -> str:
    return f"{rng.choice(_WORDS).title()} {rng.choice(_WORDS).title()}"


def _catalogue(size: int) -> tuple[dict[str, Any], ...]:
    """A fixed pool of recordings: batches draw from it, so later ones repeat earlier ones."""
    rng = random.Random(20_240_901)
    records: dict[str, dict[str, Any]] = {}
    while len(records) < size:
        serial = f"{rng.choice(_COUNTRIES)}{rng.choice(_REGISTRANTS)}2{rng.randint(0, 5)}"
        isrc = f"{serial}{rng.randint(0, 99_999):05d}"
        released = date(2015, 1, 1) + timedelta(days=rng.randint(0, 3650))
        records[isrc] = {
            "isrc": isrc,
            "title": _title(rng),
            "artist": rng.choice(_ARTISTS),
            "album": _title(rng) if rng.random() < 0.7 else "",
            "duration_seconds": round(rng.uniform(90, 420), 1),
            "release_date": released.isoformat(),
        }
    return tuple(records.values())


_CATALOGUE = _catalogue(150)


def _record(rng: random.Random) -> dict[str, Any]:
    record = dict(rng.choice(_CATALOGUE))
    if rng.random() < 0.1:  # a correction: the import reports it as changed
        record["title"] = f"{record['title']} (Remastered)"
    return record


def _corrupt(record: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    damage = rng.choice(("isrc", "duration", "title", "minutes"))
    if damage == "isrc":
        return {**record, "isrc": "ISRC-UNKNOWN"}
    if damage == "duration":
        return {**record, "duration_seconds": -rng.randint(1, 100)}
    if damage == "title":
        return {**record, "title": ""}
    return {**record, "duration_seconds": "3:45"}


_COLUMNS = ("isrc", "title", "artist", "album", "duration_seconds", "release_date")


def _csv(records: list[dict[str, Any]]) -> bytes:
    lines = [",".join(_COLUMNS)]
    for record in records:
        lines.append(",".join(str(record[c]).replace(",", " ") for c in _COLUMNS))
    return ("\n".join(lines) + "\n").encode()


def _jsonl(records: list[dict[str, Any]], rng: random.Random) -> bytes:
    lines = [json.dumps(record) for record in records]
    if rng.random() < 0.5:
        lines.insert(rng.randint(0, len(lines)), '{"isrc": "USRC12100001", "title": "Trunc')
    return ("\n".join(lines) + "\n").encode()


BatchKind = Literal["csv", "jsonl", "url", "unreadable"]


class DemoWorld:
    """Adds demo work to the database and the demo directory."""

    def __init__(self, paths: DemoPaths, web_url: str | None, rng: random.Random) -> None:
        from novaconsole.examples.storage import DirectoryObjectStore
        from novaconsole.store import create_engine

        self.paths = paths
        self.web_url = web_url
        self.rng = rng
        self.engine: AsyncEngine = create_engine(paths.database_url)
        self.objects = DirectoryObjectStore(paths.objects)

    async def open(self) -> None:
        """Create the domain tables; an unusable database is a :class:`ConfigError`."""
        from sqlalchemy.exc import SQLAlchemyError

        from novaconsole.examples.domain import create_schema
        from novaconsole.store.database import connection_error

        try:
            await create_schema(self.engine)
        except (OSError, SQLAlchemyError) as error:
            raise connection_error(error, self.engine) from None

    async def close(self) -> None:
        await self.engine.dispose()

    async def add_tracks(
        self,
        count: int,
        *,
        due_in: float | None = 0.0,
        waveform: float = 0.8,
        audio_missing: bool = False,
    ) -> None:
        """``count`` tracks; soft-deleted and due in ``due_in`` seconds, or active (None)."""
        from novaconsole.examples.domain import Track, TrackStatus, utcnow

        tracks = []
        for _ in range(count):
            user = f"user-{self.rng.randint(1, 9)}"
            name = uuid.uuid4().hex[:12]
            track = Track(
                user_id=user,
                title=_title(self.rng),
                status=TrackStatus.ACTIVE.value if due_in is None else TrackStatus.DELETED.value,
                object_key=f"audio/{user}/{name}.mp3",
                waveform_object_key=(
                    f"waveforms/{user}/{name}.json" if self.rng.random() < waveform else None
                ),
            )
            if due_in is not None:
                track.deleted_at = utcnow()
                track.scheduled_deletion_at = utcnow() + timedelta(seconds=due_in)
            if not audio_missing:
                await self.objects.put(track.object_key, self.rng.randbytes(512))
            if track.waveform_object_key:
                peaks = [round(self.rng.random(), 2) for _ in range(32)]
                await self.objects.put(track.waveform_object_key, json.dumps(peaks).encode())
            tracks.append(track)
        await self._add(tracks)

    async def add_batch(self, kind: BatchKind, *, records: int = 20, corrupt: int = 2) -> None:
        """A staging batch: a CSV or JSON-lines file, a URL on the demo server, or garbage."""
        from novaconsole.examples.domain import StagingBatch

        rng = self.rng
        rows = [_record(rng) for _ in range(records)]
        for index in rng.sample(range(records), min(corrupt, records)):
            rows[index] = _corrupt(rows[index], rng)
        stem = f"{kind}-{uuid.uuid4().hex[:8]}"
        if kind == "unreadable":
            name, data = f"{stem}.csv", b"\x1f\x8b\x08\x00" + rng.randbytes(200)
        elif kind == "jsonl" or (kind == "url" and rng.random() < 0.5):
            name, data = f"{stem}.jsonl", _jsonl(rows, rng)
        else:
            name, data = f"{stem}.csv", _csv(rows)
        await anyio.Path(self.paths.batches / name).write_bytes(data)
        source = name
        if kind == "url":
            if self.web_url is None:
                raise RuntimeError("URL batches need the demo web server")
            source = f"{self.web_url}/batches/{name}"
        await self._add([StagingBatch(source=source)])

    async def add_notifications(self, count: int) -> None:
        from novaconsole.examples.domain import Notification

        kinds = ("track.published", "track.deleted", "catalogue.updated", "payout.ready")
        notifications = [
            Notification(
                kind=self.rng.choice(kinds),
                recipient=f"user-{self.rng.randint(1, 9)}@example.test",
                payload=json.dumps({"title": _title(self.rng), "n": self.rng.randint(1, 999)}),
            )
            for _ in range(count)
        ]
        await self._add(notifications)

    async def seed(self) -> None:
        """One round of work for every handler, with something to fail and to recover."""
        await self.add_tracks(10)
        await self.add_tracks(1, audio_missing=True)
        await self.add_tracks(4, due_in=self.rng.uniform(4, 20))
        await self.add_tracks(12, due_in=None)
        for kind in ("csv", "jsonl", "csv", "jsonl", "unreadable"):
            await self.add_batch(kind)
        if self.web_url is not None:
            await self.add_batch("url")
            await self.add_batch("url")
        await self.add_notifications(40)

    async def add_random_work(self) -> None:
        """One new item for a random handler (the trickle)."""
        draw = self.rng.random()
        if draw < 0.45:
            await self.add_notifications(1)
        elif draw < 0.8:
            await self.add_tracks(1)
        else:
            kinds: list[BatchKind] = ["csv", "jsonl", "unreadable"]
            if self.web_url is not None:
                kinds.append("url")
            kind = self.rng.choices(kinds, weights=[4, 3, 0.4, 3][: len(kinds)])[0]
            await self.add_batch(
                kind, records=self.rng.randint(5, 30), corrupt=self.rng.randint(0, 3)
            )

    async def _add(self, rows: Sequence[Any]) -> None:
        from sqlalchemy.ext.asyncio import AsyncSession

        async with AsyncSession(self.engine, expire_on_commit=False) as session, session.begin():
            session.add_all(rows)


async def trickle(world: DemoWorld, rate: float) -> None:
    """Add ``rate`` new items per second until cancelled; a failed addition is only logged."""
    if rate <= 0:
        log.info("demo: no new work will arrive (--rate 0)")
        await anyio.sleep_forever()
    log.info("demo: %.1f new items per second arrive in %s", rate, world.paths.root)
    interval = 1.0 / rate
    deadline = anyio.current_time()
    while True:
        try:
            # Shielded: cancelled mid-write, the session would never hand its connection
            # back, and closing the event loop would then wait on it forever.
            with anyio.CancelScope(shield=True):
                await world.add_random_work()
        except Exception as error:  # a busy database must not end the demo
            log.warning("demo trickle: could not add work: %s", error)
        deadline = max(deadline + interval, anyio.current_time())
        await anyio.sleep_until(deadline)


# ---------------------------------------------------------------------- the service


def demo_settings(
    paths: DemoPaths,
    webhook_url: str | None,
    *,
    poll_interval: float = 2.0,
    retry_base_delay: float = 0.5,
    breaker_threshold: int = defaults.BREAKER_THRESHOLD,
) -> Settings:
    """The demo's configuration: short intervals and retries so that everything shows.
    Without ``webhook_url``, notifications go to :attr:`DemoPaths.outbox`;
    ``breaker_threshold`` 0 keeps the circuit breakers from tripping."""
    from novaconsole.settings import (
        DatabaseSettings,
        HandlerSettings,
        ProcessingSettings,
        RetrySettings,
        Settings,
    )

    # Built, not loaded: the demo is self-contained, and NOVACONSOLE_* variables meant for
    # the user's own config.toml must not change (or break) it.
    return Settings.model_construct(
        processing=ProcessingSettings(
            poll_interval=timedelta(seconds=poll_interval),
            max_concurrency=4,
            item_timeout=timedelta(seconds=15),
            fetch_timeout=timedelta(seconds=10),
            lease_duration=timedelta(seconds=30),
            shutdown_grace=timedelta(seconds=5),
            breaker_threshold=breaker_threshold,
        ),
        retry=RetrySettings(
            max_attempts=3,
            base_delay=timedelta(seconds=retry_base_delay),
            max_delay=timedelta(seconds=retry_base_delay * 8),
        ),
        database=DatabaseSettings(url=paths.database_url),
        handlers=[
            HandlerSettings(
                name="PhysicalDeletion",
                factory="novaconsole.examples.physical_deletion:PhysicalDeletionHandler",
                purpose="internal",
                max_items_per_cycle=6,
                options={"storage_root": str(paths.objects)},
            ),
            HandlerSettings(
                name="CatalogImport",
                factory="novaconsole.examples.catalog_import:CatalogImportHandler",
                purpose="ingestion",
                max_items_per_cycle=3,
                options={"source_root": str(paths.batches), "http_timeout": 5},
            ),
            HandlerSettings(
                name="NotificationExport",
                factory="novaconsole.examples.notification_export:NotificationExportHandler",
                purpose="export",
                max_items_per_cycle=10,
                options=(
                    {"sink": "webhook", "webhook_url": webhook_url, "timeout": 5}
                    if webhook_url is not None
                    else {"sink": "file", "file_path": str(paths.outbox)}
                ),
            ),
        ],
    )


def build_service(settings: Settings) -> ProcessingService:
    from novaconsole.builder import BackgroundProcessing

    return BackgroundProcessing.from_settings(settings).build(database_url=settings.database.url)


# ---------------------------------------------------------------------- running it


def run_demo(
    *, directory: Path, rate: float, failure_rate: float, no_ui: bool, db: str | None
) -> int:
    """The ``novaconsole demo`` command: seed, serve, trickle, and open the console (or run
    headless until SIGINT/SIGTERM). Returns the exit status."""
    if rate < 0:
        raise ConfigError(f"must not be negative, got {rate}", key="--rate")
    if not 0.0 <= failure_rate <= 1.0:
        raise ConfigError(f"must be between 0 and 1, got {failure_rate}", key="--failure-rate")
    # httpx logs every request at INFO: too loud beside the handlers' own lines.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    paths, reused = prepare_directory(directory, db)
    with DemoWebServer(paths.batches, failure_rate, latency=(0.02, 0.25)) as web:
        return anyio.run(partial(_main, paths, web, rate=rate, reused=reused, no_ui=no_ui))


async def _main(
    paths: DemoPaths, web: DemoWebServer, *, rate: float, reused: bool, no_ui: bool
) -> int:
    from novaconsole.examples import HTTP_EXTRA, httpx_available

    web_parts = httpx_available()
    if not web_parts:
        log.info(
            "demo: httpx is not installed, so notifications go to %s and batches are files "
            "only; for the webhook and URL batches: %s",
            paths.outbox,
            HTTP_EXTRA,
        )
    world = DemoWorld(paths, web.url if web_parts else None, random.Random())
    try:
        await world.open()
        await world.seed()
        settings = demo_settings(paths, web.webhook_url if web_parts else None)
        service = build_service(settings)
        log.info("demo data %s %s", "added to" if reused else "seeded in", paths.root)
        if web_parts:
            log.info(
                "demo: webhook %s refuses %.0f%% of first requests",
                web.webhook_url,
                web.failure_rate * 100,
            )
        async with anyio.create_task_group() as group:
            group.start_soon(trickle, world, rate)
            code = await _front_end(service, paths, no_ui=no_ui)
            group.cancel_scope.cancel()
    finally:
        await world.close()
    with web.stats.lock:
        log.info(
            "demo web server: %d requests, %d refused on purpose, %d notifications delivered",
            web.stats.requests,
            web.stats.refused,
            len(web.stats.delivered),
        )
    return code


async def _front_end(service: ProcessingService, paths: DemoPaths, *, no_ui: bool) -> int:
    if no_ui:
        from novaconsole.headless import run_headless

        return await run_headless(service, once=False)
    from novaconsole.console import NovaConsole, serve_console
    from novaconsole.console.widgets.log_pane import LogSink

    app = NovaConsole(service, log_sink=LogSink())
    app.sub_title = f"demo · {paths.root}"
    return await serve_console(service, app)
