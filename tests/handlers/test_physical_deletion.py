"""PhysicalDeletionHandler against a real SQLite file and a real object directory."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from novaconsole import BackgroundProcessing, ConfigError
from novaconsole.engine.handler import HandlerContext, HandlerPurpose
from novaconsole.examples.domain import Track, TrackStatus, utcnow
from novaconsole.examples.physical_deletion import PhysicalDeletionHandler, PhysicalDeletionOptions
from novaconsole.examples.storage import DirectoryObjectStore, InvalidObjectKeyError

Sessions = async_sessionmaker[AsyncSession]

pytestmark = pytest.mark.anyio


async def add_track(
    sessions: Sessions,
    root: Path,
    track_id: int,
    *,
    status: TrackStatus = TrackStatus.DELETED,
    due_in: timedelta | None = timedelta(minutes=-1),
    waveform: bool = True,
    write_objects: bool = True,
) -> Track:
    track = Track(
        id=track_id,
        user_id=f"user-{track_id % 3}",
        title=f"Track {track_id}",
        status=status.value,
        object_key=f"audio/{track_id}.mp3",
        waveform_object_key=f"waveforms/{track_id}.json" if waveform else None,
        deleted_at=utcnow() if status is not TrackStatus.ACTIVE else None,
        scheduled_deletion_at=utcnow() + due_in if due_in is not None else None,
    )
    if write_objects:
        store = DirectoryObjectStore(root)
        await store.put(track.object_key, b"ID3 audio")
        if track.waveform_object_key:
            await store.put(track.waveform_object_key, b"[0.1, 0.5]")
    async with sessions() as session, session.begin():
        session.add(track)
    return track


async def track_ids(sessions: Sessions) -> list[int]:
    async with sessions() as session:
        return list((await session.scalars(select(Track.id).order_by(Track.id))).all())


@pytest.fixture
def handler(tmp_path: Path, make_context: Callable[..., HandlerContext]) -> PhysicalDeletionHandler:
    options = PhysicalDeletionOptions(storage_root=tmp_path / "objects")
    return PhysicalDeletionHandler(
        make_context("PhysicalDeletion", HandlerPurpose.INTERNAL, options)
    )


async def test_fetch_returns_only_deleted_tracks_that_are_due(
    handler: PhysicalDeletionHandler, sessions: Sessions, tmp_path: Path
) -> None:
    root = tmp_path / "objects"
    await add_track(sessions, root, 1, due_in=timedelta(minutes=-5))
    await add_track(sessions, root, 2, status=TrackStatus.ACTIVE, due_in=None)
    await add_track(sessions, root, 3, due_in=timedelta(minutes=5))
    await add_track(sessions, root, 4, due_in=timedelta(minutes=-10))

    items = await handler.fetch_next(10)

    assert [item.id for item in items] == [4, 1]
    assert [item.id for item in await handler.fetch_next(1)] == [4]


async def test_grace_period_delays_deletion(
    sessions: Sessions, tmp_path: Path, make_context: Callable[..., HandlerContext]
) -> None:
    await add_track(sessions, tmp_path, 1, due_in=timedelta(minutes=-5))
    await add_track(sessions, tmp_path, 2, due_in=timedelta(hours=-2))
    options = PhysicalDeletionOptions.model_validate(
        {"storage_root": str(tmp_path), "grace_period": "01:00:00"}
    )
    handler = PhysicalDeletionHandler(make_context("P", HandlerPurpose.INTERNAL, options))

    assert [item.id for item in await handler.fetch_next(10)] == [2]


async def test_process_deletes_objects_then_the_row(
    handler: PhysicalDeletionHandler, sessions: Sessions, tmp_path: Path
) -> None:
    root = tmp_path / "objects"
    await add_track(sessions, root, 1)
    await add_track(sessions, root, 2, waveform=False)
    await add_track(sessions, root, 3, status=TrackStatus.ACTIVE, due_in=None)

    for item in await handler.fetch_next(10):
        await handler.process(item)

    assert await track_ids(sessions) == [3]
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == ["3.json", "3.mp3"]


async def test_missing_objects_are_not_an_error(
    handler: PhysicalDeletionHandler, sessions: Sessions, tmp_path: Path
) -> None:
    await add_track(sessions, tmp_path / "objects", 7, write_objects=False)

    [item] = await handler.fetch_next(10)
    await handler.process(item)

    assert await track_ids(sessions) == []


async def test_processing_twice_is_harmless(
    handler: PhysicalDeletionHandler, sessions: Sessions, tmp_path: Path
) -> None:
    await add_track(sessions, tmp_path / "objects", 1)
    await add_track(sessions, tmp_path / "objects", 2)
    [first, second] = await handler.fetch_next(10)

    await handler.process(first)
    await handler.process(first)

    assert await track_ids(sessions) == [second.id]


async def test_a_half_done_deletion_is_finished_by_the_next_attempt(
    handler: PhysicalDeletionHandler, sessions: Sessions, tmp_path: Path
) -> None:
    root = tmp_path / "objects"
    await add_track(sessions, root, 1)
    # A previous attempt claimed the track and removed the audio, then died.
    async with sessions() as session, session.begin():
        track = await session.get_one(Track, 1)
        track.status = TrackStatus.PURGING.value
    (root / "audio" / "1.mp3").unlink()

    [item] = await handler.fetch_next(10)
    await handler.process(item)

    assert await track_ids(sessions) == []
    assert not (root / "waveforms" / "1.json").exists()


async def test_a_track_restored_after_fetch_is_kept(
    handler: PhysicalDeletionHandler, sessions: Sessions, tmp_path: Path
) -> None:
    root = tmp_path / "objects"
    await add_track(sessions, root, 1)
    [item] = await handler.fetch_next(10)
    async with sessions() as session, session.begin():
        track = await session.get_one(Track, 1)
        track.status = TrackStatus.ACTIVE.value
        track.scheduled_deletion_at = None

    await handler.process(item)

    assert await track_ids(sessions) == [1]
    assert (root / "audio" / "1.mp3").read_bytes() == b"ID3 audio"


def test_relative_storage_root_is_resolved_against_the_current_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    options = PhysicalDeletionOptions.model_validate({"storage_root": "data/objects"})
    assert options.storage_root == tmp_path.resolve() / "data" / "objects"


def test_bad_options_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="grace_period"):
        BackgroundProcessing().add_handler(
            PhysicalDeletionHandler, name="P", options={"grace_period": "soon"}
        )
    with pytest.raises(ConfigError, match="storage_rot"):
        BackgroundProcessing().add_handler(
            PhysicalDeletionHandler, name="P", options={"storage_rot": "x"}
        )


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../outside", "a/../../b", "a\\b"])
def test_object_keys_cannot_leave_the_store(tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidObjectKeyError):
        DirectoryObjectStore(tmp_path).path_for(key)


async def test_directory_store_round_trip(tmp_path: Path) -> None:
    store = DirectoryObjectStore(tmp_path)
    await store.put("a/b/c.bin", b"data")
    assert await store.exists("a/b/c.bin")
    assert await store.read("a/b/c.bin") == b"data"
    assert await store.delete("a/b/c.bin") is True
    assert await store.delete("a/b/c.bin") is False
    assert not await store.exists("a/b/c.bin")


async def test_ids_of_purged_tracks_are_never_reused(
    handler: PhysicalDeletionHandler, sessions: Sessions, tmp_path: Path
) -> None:
    # The engine remembers attempts by item id: a new track must not inherit a purged one's.
    await add_track(sessions, tmp_path / "objects", 5)
    [item] = await handler.fetch_next(10)
    await handler.process(item)

    async with sessions() as session, session.begin():
        track = Track(user_id="u", title="New", object_key="audio/new.mp3")
        session.add(track)
        await session.flush()
        assert track.id == 6
