"""The tables novaconsole keeps in the configured database (SQLAlchemy Core).

Every table name starts with ``novaconsole_`` so that handlers may keep their own tables in the
same database. The tables are created and changed by the Alembic revisions in
``novaconsole/store/migrations/versions``: a change here needs a new revision there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

VERSION_TABLE = "novaconsole_alembic_version"
"""Alembic's version table for the store's migrations (:mod:`novaconsole.store.schema`): its
own, so that an application's Alembic history can live in the same database."""

HANDLER_LENGTH = 200
ITEM_ID_LENGTH = 500
"""Longer item ids are stored cut to this length."""
WORKER_ID_LENGTH = 300


def stored_handler(name: str) -> str:
    """A handler name as stored: cut to its column length."""
    return name[:HANDLER_LENGTH]


def stored_item_id(item_id: object) -> str:
    """An item id as stored: its text, cut to its column length (longer ids share a row)."""
    return str(item_id)[:ITEM_ID_LENGTH]


def stored_key(handler: str, item_id: object) -> tuple[str, str]:
    """(handler, item id) as stored: cut to the column lengths."""
    return stored_handler(handler), stored_item_id(item_id)


def stored_worker_id(worker_id: str) -> str:
    """A worker id as stored: cut to its column length."""
    return worker_id[:WORKER_ID_LENGTH]


metadata = MetaData()

