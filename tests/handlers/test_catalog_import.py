"""CatalogImportHandler against a real SQLite file, real files and a real local HTTP server."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from novaconsole.engine.handler import HandlerContext, HandlerPurpose
from novaconsole.examples.catalog_import import (
    CatalogImportHandler,
    CatalogImportOptions,
    QueuedBatch,
    SourceError,
)
from novaconsole.examples.domain import BatchStatus, CatalogueEntry, StagingBatch

Sessions = async_sessionmaker[AsyncSession]

pytestmark = pytest.mark.anyio

CSV = """isrc,title,artist,album,duration_seconds,release_date
USRC17607839,Night Drive,The Lanterns,Afterglow,215.5,2021-04-02
GB-AJY-05-00001,Paper Boats,Mira Lane,,188,
NOTANISRC,Broken Code,Nobody,,100,
FRZ039800212,Zero Length,Quiet Room,,0,
DEUM71600001,,Untitled Artist,,120,
FRZ039800213,Extra Field,Someone,,90,,surplus
"""

JSONL = "\n".join(
    [
        json.dumps(
            {"isrc": "SEAAA2100001", "title": "Lakes", "artist": "Nord", "duration_seconds": 301}
        ),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"isrc": "SEAAA2100002", "title": "Fjords", "artist": "Nord"}),
        "",
        json.dumps(
            {"isrc": "SEAAA2100003", "title": "Tundra", "artist": "Nord", "duration_seconds": "245"}
        ),
    ]
)


@pytest.fixture
def make_handler(
    tmp_path: Path, make_context: Callable[..., HandlerContext]
) -> Callable[..., CatalogImportHandler]:
    def make(**options: object) -> CatalogImportHandler:
        model = CatalogImportOptions.model_validate({"source_root": str(tmp_path), **options})
        return CatalogImportHandler(make_context("CatalogImport", HandlerPurpose.INGESTION, model))

    return make


async def queue(sessions: Sessions, source: str, fmt: str | None = None) -> int:
    async with sessions() as session, session.begin():
        batch = StagingBatch(source=source, format=fmt)
        session.add(batch)
        await session.flush()
        return batch.id


async def batch(sessions: Sessions, batch_id: int) -> StagingBatch:
    async with sessions() as session:
        return await session.get_one(StagingBatch, batch_id)


async def catalogue(sessions: Sessions) -> dict[str, CatalogueEntry]:
    async with sessions() as session:
        return {e.isrc: e for e in (await session.scalars(select(CatalogueEntry))).all()}


async def run_all(handler: CatalogImportHandler) -> list[BaseException]:
    """Process everything fetched, as the engine would; the errors raised, in order."""
    errors: list[BaseException] = []
    for item in await handler.fetch_next(100):
        try:
            await handler.process(item)
        except SourceError as error:
            errors.append(error)
    return errors


async def test_csv_batch_imports_valid_records_and_counts_the_rejected(
    make_handler: Callable[..., CatalogImportHandler], sessions: Sessions, tmp_path: Path
) -> None:
    (tmp_path / "new-releases.csv").write_text(CSV)
    batch_id = await queue(sessions, "new-releases.csv")

    assert await run_all(make_handler()) == []

    done = await batch(sessions, batch_id)
    assert (done.status, done.imported, done.unchanged, done.rejected) == ("completed", 2, 0, 4)
    assert done.attempts == 1 and done.error is None and done.finished_at is not None
    assert done.rejections is not None
    assert done.rejections.splitlines() == [
        "line 4: isrc: String should match pattern '^[A-Z]{2}[A-Z0-9]{3}[0-9]{7}$'",
        "line 5: duration_seconds: Input should be greater than 0",
        "line 6: title: Field required",
        "line 7: more fields than columns",
    ]
    entries = await catalogue(sessions)
    assert sorted(entries) == ["GBAJY0500001", "USRC17607839"]
    night = entries["USRC17607839"]
    assert (night.title, night.album, night.duration_seconds) == ("Night Drive", "Afterglow", 215.5)
    assert night.release_date == date(2021, 4, 2) and night.batch_id == batch_id
    assert entries["GBAJY0500001"].album is None


async def test_json_lines_batch(
    make_handler: Callable[..., CatalogImportHandler], sessions: Sessions, tmp_path: Path
) -> None:
    (tmp_path / "nordic.jsonl").write_text(JSONL)
    batch_id = await queue(sessions, str(tmp_path / "nordic.jsonl"))

    await run_all(make_handler())

    done = await batch(sessions, batch_id)
    assert (done.status, done.imported, done.rejected) == ("completed", 2, 3)
    assert done.rejections is not None
    assert done.rejections.splitlines()[0].startswith("line 2: invalid JSON")
    assert "line 3: not a JSON object" in done.rejections
    assert "line 4: duration_seconds: Field required" in done.rejections
    assert sorted(await catalogue(sessions)) == ["SEAAA2100001", "SEAAA2100003"]


async def test_rerunning_a_batch_imports_nothing_twice(
    make_handler: Callable[..., CatalogImportHandler], sessions: Sessions, tmp_path: Path
) -> None:
    source = tmp_path / "releases.csv"
    source.write_text(CSV)
    first = await queue(sessions, "releases.csv")
    await run_all(make_handler())
    second = await queue(sessions, "releases.csv")
    await run_all(make_handler())

    again = await batch(sessions, second)
    assert (again.status, again.imported, again.unchanged, again.rejected) == (
        "completed",
        0,
        2,
        4,
    )
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(CatalogueEntry)) == 2
    assert (await catalogue(sessions))["USRC17607839"].batch_id == first

    # A changed record is written again, and only that one.
    source.write_text(CSV.replace("Night Drive", "Night Drive (Remastered)"))
    third = await queue(sessions, "releases.csv")
    await run_all(make_handler())
    changed = await batch(sessions, third)
    assert (changed.imported, changed.unchanged) == (1, 1)
    entry = (await catalogue(sessions))["USRC17607839"]
    assert (entry.title, entry.batch_id) == ("Night Drive (Remastered)", third)


async def test_a_completed_batch_is_not_imported_again(
    make_handler: Callable[..., CatalogImportHandler], sessions: Sessions, tmp_path: Path
) -> None:
    (tmp_path / "a.csv").write_text(CSV)
    batch_id = await queue(sessions, "a.csv")
    handler = make_handler()
    [item] = await handler.fetch_next(10)
    await handler.process(item)

    await handler.process(item)

    assert (await batch(sessions, batch_id)).attempts == 1
    assert await handler.fetch_next(10) == []


async def test_url_sources_are_downloaded(
    make_handler: Callable[..., CatalogImportHandler],
    sessions: Sessions,
    http_server: Any,
) -> None:
    server = http_server
    server.files["/exports/releases.csv"] = (200, CSV.encode(), "text/csv")
    server.files["/feed"] = (200, JSONL.encode(), "application/x-ndjson")
    by_suffix = await queue(sessions, f"{server.url}/exports/releases.csv")
    by_type = await queue(sessions, f"{server.url}/feed")

    assert await run_all(make_handler()) == []

    assert (await batch(sessions, by_suffix)).imported == 2
    assert (await batch(sessions, by_type)).imported == 2
    assert len(await catalogue(sessions)) == 4


async def test_http_error_fails_the_batch_and_a_retry_recovers(
    make_handler: Callable[..., CatalogImportHandler], sessions: Sessions, http_server: Any
) -> None:
    server = http_server
    server.files["/releases.csv"] = (503, b"busy", "text/plain")
    batch_id = await queue(sessions, f"{server.url}/releases.csv")
    handler = make_handler()
    [item] = await handler.fetch_next(10)

    with pytest.raises(SourceError, match="HTTP 503"):
        await handler.process(item)
    failed = await batch(sessions, batch_id)
    assert failed.status == "failed"
    assert failed.error is not None and "answered HTTP 503" in failed.error

    server.files["/releases.csv"] = (200, CSV.encode(), "text/csv")
    await handler.process(item)  # the engine's retry

    recovered = await batch(sessions, batch_id)
    assert (recovered.status, recovered.imported, recovered.attempts) == ("completed", 2, 2)
    assert recovered.error is None


async def test_unreachable_server_fails_the_batch(
    make_handler: Callable[..., CatalogImportHandler], sessions: Sessions
) -> None:
    batch_id = await queue(sessions, "http://127.0.0.1:9/releases.csv")

    [error] = await run_all(make_handler(http_timeout=2))

    assert "cannot fetch http://127.0.0.1:9/releases.csv" in str(error)
    assert (await batch(sessions, batch_id)).status == "failed"


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("garbage.csv", b"\x89PNG\r\n\x1a\n\xff\xfe\x00", "not UTF-8 text"),
        ("absent.csv", None, "cannot read"),
        ("catalogue.xml", b"<catalogue/>", "unsupported format"),
        ("columns.csv", b"code,name\nX,Y\n", "CSV header lacks column(s): isrc, title, artist"),
    ],
)
async def test_unusable_sources_fail_the_batch_with_the_reason(
    make_handler: Callable[..., CatalogImportHandler],
    sessions: Sessions,
    tmp_path: Path,
    name: str,
    content: bytes | None,
    reason: str,
) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    batch_id = await queue(sessions, name)

    [error] = await run_all(make_handler())

    failed = await batch(sessions, batch_id)
    assert failed.status == BatchStatus.FAILED
    assert failed.error is not None and reason in failed.error
    assert reason in str(error)
    assert await catalogue(sessions) == {}
    assert await make_handler().fetch_next(10) == []


async def test_explicit_format_wins_over_the_suffix(
    make_handler: Callable[..., CatalogImportHandler], sessions: Sessions, tmp_path: Path
) -> None:
    (tmp_path / "export.txt").write_text(JSONL)
    batch_id = await queue(sessions, "export.txt", fmt="jsonl")

    await run_all(make_handler())

    assert (await batch(sessions, batch_id)).imported == 2


async def test_oversized_source_fails(
    make_handler: Callable[..., CatalogImportHandler], sessions: Sessions, tmp_path: Path
) -> None:
    (tmp_path / "big.csv").write_text(CSV)
    batch_id = await queue(sessions, "big.csv")

    await run_all(make_handler(max_bytes=100))

    assert "larger than 100 bytes" in ((await batch(sessions, batch_id)).error or "")


async def test_fetch_takes_queued_and_interrupted_batches_oldest_first(
    make_handler: Callable[..., CatalogImportHandler], sessions: Sessions
) -> None:
    ids = [await queue(sessions, f"b{n}.csv") for n in range(5)]
    async with sessions() as session, session.begin():
        for batch_id, status in zip(
            ids, ["completed", "processing", "failed", "queued", "queued"], strict=True
        ):
            (await session.get_one(StagingBatch, batch_id)).status = status

    items = await make_handler().fetch_next(10)

    assert items == [
        QueuedBatch(ids[1], "b1.csv", None),
        QueuedBatch(ids[3], "b3.csv", None),
        QueuedBatch(ids[4], "b4.csv", None),
    ]


async def test_on_failure_keeps_the_last_error(
    make_handler: Callable[..., CatalogImportHandler], sessions: Sessions
) -> None:
    batch_id = await queue(sessions, "x.csv")
    handler = make_handler()
    [item] = await handler.fetch_next(10)

    await handler.on_failure(item, RuntimeError("database went away"))

    failed = await batch(sessions, batch_id)
    assert (failed.status, failed.error) == ("failed", "database went away")


async def test_file_urls_and_unsupported_schemes(
    make_handler: Callable[..., CatalogImportHandler], sessions: Sessions, tmp_path: Path
) -> None:
    (tmp_path / "my releases.csv").write_text(CSV)
    by_url = await queue(sessions, (tmp_path / "my releases.csv").as_uri())
    by_ftp = await queue(sessions, "ftp://example.test/releases.csv")

    [error] = await run_all(make_handler())

    assert (await batch(sessions, by_url)).imported == 2
    assert "unsupported source 'ftp://example.test/releases.csv'" in str(error)
    assert (await batch(sessions, by_ftp)).status == "failed"
