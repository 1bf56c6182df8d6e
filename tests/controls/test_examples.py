"""Retrying the example handlers' failed items, in the demo's own data: each is reopened at
its source and runs again."""

from __future__ import annotations

import random
from pathlib import Path

import anyio
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from novaconsole import OutcomeStatus
from novaconsole.demo import (
    DemoWebServer,
    DemoWorld,
    build_service,
    demo_settings,
    prepare_directory,
)
from novaconsole.engine.events import RetryProgress
from novaconsole.examples.domain import (
    BatchStatus,
    Notification,
    NotificationStatus,
    StagingBatch,
    Track,
)

pytestmark = pytest.mark.anyio


@pytest.mark.slow  # the whole demo seeded and run against its web server: seconds
async def test_every_failed_item_of_the_demo_runs_again_when_retried(tmp_path: Path) -> None:
    paths, _ = prepare_directory(tmp_path / "demo")
    # failure_rate=1: a quarter of the webhook keys and batch URLs always fail.
    with DemoWebServer(paths.batches, failure_rate=1.0, salt="test") as web:
        world = DemoWorld(paths, web.url, random.Random(7))
        await world.open()
        try:
            await world.seed()
            # A retry waits for the next poll: 0.1 s instead of the demo's 2 s. No breaker: five
            # notifications failing for good in a row in the first cycles would trip it, and
            # the retries would wait 30 s for its trial, then 60 s more once the trial (one of
            # them, failing again) failed, past this test's 60 s (seen in CI).
            settings = demo_settings(
                paths,
                web.webhook_url,
                poll_interval=0.1,
                retry_base_delay=0.01,
                breaker_threshold=0,
            )
            service = build_service(settings)
            failed = []
            async with service.running(poll=False):
                for _ in range(12):
                    report = await service.run_once()
                    if not report.outcomes:
                        break
                    failed += [o for o in report.outcomes if o.status is OutcomeStatus.FAILED]
            handlers = {o.handler for o in failed}
            assert {"CatalogImport", "NotificationExport"} <= handlers
            async with AsyncSession(world.engine) as session:
                parked = (
                    await session.scalar(select(StagingBatch.status).where(StagingBatch.id == 5)),
                    len(
                        (
                            await session.scalars(
                                select(Notification.id).where(
                                    Notification.status == NotificationStatus.FAILED.value
                                )
                            )
                        ).all()
                    ),
                )
            assert parked[0] == BatchStatus.FAILED.value and parked[1] > 0  # not fetched again

            finals: dict[tuple[str, str], str] = {}
            events = service.events()
            async with service.running():  # polling: a retry runs within one poll
                for outcome in failed:
                    status = await service.request_retry(outcome.handler, outcome.item_id)
                    assert status is not None, outcome
                with anyio.fail_after(60):
                    async for event in events:
                        if isinstance(event, RetryProgress) and event.status.final:
                            finals[(event.handler, event.item_id)] = event.status.state
                            if len(finals) == len(failed):
                                break
        finally:
            await world.close()
    # Each ran again (succeeded, or failed again for a key the server always refuses); none
    # was left behind at its source.
    assert set(finals.values()) <= {"succeeded", "failed"}, finals
    assert len(finals) == len(failed)


async def test_the_example_handlers_reopen_only_what_failed(tmp_path: Path) -> None:
    from novaconsole.engine.handler import HandlerContext
    from novaconsole.engine.purpose import HandlerPurpose
    from novaconsole.examples.catalog_import import CatalogImportHandler
    from novaconsole.examples.notification_export import NotificationExportHandler
    from novaconsole.examples.physical_deletion import PhysicalDeletionHandler

    paths, _ = prepare_directory(tmp_path / "demo")
    world = DemoWorld(paths, "http://127.0.0.1:9", random.Random(3))
    await world.open()
    try:
        await world.seed()
        from sqlalchemy.ext.asyncio import async_sessionmaker

        sessions = async_sessionmaker(world.engine, expire_on_commit=False)

        def ctx(options: dict[str, object]) -> HandlerContext:
            return HandlerContext(
                name="X",
                purpose=HandlerPurpose.INTERNAL,
                options=options,
                session_factory=sessions,
            )

        async with AsyncSession(world.engine) as session, session.begin():
            note = await session.scalar(select(Notification.id).limit(1))
            await session.execute(
                update(Notification).where(Notification.id == note).values(status="failed")
            )
            await session.execute(
                update(StagingBatch).where(StagingBatch.id == 1).values(status="failed")
            )
            due = await session.scalar(select(Track.id).where(Track.status == "deleted"))
            alive = await session.scalar(select(Track.id).where(Track.status == "active"))
        export = NotificationExportHandler(
            ctx({"sink": "file", "file_path": str(tmp_path / "out.jsonl")})
        )
        imports = CatalogImportHandler(ctx({"source_root": str(paths.batches)}))
        deletion = PhysicalDeletionHandler(ctx({"storage_root": str(paths.objects)}))
        assert await export.reopen(str(note)) and not await export.reopen(str(note))
        assert await imports.reopen("1") and not await imports.reopen("1")
        assert not await imports.reopen("not-a-number")
        assert await deletion.reopen(str(due)) and not await deletion.reopen(str(alive))
        async with AsyncSession(world.engine) as session:
            assert (
                await session.scalar(select(Notification.status).where(Notification.id == note))
                == NotificationStatus.PENDING.value
            )
            assert (
                await session.scalar(select(StagingBatch.status).where(StagingBatch.id == 1))
                == BatchStatus.QUEUED.value
            )
    finally:
        await world.close()