# SQLite only aliases rowid for a column declared exactly INTEGER PRIMARY KEY.
_Id = BigInteger().with_variant(Integer(), "sqlite")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def sqlite_time(value: datetime) -> int:
    """How :class:`UtcDateTime` stores a timestamp on SQLite: microseconds since the Unix
    epoch (naive values are taken as UTC)."""
    return (value - (_EPOCH if value.tzinfo is not None else _NAIVE_EPOCH)) // _MICROSECOND


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back tz-aware.

    SQLite has no timestamp type: there it is an INTEGER of microseconds since the Unix epoch
    (``datetime(finished_at / 1e6, 'unixepoch')`` in SQL). Exact, compact, and ten times
    cheaper to produce than text, which matters when writing thousands of results a second.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return sqlite_time(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, int):
            return _EPOCH + timedelta(microseconds=value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


meta = Table(
    "novaconsole_meta",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", String(200), nullable=False),
)
"""Key/value facts about the database itself: ``schema_version``, the number of the latest
revision applied, which novaconsole before Alembic read (and refuse when it is newer)."""

results = Table(
    "novaconsole_results",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("handler", String(HANDLER_LENGTH), nullable=False),
    Column("item_id", String(ITEM_ID_LENGTH), nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime(), nullable=False),
    Column("duration", Float, nullable=False),
    Column("error", Text),
    Column("traceback", Text),
    Column("history", JSON(none_as_null=True)),  # NULL: the single attempt the row itself describes
    Column("worker_id", String(WORKER_ID_LENGTH)),
    Index("ix_novaconsole_results_handler_finished", "handler", "finished_at"),
    Index("ix_novaconsole_results_status", "status"),
)
"""One row per final item outcome; ``history`` lists the attempts this run saw; ``worker_id``
is the worker that recorded it."""

item_states = Table(
    "novaconsole_item_states",
    metadata,
    Column("handler", String(HANDLER_LENGTH), primary_key=True),
    Column("item_id", String(ITEM_ID_LENGTH), primary_key=True),
    Column("attempts", Integer, nullable=False),
    Column("dead", Boolean, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)
"""Attempts of items that have failed at least once; ``dead``: skipped until retried."""

started = Table(
    "novaconsole_started",
    metadata,
    Column("handler", String(HANDLER_LENGTH), primary_key=True),
    Column("item_id", String(ITEM_ID_LENGTH), primary_key=True),
    Column("run_id", String(WORKER_ID_LENGTH), nullable=False),
    Column("alone", Boolean, nullable=False),
    Column("crashes", Integer, nullable=False),
)
"""Items admitted by a run and not finished yet (see ``novaconsole.engine.crashes``): a row
left by another run after a restart marks a crash suspect; ``alone``: it was running alone
when that run died, so it crashed the worker; ``crashes``: crashes counted before."""

controls = Table(
    "novaconsole_controls",
    metadata,
    Column("scope", String(20), primary_key=True),
    Column("name", String(HANDLER_LENGTH), primary_key=True),
    Column("paused", Boolean),
    Column("concurrency", Integer),
    Column("batch_size", Integer),
)
"""Controls set at run time: one ``global`` row (name ``""``) and one ``handler`` row each."""

GLOBAL_SCOPE = "global"
HANDLER_SCOPE = "handler"

HELD = "held"
DONE = "done"

claims = Table(
    "novaconsole_claims",
    metadata,
    Column("handler", String(HANDLER_LENGTH), primary_key=True),
    Column("item_id", String(ITEM_ID_LENGTH), primary_key=True),
    Column("worker_id", String(WORKER_ID_LENGTH), nullable=False),
    Column("token", BigInteger, nullable=False),
    Column("lease_until", UtcDateTime(), nullable=False),
    Column("state", String(10), nullable=False),
    Column("finished_at", UtcDateTime()),
    Column("ended_by", BigInteger),
    Index("ix_novaconsole_claims_state_finished", "state", "finished_at"),
)
"""A worker's hold on an item (``held`` until ``lease_until``, database clock), or its end
(``done`` at ``finished_at``, kept a while so a fetch that raced the end cannot take it again).
``token`` grows by one with every new claim of the row: the fencing token. ``ended_by``: the
:data:`claim_ends` row of the transaction that ended it."""

claim_ends = Table(
    "novaconsole_claim_ends",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("ended_at", UtcDateTime(), nullable=False),
)
"""When a transaction that ended claims was known to be committed (written after its commit,
see :mod:`novaconsole.store.end_records`): one row for all the claims it ended, not a second
update of each."""

workers = Table(
    "novaconsole_workers",
    metadata,
    Column("worker_id", String(WORKER_ID_LENGTH), primary_key=True),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("last_beat", UtcDateTime(), nullable=False),
    Column("state", String(20), nullable=False),
    Column("in_flight", Integer, nullable=False),
    Column("processed", BigInteger, nullable=False),
    Column("lease", Float, nullable=False),
)
"""One row per worker (``host:pid``), written at each heartbeat (database clock); it is dead
when silent for longer than its ``lease`` (seconds)."""

commands = Table(
    "novaconsole_commands",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("kind", String(50), nullable=False),
    Column("args", JSON, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("taken_by", String(WORKER_ID_LENGTH)),
    Column("taken_at", UtcDateTime()),
    Index("ix_novaconsole_commands_taken_by", "taken_by"),
)
"""Fleet commands (``run_once``), each taken by exactly one worker."""

REASON_LENGTH = 500

pauses = Table(
    "novaconsole_pauses",
    metadata,
    Column("scope", String(20), primary_key=True),
    Column("name", String(HANDLER_LENGTH), primary_key=True),
    Column("paused_by", String(WORKER_ID_LENGTH)),
    Column("paused_at", UtcDateTime()),
    Column("reason", String(REASON_LENGTH)),
    Column("resumes_at", UtcDateTime()),
)
"""Who paused a ``novaconsole_controls`` row (same scope and name), when, why and until when
(database clock; ``NULL``: until resumed by hand). Deleted when it is resumed."""

audit = Table(
    "novaconsole_audit",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("by", String(WORKER_ID_LENGTH), nullable=False),
    Column("what", String(50), nullable=False),
    Column("handler", String(HANDLER_LENGTH)),
    Column("old", String(200)),
    Column("new", String(200)),
    Column("detail", String(REASON_LENGTH)),
)
"""Who changed which control, when, from what to what (the latest few hundred are kept)."""

retries = Table(
    "novaconsole_retries",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("handler", String(HANDLER_LENGTH), nullable=False),
    Column("item_id", String(ITEM_ID_LENGTH), nullable=False),
    Column("requested_by", String(WORKER_ID_LENGTH), nullable=False),
    Column("requested_at", UtcDateTime(), nullable=False),
    Column("state", String(20), nullable=False),
    Column("detail", String(REASON_LENGTH)),
    Column("taken_by", String(WORKER_ID_LENGTH)),
    Column("updated_at", UtcDateTime()),
    Index("ix_novaconsole_retries_taken_by", "taken_by"),
)
"""Operator retry requests and what became of them (see
:data:`novaconsole.engine.operator.RETRY_STATES`); taken by one worker each."""

breakers = Table(
    "novaconsole_breakers",
    metadata,
    Column("handler", String(HANDLER_LENGTH), primary_key=True),
    Column("worker_id", String(WORKER_ID_LENGTH), primary_key=True),
    Column("state", String(20), nullable=False),
    Column("reason", Text),
    Column("tripped_at", UtcDateTime()),
    Column("retry_in", Float),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("reset_by", String(WORKER_ID_LENGTH)),
    Column("reset_at", UtcDateTime()),
)
"""Circuit breakers a worker has open (``tripped``, or ``trial``), written when one changes
and every few seconds while open, deleted when it closes; an operator's reset sets
``reset_by``/``reset_at`` and the worker closes it within a sync or two. A row not written
for :data:`~novaconsole.store.breakers.STALE` is a dead worker's."""
