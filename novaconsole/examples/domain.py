"""The application's tables: tracks, staging batches, the catalogue and the notification outbox.

They have their own ``MetaData`` (they are not novaconsole's tables) and are created on first
use by :func:`ensure_schema`, which every handler calls from ``fetch_next``.

Statuses move only forward, and every handler changes its source's status itself:

- tracks: ``active`` → ``deleted`` (soft delete, by the application) → ``purging`` (claimed by
  the physical deletion) → row gone. Restoring a track is only allowed while ``deleted``.
- staging batches: ``queued`` → ``processing`` → ``completed`` or ``failed``.
- notifications: ``pending`` → ``sent`` or ``failed``.
"""

from __future__ import annotations

import uuid
import weakref
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Date, DateTime, Dialect, Engine, Index, MetaData, String, Text
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; stored as naive UTC so that SQLite's text
    timestamps compare correctly."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware one")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        result: datetime = value
        return result.replace(tzinfo=UTC) if result.tzinfo is None else result.astimezone(UTC)


class TrackStatus(StrEnum):
    ACTIVE = "active"
    DELETED = "deleted"
    PURGING = "purging"


class BatchStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class NotificationStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class DomainBase(DeclarativeBase):
    """Base of the application's tables (its own metadata, apart from novaconsole's store)."""

    metadata = MetaData()
    type_annotation_map = {datetime: UTCDateTime()}


class Track(DomainBase):
    """A track of the music service; its audio and waveform live in the object store."""

    __tablename__ = "tracks"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16), default=TrackStatus.ACTIVE.value)
    object_key: Mapped[str] = mapped_column(String(500))
    waveform_object_key: Mapped[str | None] = mapped_column(String(500))
    deleted_at: Mapped[datetime | None]
    scheduled_deletion_at: Mapped[datetime | None]

    # AUTOINCREMENT: SQLite must not hand a purged track's id to a new one, since the engine
    # remembers attempts by item id.
    __table_args__ = (
        Index("ix_tracks_status_scheduled", "status", "scheduled_deletion_at"),
        {"sqlite_autoincrement": True},
    )


class StagingBatch(DomainBase):
    """A file or URL of catalogue records waiting to be imported."""

    __tablename__ = "staging_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(2000))
    """A file path (relative paths against the handler's ``source_root``) or an http(s) URL."""
    format: Mapped[str | None] = mapped_column(String(16))
    """``csv`` or ``jsonl``; ``None``: guessed from the source's suffix or content type."""
    status: Mapped[str] = mapped_column(String(16), default=BatchStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(default=0)
    imported: Mapped[int | None]
    """Records written (new, or changed since the last import of the same key)."""
    unchanged: Mapped[int | None]
    """Valid records already in the catalogue as they are, or repeated within the batch (a
    re-run imports nothing twice)."""
    rejected: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    rejections: Mapped[str | None] = mapped_column(Text)
    """The first rejected records and why, one per line."""
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_staging_batches_status", "status", "id"),)


class CatalogueEntry(DomainBase):
    """One recording in the catalogue, keyed by its ISRC."""

    __tablename__ = "catalogue_entries"

    isrc: Mapped[str] = mapped_column(String(12), primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    artist: Mapped[str] = mapped_column(String(300))
    album: Mapped[str | None] = mapped_column(String(300))
    duration_seconds: Mapped[float]
    release_date: Mapped[date | None] = mapped_column(Date)
    batch_id: Mapped[int | None]
    """The batch that last changed this entry."""
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Notification(DomainBase):
    """An outbox message; its id doubles as the receiver's idempotency key."""

    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    kind: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(300))
    payload: Mapped[str] = mapped_column(Text, default="{}")
    """A JSON object, as text."""
    status: Mapped[str] = mapped_column(String(16), default=NotificationStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_notifications_status_created", "status", "created_at"),)


_ready: weakref.WeakSet[Engine] = weakref.WeakSet()


def _create_tables(session: Session) -> None:
    # IF NOT EXISTS, so that handlers fetching in parallel on a new database do not collide.
    connection = session.connection()
    for table in DomainBase.metadata.sorted_tables:
        connection.execute(CreateTable(table, if_not_exists=True))
        for index in table.indexes:
            connection.execute(CreateIndex(index, if_not_exists=True))


async def ensure_schema(session: AsyncSession) -> None:
    """Create the domain tables if they are missing; cheap after the first call per engine."""
    engine = session.get_bind()
    if not isinstance(engine, Engine):
        engine = engine.engine
    if engine in _ready:
        return
    try:
        await session.run_sync(_create_tables)
        await session.commit()
    except (OperationalError, ProgrammingError):
        # Another process created them between our check and our CREATE: fine if they exist now.
        await session.rollback()
        await session.run_sync(_create_tables)
        await session.commit()
    _ready.add(engine)


async def create_schema(engine: AsyncEngine) -> None:
    """Create the domain tables on ``engine`` (for seeding scripts and tests)."""
    async with engine.begin() as connection:
        await connection.run_sync(DomainBase.metadata.create_all)
    _ready.add(engine.sync_engine)
