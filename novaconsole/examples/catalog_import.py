"""Ingestion: import queued staging batches into the catalogue.

A staging batch points at a source, a local file or an http(s) URL, holding CSV or JSON lines.
Each record is validated; the valid ones are upserted into ``catalogue_entries`` by ISRC (so a
re-run imports nothing twice), and the batch is marked ``completed`` with its counts, in the
same transaction. A source that cannot be read or parsed marks the batch ``failed`` with the
reason and raises, so that the engine retries it (a flaky server often recovers).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import anyio
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy import Executable, Table, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from novaconsole import DurationField, HandlerContext
from novaconsole.examples import options_of, require_httpx
from novaconsole.examples.domain import (
    BatchStatus,
    CatalogueEntry,
    StagingBatch,
    ensure_schema,
    utcnow,
)

if TYPE_CHECKING:
    import httpx

Format = Literal["csv", "jsonl"]
_SUFFIXES: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_CONTENT_TYPES: dict[str, Format] = {
    "text/csv": "csv",
    "application/jsonl": "jsonl",
    "application/x-ndjson": "jsonl",
    "application/x-jsonlines": "jsonl",
}
_UPSERT_CHUNK = 500


class CatalogImportOptions(BaseModel):
    """``[handlers.options]`` of the catalogue import."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    source_root: Path = Path(".")
    """Relative file sources are resolved against it (itself relative to the current dir)."""
    http_timeout: DurationField = timedelta(seconds=30)
    max_bytes: int = Field(default=50_000_000, gt=0)
    """A larger source fails the batch instead of filling memory."""
    keep_rejections: int = Field(default=20, ge=0)
    """How many rejected records (and why) are kept on the batch."""

    @field_validator("source_root")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()


Text300 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]


class CatalogRecord(BaseModel):
    """One record of a batch, as CSV columns or a JSON object; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    isrc: Annotated[str, StringConstraints(to_upper=True, pattern=r"^[A-Z]{2}[A-Z0-9]{3}[0-9]{7}$")]
    title: Text300
    artist: Text300
    album: Text300 | None = None
    duration_seconds: float = Field(gt=0, le=24 * 3600)
    release_date: date | None = None

    @model_validator(mode="before")
    @classmethod
    def _blank_is_missing(cls, data: Any) -> Any:
        # An empty CSV cell is a missing value, not an empty string.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (isinstance(v, str) and not v.strip())}
        return data

    @field_validator("isrc", mode="before")
    @classmethod
    def _compact_isrc(cls, value: Any) -> Any:
        # "US-RC1-76-07839" and "USRC17607839" are the same code.
        return value.replace("-", "").strip() if isinstance(value, str) else value


_REQUIRED_COLUMNS = ("isrc", "title", "artist", "duration_seconds")


class SourceError(Exception):
    """The batch's source cannot be read or parsed; the message is the reason shown to users."""


@dataclass(frozen=True, slots=True)
class QueuedBatch:
    """A staging batch waiting to be imported."""

    id: int
    source: str
    format: str | None


@dataclass(slots=True)
class ParsedBatch:
    """The valid records of a source (by ISRC, the last one wins) and the rejected ones."""

    records: dict[str, CatalogRecord] = field(default_factory=dict)
    valid: int = 0
    rejected: int = 0
    rejections: list[str] = field(default_factory=list)

    def reject(self, where: str, reason: str, keep: int) -> None:
        self.rejected += 1
        if len(self.rejections) < keep:
            self.rejections.append(f"{where}: {reason}")


