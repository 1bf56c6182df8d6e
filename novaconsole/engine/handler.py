"""The handler protocol, handler purposes and the per-cycle scope handed to a handler."""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, Protocol, runtime_checkable

import anyio
import anyio.to_thread
from typing_extensions import TypeVar

from novaconsole.engine.outcomes import shown_id
from novaconsole.engine.purpose import HandlerPurpose as HandlerPurpose  # re-exported

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.sql import Executable

    from novaconsole.engine.unclaimed import IdColumn, SelectT, SourceFilter
    from novaconsole.engine.writes import ItemWriter, ItemWrites, Params

current_item_id: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "novaconsole_item_id", default=None
)
"""The id of the item the current task is processing, for log records."""


@runtime_checkable
class WorkItem(Protocol):
    """Anything with an ``id`` (str, int or UUID)."""

    @property
    def id(self) -> Any: ...


class Handler(Protocol):
    """What the engine calls. Structural: no base class needed.

    ``on_failure(item, error)`` is optional and called once after an item's last attempt.
    Each method may also be a plain ``def``: the engine then runs it in a worker thread
    (``anyio.to_thread.run_sync``), so blocking code stays off the event loop.
    """

    async def fetch_next(self, max_items: int) -> Sequence[Any]: ...

    async def process(self, item: Any) -> None: ...


class NoDatabaseError(RuntimeError):
    """``ctx.session()`` was called on a service built without a database."""


SessionFactory = Callable[[], "AsyncSession"]


class HandlerLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger bound to one handler; records carry ``handler`` and the current ``item_id``."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        item_id = current_item_id.get()
        if item_id is not None:
            extra.setdefault("item_id", shown_id(item_id))
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs


def handler_logger(name: str) -> HandlerLogger:
    return HandlerLogger(logging.getLogger(f"novaconsole.handlers.{name}"), {"handler": name})


OptionsT = TypeVar("OptionsT", default=Any)
"""The handler's options model: ``HandlerContext[PingOptions]`` types ``ctx.options``."""


