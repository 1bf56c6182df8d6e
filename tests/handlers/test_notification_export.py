"""NotificationExportHandler against a real SQLite file, a real webhook and a real file sink."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from novaconsole import BackgroundProcessing, ConfigError
from novaconsole.engine.handler import HandlerContext, HandlerPurpose
from novaconsole.examples.domain import Notification, utcnow
from novaconsole.examples.notification_export import (
    DeliveryError,
    NotificationExportHandler,
    NotificationExportOptions,
)

Sessions = async_sessionmaker[AsyncSession]

pytestmark = pytest.mark.anyio


@pytest.fixture
def make_handler(
    make_context: Callable[..., HandlerContext],
) -> Callable[..., NotificationExportHandler]:
    def make(**options: Any) -> NotificationExportHandler:
        model = NotificationExportOptions.model_validate(options)
        return NotificationExportHandler(
            make_context("NotificationExport", HandlerPurpose.EXPORT, model)
        )

    return make


async def add_notification(
    sessions: Sessions, number: int, *, status: str = "pending", age: int = 0
) -> str:
    notification = Notification(
        id=f"00000000-0000-4000-8000-{number:012d}",
        kind="track.published",
        recipient=f"user-{number}@example.test",
        payload=json.dumps({"track_id": number}),
        status=status,
        created_at=utcnow() - timedelta(minutes=age),
    )
    async with sessions() as session, session.begin():
        session.add(notification)
    return notification.id


async def stored(sessions: Sessions, notification_id: str) -> Notification:
    async with sessions() as session:
        return await session.get_one(Notification, notification_id)


async def test_fetch_takes_pending_notifications_oldest_first(
    make_handler: Callable[..., NotificationExportHandler], sessions: Sessions, tmp_path: Path
) -> None:
    newer = await add_notification(sessions, 1, age=1)
    older = await add_notification(sessions, 2, age=5)
    await add_notification(sessions, 3, status="sent", age=9)
    await add_notification(sessions, 4, status="failed", age=9)

    items = await make_handler(sink="file", file_path=tmp_path / "out.jsonl").fetch_next(10)

    assert [item.id for item in items] == [older, newer]


async def test_webhook_delivery_posts_json_with_an_idempotency_key(
    make_handler: Callable[..., NotificationExportHandler], sessions: Sessions, http_server: Any
) -> None:
    notification_id = await add_notification(sessions, 1)
    handler = make_handler(webhook_url=f"{http_server.url}/hooks/notify")
    [item] = await handler.fetch_next(10)

    await handler.process(item)

    [post] = http_server.posts()
    assert post.path == "/hooks/notify"
    assert post.headers["Idempotency-Key"] == notification_id
    assert post.headers["Content-Type"] == "application/json"
    body = json.loads(post.body)
    assert body["id"] == notification_id
    assert body["kind"] == "track.published"
    assert body["payload"] == {"track_id": 1}
    sent = await stored(sessions, notification_id)
    assert (sent.status, sent.attempts, sent.last_error) == ("sent", 1, None)
    assert sent.sent_at is not None
    assert await handler.fetch_next(10) == []


async def test_failing_webhook_raises_so_the_engine_retries(
    make_handler: Callable[..., NotificationExportHandler], sessions: Sessions, http_server: Any
) -> None:
    notification_id = await add_notification(sessions, 1)
    http_server.post_statuses = [503]
    handler = make_handler(webhook_url=http_server.url)
    [item] = await handler.fetch_next(10)

    with pytest.raises(DeliveryError, match="HTTP 503"):
        await handler.process(item)
    waiting = await stored(sessions, notification_id)
    assert (waiting.status, waiting.attempts) == ("pending", 1)
    assert waiting.last_error == "webhook answered HTTP 503 Service Unavailable"

    await handler.process(item)  # the engine's retry

    first, second = http_server.posts()
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == item.id
    assert first.body == second.body
    sent = await stored(sessions, notification_id)
    assert (sent.status, sent.attempts, sent.last_error) == ("sent", 2, None)


async def test_on_failure_marks_the_notification_failed(
    make_handler: Callable[..., NotificationExportHandler], sessions: Sessions, http_server: Any
) -> None:
    notification_id = await add_notification(sessions, 1)
    http_server.post_statuses = [500, 500]
    handler = make_handler(webhook_url=http_server.url)
    [item] = await handler.fetch_next(10)
    errors = []
    for _ in range(2):
        with pytest.raises(DeliveryError) as caught:
            await handler.process(item)
        errors.append(caught.value)

    await handler.on_failure(item, errors[-1])

    failed = await stored(sessions, notification_id)
    assert (failed.status, failed.attempts) == ("failed", 2)
    assert failed.last_error == "webhook answered HTTP 500 Internal Server Error"
    assert await handler.fetch_next(10) == []


async def test_delivering_twice_keeps_one_sent_record(
    make_handler: Callable[..., NotificationExportHandler], sessions: Sessions, http_server: Any
) -> None:
    notification_id = await add_notification(sessions, 1)
    handler = make_handler(webhook_url=http_server.url)
    [item] = await handler.fetch_next(10)

    await handler.process(item)
    await handler.process(item)

    keys = {post.headers["Idempotency-Key"] for post in http_server.posts()}
    assert keys == {notification_id}
    assert (await stored(sessions, notification_id)).attempts == 1


async def test_unreachable_webhook_is_a_delivery_error(
    make_handler: Callable[..., NotificationExportHandler], sessions: Sessions
) -> None:
    notification_id = await add_notification(sessions, 1)
    handler = make_handler(webhook_url="http://127.0.0.1:9/hook", timeout=2)
    [item] = await handler.fetch_next(10)

    with pytest.raises(DeliveryError, match="cannot reach the webhook"):
        await handler.process(item)

    assert (await stored(sessions, notification_id)).status == "pending"


async def test_the_scope_closes_the_http_client(
    make_handler: Callable[..., NotificationExportHandler], sessions: Sessions, http_server: Any
) -> None:
    await add_notification(sessions, 1)
    handler = make_handler(webhook_url=http_server.url)
    [item] = await handler.fetch_next(10)
    await handler.process(item)
    client = handler._client
    assert client is not None and not client.is_closed

    await handler.ctx.aclose()

    assert client.is_closed


async def test_file_sink_appends_json_lines(
    make_handler: Callable[..., NotificationExportHandler], sessions: Sessions, tmp_path: Path
) -> None:
    ids = [await add_notification(sessions, n, age=10 - n) for n in range(3)]
    sink = tmp_path / "outbox" / "notifications.jsonl"
    handler = make_handler(sink="file", file_path=str(sink))

    for item in await handler.fetch_next(10):
        await handler.process(item)

    lines = [json.loads(line) for line in sink.read_text().splitlines()]
    assert [line["idempotency_key"] for line in lines] == ids
    assert [line["payload"] for line in lines] == [{"track_id": n} for n in range(3)]
    assert {(await stored(sessions, i)).status for i in ids} == {"sent"}


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, "needs webhook_url"),
        ({"sink": "file"}, "needs file_path"),
        ({"sink": "email"}, "sink"),
        ({"webhook_url": "ftp://example.test"}, "http:// or https://"),
        ({"webhook_url": "http://x", "timeout": "later"}, "timeout"),
    ],
)
def test_bad_options_are_a_config_error(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        BackgroundProcessing().add_handler(NotificationExportHandler, name="N", options=options)