class CatalogImportHandler:
    """Imports each queued staging batch; marks it completed with counts, or failed."""

    Options = CatalogImportOptions

    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx
        self.options = options_of(ctx, CatalogImportOptions)
        self._client: httpx.AsyncClient | None = None

    async def fetch_next(self, max_items: int) -> Sequence[QueuedBatch]:
        """Queued batches, oldest first, and batches left ``processing`` by a stopped worker."""
        async with self.ctx.session() as session:
            await ensure_schema(session)
            query = (
                select(StagingBatch.id, StagingBatch.source, StagingBatch.format)
                .where(
                    StagingBatch.status.in_(
                        (BatchStatus.QUEUED.value, BatchStatus.PROCESSING.value)
                    )
                )
                .order_by(StagingBatch.id)
            )
            # Not the batches already in hand here or claimed by another worker.
            rows = await session.execute(
                self.ctx.unclaimed(query, StagingBatch.id).limit(max_items)
            )
            return [QueuedBatch(*row) for row in rows]

    async def process(self, item: QueuedBatch) -> None:
        """Read, validate and upsert one batch; raise :class:`SourceError` if it failed."""
        if not await self._start(item):
            self.ctx.log.info("Batch %s is already completed or gone; nothing to do", item.id)
            return
        try:
            data, content_type = await self._read(item.source)
            parsed = parse_records(
                data, self._format(item, content_type), keep=self.options.keep_rejections
            )
        except SourceError as error:
            await self._finish_failed(item.id, str(error))
            self.ctx.log.info("Batch %s marked failed: %s", item.id, error)
            raise

        async with self.ctx.session() as session, session.begin():
            imported = await upsert_records(session, parsed.records.values(), batch_id=item.id)
            await session.execute(
                update(StagingBatch)
                .where(StagingBatch.id == item.id)
                .values(
                    status=BatchStatus.COMPLETED.value,
                    imported=imported,
                    unchanged=parsed.valid - imported,
                    rejected=parsed.rejected,
                    error=None,
                    rejections="\n".join(parsed.rejections) or None,
                    finished_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )
        self.ctx.log.info(
            "Batch %s imported: %d new or changed, %d unchanged, %d rejected%s",
            item.id,
            imported,
            parsed.valid - imported,
            parsed.rejected,
            f" (first: {parsed.rejections[0]})" if parsed.rejections else "",
        )

    async def on_failure(self, item: QueuedBatch, error: BaseException) -> None:
        """After the last attempt: the batch stays failed, with the last error as its reason."""
        await self._finish_failed(item.id, str(error) or type(error).__name__)

    async def reopen(self, item_id: str) -> bool:
        """An operator's retry: queue a failed batch again (its counts and error are kept
        until it runs). False if it is not failed (completed, queued already, or gone)."""
        async with self.ctx.session() as session, session.begin():
            reopened = await session.execute(
                update(StagingBatch)
                .where(
                    StagingBatch.id == _batch_id(item_id),
                    StagingBatch.status == BatchStatus.FAILED.value,
                )
                .values(status=BatchStatus.QUEUED.value)
                .returning(StagingBatch.id)
                .execution_options(synchronize_session=False)
            )
            return reopened.first() is not None

    async def _start(self, item: QueuedBatch) -> bool:
        async with self.ctx.session() as session, session.begin():
            started = await session.execute(
                update(StagingBatch)
                .where(StagingBatch.id == item.id, StagingBatch.status != BatchStatus.COMPLETED)
                .values(
                    status=BatchStatus.PROCESSING.value,
                    attempts=StagingBatch.attempts + 1,
                    started_at=utcnow(),
                )
                .returning(StagingBatch.id)
                .execution_options(synchronize_session=False)
            )
            return started.first() is not None

    async def _finish_failed(self, batch_id: int, reason: str) -> None:
        async with self.ctx.session() as session, session.begin():
            await session.execute(
                update(StagingBatch)
                .where(StagingBatch.id == batch_id, StagingBatch.status != BatchStatus.COMPLETED)
                .values(status=BatchStatus.FAILED.value, error=reason, finished_at=utcnow())
                .execution_options(synchronize_session=False)
            )

    async def _read(self, source: str) -> tuple[bytes, str | None]:
        scheme = urlsplit(source).scheme.lower()
        if scheme in ("http", "https"):
            return await self._download(source)
        if scheme == "file":
            return await self._read_file(Path(unquote(urlsplit(source).path))), None
        if scheme and len(scheme) > 1:  # one letter: a Windows drive
            raise SourceError(f"unsupported source {source!r}: use a file path or an http(s) URL")
        return await self._read_file(Path(source)), None

    async def _download(self, url: str) -> tuple[bytes, str | None]:
        try:
            httpx = require_httpx("an http(s) batch source")
        except ImportError as error:
            raise SourceError(str(error)) from None
        if self._client is None:
            # One client per scope: creating one (its TLS context) costs tens of milliseconds.
            self._client = httpx.AsyncClient(
                timeout=self.options.http_timeout.total_seconds(), follow_redirects=True
            )
            self.ctx.add_cleanup(self._client.aclose)
        try:
            async with self._client.stream("GET", url) as response:
                if response.status_code >= 400:
                    raise SourceError(
                        f"GET {url} answered HTTP {response.status_code} {response.reason_phrase}"
                    )
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self.options.max_bytes:
                        raise SourceError(f"{url} is larger than {self.options.max_bytes} bytes")
                return bytes(body), response.headers.get("content-type")
        except httpx.HTTPError as error:
            raise SourceError(f"cannot fetch {url}: {error or type(error).__name__}") from error

    async def _read_file(self, path: Path) -> bytes:
        path = self.options.source_root / path
        try:
            file = anyio.Path(path)
            if (await file.stat()).st_size > self.options.max_bytes:
                raise SourceError(f"{path} is larger than {self.options.max_bytes} bytes")
            return await file.read_bytes()
        except OSError as error:
            raise SourceError(f"cannot read {path}: {error.strerror or error}") from error

    def _format(self, item: QueuedBatch, content_type: str | None) -> Format:
        if item.format is not None:
            if item.format not in ("csv", "jsonl"):
                raise SourceError(f"unsupported format {item.format!r}; use csv or jsonl")
            return "csv" if item.format == "csv" else "jsonl"
        suffix = PurePosixPath(urlsplit(item.source).path or item.source).suffix.lower()
        if suffix in _SUFFIXES:
            return _SUFFIXES[suffix]
        mime = (content_type or "").split(";")[0].strip().lower()
        if mime in _CONTENT_TYPES:
            return _CONTENT_TYPES[mime]
        raise SourceError(
            f"unsupported format for {item.source!r}: name it .csv or .jsonl, or set the format"
        )


def parse_records(data: bytes, fmt: Format, *, keep: int = 20) -> ParsedBatch:
    """Validate every record of ``data``; raises :class:`SourceError` if it is not text at all."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SourceError(f"not UTF-8 text (bad byte at offset {error.start})") from None
    parsed = ParsedBatch()
    raw_records = _csv_records(text) if fmt == "csv" else _jsonl_records(text)
    for where, raw in raw_records:
        if isinstance(raw, str):
            parsed.reject(where, raw, keep)
            continue
        try:
            record = CatalogRecord.model_validate(raw)
        except ValidationError as error:
            first = error.errors()[0]
            field_name = ".".join(str(part) for part in first["loc"]) or "record"
            parsed.reject(where, f"{field_name}: {first['msg']}", keep)
            continue
        parsed.valid += 1
        parsed.records[record.isrc] = record
    return parsed


def _csv_records(text: str) -> Iterator[tuple[str, dict[str, Any] | str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        columns = [name.strip().lower() for name in reader.fieldnames or ()]
    except csv.Error as error:
        raise SourceError(f"unreadable CSV header: {error}") from None
    if not columns:
        return
    missing = [name for name in _REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise SourceError(f"CSV header lacks column(s): {', '.join(missing)}")
    reader.fieldnames = columns
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield f"line {reader.line_num}", f"unreadable CSV: {error}"
            continue
        where = f"line {reader.line_num}"
        if None in row:
            yield where, "more fields than columns"
        else:
            yield where, row


def _jsonl_records(text: str) -> Iterator[tuple[str, dict[str, Any] | str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            yield where, f"invalid JSON ({error.msg})"
            continue
        if isinstance(value, dict):
            yield where, value
        else:
            yield where, "not a JSON object"


async def upsert_records(
    session: AsyncSession, records: Iterable[CatalogRecord], *, batch_id: int | None = None
) -> int:
    """Insert new entries and update changed ones by ISRC; returns how many were written."""
    rows = [
        {**record.model_dump(), "batch_id": batch_id, "updated_at": utcnow()} for record in records
    ]
    dialect = session.get_bind().dialect.name
    written = 0
    for start in range(0, len(rows), _UPSERT_CHUNK):
        statement = _upsert_statement(dialect, rows[start : start + _UPSERT_CHUNK])
        written += len((await session.execute(statement)).all())
    return written


def _upsert_statement(dialect: str, rows: list[dict[str, Any]]) -> Executable:
    table = CatalogueEntry.__table__
    assert isinstance(table, Table)
    compared = ("title", "artist", "album", "duration_seconds", "release_date")
    updated = (*compared, "batch_id", "updated_at")
    if dialect == "sqlite":
        lite = sqlite_insert(table).values(rows)
        return lite.on_conflict_do_update(
            index_elements=[table.c.isrc],
            set_={name: lite.excluded[name] for name in updated},
            where=or_(*(table.c[n].is_distinct_from(lite.excluded[n]) for n in compared)),
        ).returning(table.c.isrc)
    if dialect == "postgresql":
        pg = postgresql_insert(table).values(rows)
        return pg.on_conflict_do_update(
            index_elements=[table.c.isrc],
            set_={name: pg.excluded[name] for name in updated},
            where=or_(*(table.c[n].is_distinct_from(pg.excluded[n]) for n in compared)),
        ).returning(table.c.isrc)
    raise RuntimeError(f"the catalogue upsert is not written for {dialect!r} databases")


def _batch_id(item_id: str) -> int:
    """A batch id given as text (an operator's retry), or -1 (no batch) if it is none."""
    try:
        return int(item_id)
    except ValueError:
        return -1