@dataclass(eq=False)
class HandlerContext(Generic[OptionsT]):
    """The scope of one handler instance: one fetch and the processing of what it returned.

    Sessions opened with :meth:`session` and not yet closed are closed when the scope ends.
    ``options`` is the handler's ``[handlers.options]`` table, validated by its ``Options``
    model when it has one (``HandlerContext[MyOptions]`` makes ``ctx.options`` typed).
    """

    name: str
    purpose: HandlerPurpose
    options: OptionsT = None  # type: ignore[assignment]
    log: HandlerLogger = field(default=None)  # type: ignore[assignment]
    session_factory: SessionFactory | None = None
    writer: ItemWriter | None = None
    """The store's writer behind :meth:`write`, when the service has a database."""
    state: dict[str, Any] = field(default_factory=dict)
    """Free for the handler: lives as long as the scope."""
    source_filter: SourceFilter | None = None
    """The store's SQL behind :meth:`unclaimed` (None: no store; in-flight ids only)."""
    in_flight: Callable[[], Sequence[Any]] | None = None
    """The ids behind :meth:`in_flight_ids`, given by the engine."""
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack, repr=False)
    _open_sessions: set[AsyncSession] = field(default_factory=set, repr=False)
    _sessions_hooked: bool = field(default=False, repr=False)
    _loose_writes: ItemWrites | None = field(default=None, repr=False)
    leaves_out_taken: bool = field(default=False, init=False, repr=False)
    """True once the fetch asked what is taken (:meth:`unclaimed`, :meth:`in_flight_ids`):
    its next fetch cannot return what this one did, so the engine need not wait for part of
    the batch to be through before fetching again."""

    def __post_init__(self) -> None:
        if self.log is None:
            self.log = handler_logger(self.name)

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """Open a new ``AsyncSession`` on the configured database: ``async with ctx.session()``."""
        return self._session_scope(self._factory("session"))

    def write(self, statement: Executable | str, params: Params = None) -> None:
        """Queue a write for the item being processed: the fastest write path.

        The statement (SQLAlchemy Core, ``text()`` or SQL text with ``:name`` parameters)
        runs after ``process`` returns, grouped with other items' writes in one transaction
        that also records the item's outcome (on the store's database: a crash never leaves
        one without the other); a failing statement fails (and retries) the item alone, while
        a database that cannot be written (down, full, locked) holds the writes and retries
        them without charging the item. If ``process`` raises, its queued writes are dropped.
        Inside ``process`` the writes are not visible yet, so do them last. Outside the engine
        (a handler test calling ``process`` directly) they wait for :meth:`flush_writes`.
        """
        from novaconsole.engine.writes import ItemWrites, current_writes

        holder = current_writes.get()
        if holder is not None:
            holder.add(statement, params)
            return
        if self._loose_writes is None:
            self._loose_writes = ItemWrites()
        self._loose_writes.execute(statement, params)

    async def flush_writes(self) -> None:
        """Run the writes queued with :meth:`write` outside the engine, in one transaction."""
        writes, self._loose_writes = self._loose_writes, None
        if writes is None:
            return
        async with self.session() as session, session.begin():
            for statement, params in writes.statements:
                await session.execute(statement, params)

    def in_flight_ids(self) -> list[Any]:
        """Ids of this handler's items this worker has queued, running or waiting for a retry,
        as ``fetch_next`` returned them: leave them out of a source outside the store's
        database (an API, another database) so the next fetch brings new work."""
        self.leaves_out_taken = True
        return list(self.in_flight()) if self.in_flight is not None else []

    def unclaimed(self, query: SelectT, id_column: IdColumn) -> SelectT:
        """``query`` (a SQLAlchemy ``select``) without the rows already taken: those whose id
        (``id_column``) another worker holds a live claim on, and this worker's in-flight items
        (:meth:`in_flight_ids`). One statement, one round trip; for a source in the store's
        database (its claims table). Call it before ``.limit()``::

            query = select(Job.id).where(Job.state == "pending").order_by(Job.id)
            rows = await session.execute(ctx.unclaimed(query, Job.id).limit(max_items))
        """
        from novaconsole.engine.unclaimed import without_in_flight

        in_flight = self.in_flight_ids()
        if self.source_filter is None:
            return without_in_flight(query, id_column, in_flight)
        return self.source_filter.unclaimed(
            query, id_column, handler=self.name, in_flight=in_flight
        )

    def _factory(self, method: str) -> SessionFactory:
        if self.session_factory is None:
            raise NoDatabaseError(
                f"handler {self.name!r} asked for ctx.{method}(), but the service was built "
                "without a database; pass database_url= to build() or set [database] url"
            )
        return self.session_factory

    @asynccontextmanager
    async def _session_scope(self, factory: SessionFactory) -> AsyncIterator[AsyncSession]:
        session = factory()
        if not self._sessions_hooked:
            self._stack.push_async_callback(self._close_open_sessions)
            self._sessions_hooked = True
        self._open_sessions.add(session)
        try:
            yield session
        finally:
            self._open_sessions.discard(session)
            # Shielded: a cancelled item must still hand its connection back to the pool.
            with anyio.CancelScope(shield=True):
                await session.close()

    async def _close_open_sessions(self) -> None:
        while self._open_sessions:
            with anyio.CancelScope(shield=True):
                await self._open_sessions.pop().close()

    def add_cleanup(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` (sync or async) when the scope ends."""
        if inspect.iscoroutinefunction(callback):
            self._stack.push_async_callback(callback)
        else:
            self._stack.callback(callback)

    async def aclose(self) -> None:
        """End the scope: close whatever it opened. Called by the engine."""
        await self._stack.aclose()


HandlerCall = Callable[..., Awaitable[Any]]
"""A handler method the engine awaits (see :func:`awaitable_method`)."""


def awaitable_method(handler: object, name: str) -> HandlerCall | None:
    """``handler.<name>`` as something to await, or None if it has no such method: an
    ``async def`` as it is, a plain ``def`` run in a worker thread."""
    method = getattr(handler, name, None)
    if method is None:
        return None
    if inspect.iscoroutinefunction(method):
        return method  # type: ignore[no-any-return]
    return partial(_in_thread, method)


async def _in_thread(method: Callable[..., Any], *args: Any) -> Any:
    # Abandoned on cancellation (a timeout, the end of the drain): a thread cannot be stopped,
    # so it runs on, but the slot is free and the item's outcome is recorded.
    result = await anyio.to_thread.run_sync(partial(method, *args), abandon_on_cancel=True)
    if inspect.isawaitable(result):  # a plain def that returned a coroutine
        return await result
    return result
