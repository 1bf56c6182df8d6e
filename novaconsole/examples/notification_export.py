"""Export: deliver the notification outbox to a webhook or to a JSON-lines file.

Each pending notification is POSTed as JSON with an ``Idempotency-Key`` header (the
notification's id), so a receiver can drop the duplicate a retry may cause; or appended as one
JSON line carrying the same key. A delivered notification is marked ``sent``. A failed delivery
raises, so the engine retries it with backoff; after the last attempt ``on_failure`` marks it
``failed`` with the error.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

import anyio
from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from sqlalchemy import select, update

from novaconsole import DurationField, HandlerContext
from novaconsole.examples import httpx_available, options_of, require_httpx
from novaconsole.examples.domain import Notification, NotificationStatus, ensure_schema, utcnow

if TYPE_CHECKING:
    import httpx


class NotificationExportOptions(BaseModel):
    """``[handlers.options]`` of the notification export."""

    model_config = ConfigDict(extra="forbid")

    sink: Literal["webhook", "file"] = "webhook"
    webhook_url: str | None = None
    """Where notifications are POSTed (sink = "webhook")."""
    file_path: Path | None = None
    """The JSON-lines file notifications are appended to (sink = "file")."""
    timeout: DurationField = timedelta(seconds=10)

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value

    @field_validator("file_path")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @model_validator(mode="after")
    def _sink_configured(self) -> Self:
        if self.sink == "webhook" and self.webhook_url is None:
            raise ValueError('sink = "webhook" needs webhook_url')
        if self.sink == "webhook" and not httpx_available():
            raise ValueError("sink = \"webhook\" needs httpx: pip install 'novaconsole[demo]'")
        if self.sink == "file" and self.file_path is None:
            raise ValueError('sink = "file" needs file_path')
        return self


class DeliveryError(Exception):
    """The sink refused or could not be reached; the engine will retry."""


@dataclass(frozen=True, slots=True)
class PendingNotification:
    """A notification waiting in the outbox."""

    id: str
    kind: str
    recipient: str
    payload: str
    created_at: datetime

    def message(self) -> dict[str, Any]:
        """The JSON document delivered to the sink."""
        return {
            "id": self.id,
            "kind": self.kind,
            "recipient": self.recipient,
            "payload": json.loads(self.payload),
            "created_at": self.created_at.isoformat(),
        }


class NotificationExportHandler:
    """Delivers pending notifications, oldest first."""

    Options = NotificationExportOptions

    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx
        self.options = options_of(ctx, NotificationExportOptions)
        self._client: httpx.AsyncClient | None = None

    async def fetch_next(self, max_items: int) -> Sequence[PendingNotification]:
        async with self.ctx.session() as session:
            await ensure_schema(session)
            query = (
                select(
                    Notification.id,
                    Notification.kind,
                    Notification.recipient,
                    Notification.payload,
                    Notification.created_at,
                )
                .where(Notification.status == NotificationStatus.PENDING.value)
                .order_by(Notification.created_at, Notification.id)
            )
            # Not the notifications already in hand here or claimed by another worker.
            rows = await session.execute(
                self.ctx.unclaimed(query, Notification.id).limit(max_items)
            )
            return [PendingNotification(*row) for row in rows]

    async def process(self, item: PendingNotification) -> None:
        """Deliver one notification and mark it sent; raise if the sink failed."""
        try:
            if self.options.sink == "webhook":
                await self._post(item)
            else:
                await self._append(item)
        except Exception as error:
            await self._record_attempt(item.id, last_error=str(error) or type(error).__name__)
            raise
        marked = await self._record_attempt(item.id, status=NotificationStatus.SENT)
        if marked:
            self.ctx.log.info(
                "Delivered %s notification %s to %s", item.kind, item.id, item.recipient
            )
        else:
            self.ctx.log.info("Notification %s was already sent or failed elsewhere", item.id)

    async def on_failure(self, item: PendingNotification, error: BaseException) -> None:
        """After the last attempt: mark the notification failed with the error."""
        await self._record_attempt(
            item.id,
            status=NotificationStatus.FAILED,
            last_error=str(error) or type(error).__name__,
            count=False,
        )
        self.ctx.log.warning("Gave up on notification %s: %s", item.id, error)

    async def reopen(self, item_id: str) -> bool:
        """An operator's retry: put a failed notification back in the outbox. False if it is
        not failed (sent, pending already, or gone)."""
        async with self.ctx.session() as session, session.begin():
            reopened = await session.execute(
                update(Notification)
                .where(
                    Notification.id == item_id,
                    Notification.status == NotificationStatus.FAILED.value,
                )
                .values(status=NotificationStatus.PENDING.value)
                .returning(Notification.id)
                .execution_options(synchronize_session=False)
            )
            return reopened.first() is not None

    async def _post(self, item: PendingNotification) -> None:
        url = self.options.webhook_url
        assert url is not None  # checked by the options
        httpx = require_httpx('sink = "webhook"')
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.options.timeout.total_seconds())
            self.ctx.add_cleanup(self._client.aclose)
        try:
            response = await self._client.post(
                url, json=item.message(), headers={"Idempotency-Key": item.id}
            )
        except httpx.HTTPError as error:
            raise DeliveryError(
                f"cannot reach the webhook {url}: {error or type(error).__name__}"
            ) from error
        if response.is_error:
            raise DeliveryError(
                f"webhook answered HTTP {response.status_code} {response.reason_phrase}"
            )

    async def _append(self, item: PendingNotification) -> None:
        path = self.options.file_path
        assert path is not None  # checked by the options
        line = json.dumps({**item.message(), "idempotency_key": item.id}) + "\n"
        await anyio.to_thread.run_sync(_append_line, path, line)

    async def _record_attempt(
        self,
        notification_id: str,
        *,
        status: NotificationStatus | None = None,
        last_error: str | None = None,
        count: bool = True,
    ) -> bool:
        values: dict[str, Any] = {"last_error": last_error}
        if count:
            values["attempts"] = Notification.attempts + 1
        if status is not None:
            values["status"] = status.value
        if status is NotificationStatus.SENT:
            values["sent_at"] = utcnow()
        async with self.ctx.session() as session, session.begin():
            result = await session.execute(
                update(Notification)
                .where(
                    Notification.id == notification_id,
                    Notification.status == NotificationStatus.PENDING.value,
                )
                .values(values)
                .returning(Notification.id)
                .execution_options(synchronize_session=False)
            )
            return result.first() is not None


def _append_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write on an append-mode file: concurrent writers never interleave within a line.
    with path.open("a", encoding="utf-8") as file:
        file.write(line)
