"""Internal: physically delete soft-deleted tracks once their deletion is due.

A track the application soft-deleted (status ``deleted``, ``scheduled_deletion_at`` set) is
removed for good once ``scheduled_deletion_at + grace_period`` has passed: first its audio and
waveform objects, then its row. Each step can be repeated, so a retry after a failure half-way
finishes the job: the track is first claimed (status ``purging``, which also stops a late
restore), objects already gone are not an error, and the row goes last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator
from sqlalchemy import delete, select, update

from novaconsole import DurationField, HandlerContext
from novaconsole.examples import options_of
from novaconsole.examples.domain import Track, TrackStatus, ensure_schema, utcnow
from novaconsole.examples.storage import DirectoryObjectStore, ObjectStore

_DUE_STATUSES = (TrackStatus.DELETED.value, TrackStatus.PURGING.value)


class PhysicalDeletionOptions(BaseModel):
    """``[handlers.options]`` of the physical deletion."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    storage_root: Path = Path("data/objects")
    """The object store's directory; a relative path is resolved against the current dir."""
    grace_period: DurationField = timedelta(0)
    """Extra time after ``scheduled_deletion_at`` before a track is really deleted."""

    @field_validator("storage_root")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()


@dataclass(frozen=True, slots=True)
class DueTrack:
    """A track whose physical deletion is due."""

    id: int
    user_id: str
    object_key: str
    waveform_object_key: str | None


class PhysicalDeletionHandler:
    """Deletes the objects, then the row, of each soft-deleted track that is due."""

    Options = PhysicalDeletionOptions

    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx
        self.options = options_of(ctx, PhysicalDeletionOptions)
        self.store: ObjectStore = DirectoryObjectStore(self.options.storage_root)

    def _cutoff(self) -> datetime:
        return utcnow() - self.options.grace_period

    async def fetch_next(self, max_items: int) -> Sequence[DueTrack]:
        """Up to ``max_items`` due tracks, the longest overdue first."""
        async with self.ctx.session() as session:
            await ensure_schema(session)
            query = (
                select(Track.id, Track.user_id, Track.object_key, Track.waveform_object_key)
                .where(
                    Track.status.in_(_DUE_STATUSES),
                    Track.scheduled_deletion_at <= self._cutoff(),
                )
                .order_by(Track.scheduled_deletion_at, Track.id)
            )
            # Not the tracks already in hand here or claimed by another worker.
            rows = await session.execute(self.ctx.unclaimed(query, Track.id).limit(max_items))
            tracks = [DueTrack(*row) for row in rows]
        if tracks:
            self.ctx.log.debug("%d track(s) due for physical deletion", len(tracks))
        return tracks

    async def reopen(self, item_id: str) -> bool:
        """An operator's retry: a failed deletion leaves its track due (nothing to undo), so
        this only tells whether the track is still there to be deleted."""
        try:
            track_id = int(item_id)
        except ValueError:
            return False
        async with self.ctx.session() as session:
            found = await session.scalar(
                select(Track.id).where(Track.id == track_id, Track.status.in_(_DUE_STATUSES))
            )
            return found is not None

    async def process(self, item: DueTrack) -> None:
        """Claim the track, delete its objects, then its row. Safe to repeat."""
        async with self.ctx.session() as session, session.begin():
            claimed = (
                await session.execute(
                    update(Track)
                    .where(
                        Track.id == item.id,
                        Track.status.in_(_DUE_STATUSES),
                        Track.scheduled_deletion_at <= self._cutoff(),
                    )
                    .values(status=TrackStatus.PURGING.value)
                    .returning(Track.object_key, Track.waveform_object_key)
                    .execution_options(synchronize_session=False)
                )
            ).one_or_none()
        if claimed is None:
            self.ctx.log.info(
                "Track %s is already deleted, restored or no longer due; nothing to do", item.id
            )
            return

        object_key, waveform_key = claimed
        keys = [key for key in (object_key, waveform_key) if key]
        present = 0
        for key in keys:
            if await self.store.delete(key):
                present += 1
            else:
                self.ctx.log.debug("Object %s of track %s was already gone", key, item.id)

        async with self.ctx.session() as session, session.begin():
            await session.execute(
                delete(Track)
                .where(Track.id == item.id, Track.status == TrackStatus.PURGING.value)
                .execution_options(synchronize_session=False)
            )
        self.ctx.log.info(
            "Physically deleted track %s for user %s (%d of %d objects were present)",
            item.id,
            item.user_id,
            present,
            len(keys),
        )
