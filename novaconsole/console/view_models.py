"""What the console shows, computed from snapshots, outcomes and log records.

Pure functions and frozen dataclasses: no Textual here, so every rule of presentation can be
unit-tested without running an app. Widgets turn these into cells, strips and lines.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from itertools import pairwise

from rich.cells import cell_len, chop_cells, set_cell_size

from novaconsole.engine.core import describe
from novaconsole.engine.handler import HandlerPurpose
from novaconsole.engine.operator import PauseInfo, ago, describe_pause
from novaconsole.engine.outcomes import ItemOutcome, OutcomeStatus
from novaconsole.engine.snapshot import HandlerView, Percentiles, Snapshot
from novaconsole.redaction import neutralise_controls, redact

NOT_OK_STATUSES = frozenset(
    {OutcomeStatus.FAILED, OutcomeStatus.TIMED_OUT, OutcomeStatus.CANCELLED}
)
"""Statuses the "failed only" filter keeps: the item did not get done."""

STATUS_LABELS: dict[OutcomeStatus, str] = {
    OutcomeStatus.SUCCEEDED: "succeeded",
    OutcomeStatus.FAILED: "failed",
    OutcomeStatus.TIMED_OUT: "timeout",
    OutcomeStatus.SKIPPED: "skipped",
    OutcomeStatus.CANCELLED: "cancelled",
}


# --- numbers and times -------------------------------------------------------------------


def format_seconds(seconds: float | None) -> str:
    """A duration as a short human figure: ``850 µs``, ``12 ms``, ``1.5 s``, ``2m 05s``."""
    if seconds is None:
        return "-"
    if seconds < 0:
        seconds = 0.0
    if seconds < 0.001:
        return f"{seconds * 1_000_000:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_ago(moment: datetime | None, now: datetime) -> str:
    """How long ago ``moment`` was, as ``3 s ago``; ``never`` for None."""
    if moment is None:
        return "never"
    elapsed = (now - moment).total_seconds()
    if elapsed < 1:
        return "just now"
    return f"{format_seconds(elapsed)} ago"


def format_clock(moment: datetime, tz: tzinfo | None) -> str:
    """Wall-clock ``HH:MM:SS`` of an aware datetime in ``tz`` (None: the local zone)."""
    return moment.astimezone(tz).strftime("%H:%M:%S")


def format_count(value: float) -> str:
    """``1,234`` for counts; one decimal below 10 for rates."""
    if value < 10 and value != int(value):
        return f"{value:.1f}"
    return f"{value:,.0f}"


def one_line(text: str | None, limit: int = 200) -> str:
    """The first line of ``text``, shortened to ``limit`` characters."""
    if not text:
        return ""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


# --- status bar --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusField:
    """One field of the status bar: ``label`` (muted, may be empty) and ``value``.

    ``priority``: which fields stay on a narrow terminal (lowest first). ``shrink``: the
    value may be shortened (with an ellipsis) to as few as this many characters; 0 keeps it
    whole or drops it. ``compact``: the length a shrinkable value gets until every field
    of a higher or equal priority had its turn (0: no limit)."""

    key: str
    label: str
    value: str
    priority: int
    shrink: int = 0
    compact: int = 0

    def cost(self, length: int | None = None) -> int:
        """Cells taken with the value ``length`` long: two spaces, the label, the value."""
        size = len(self.value) if length is None else length
        return 2 + (len(self.label) + 1 if self.label else 0) + size


@dataclass(frozen=True, slots=True)
class StatusView:
    """The one-line summary at the top: service state and where it runs."""

    state: str
    """``running``, ``paused``, ``draining``, ``starting`` or ``stopped``."""
    cycle: int
    next_poll: str
    concurrency: str
    database: str
    worker_id: str
    fleet: str = ""
    """``3/4 alive`` when other workers share the database (empty when alone)."""
    filter: str = ""
    """The results filter and search in words (empty when every result shows)."""
    pause: str = ""
    """Who paused everything, when, why, until when (empty unless paused)."""
    pause_reason: str = ""
    """Why everything is paused (first line; empty when no reason was given)."""
    pause_until: str = ""
    """``14:00`` when the pause of everything ends by itself (empty: until resumed)."""
    pause_by: str = ""
    """``console@ops1 3 min ago``: who paused everything and when."""
    paused_handlers: str = ""
    """``Export: db maintenance, until 14:00`` (one handler paused with a reason or an
    expiry), ``Export, Import`` (several); empty when none says more than its state."""
    read_only: bool = False
    """The console offers no change (``serve --read-only``): said first, never shortened."""

    @property
    def label(self) -> str:
        return "draining…" if self.state == "draining" else self.state

    @property
    def status_fields(self) -> tuple[StatusField, ...]:
        """Every field after the state, in display order, with its priority."""
        paused = self.state == "paused"
        candidates = (
            StatusField("read-only", "", "read-only" if self.read_only else "", 0),
            StatusField("reason", "reason", self.pause_reason, 1, shrink=10, compact=24),
            StatusField("until", "until", self.pause_until, 2),
            StatusField("handlers", "paused", self.paused_handlers, 3, shrink=12, compact=30),
            StatusField("filter", "filter", self.filter, 4, shrink=8, compact=24),
            StatusField("by", "by", self.pause_by, 7),
            StatusField("cycle", "cycle", str(self.cycle), 9),
            StatusField("next poll", "next poll", "" if paused else self.next_poll, 5),
            StatusField("concurrency", "concurrency", self.concurrency, 6),
            StatusField("worker", "worker", self.worker_id, 10, shrink=8),
            StatusField("fleet", "fleet", self.fleet, 8),
            StatusField("db", "db", self.database, 11, shrink=12),
        )
        return tuple(f for f in candidates if f.value)

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        """(label, value) pairs after the state, in display order, all of them."""
        return tuple((f.label, f.value) for f in self.status_fields)

    def fit(self, width: int) -> tuple[tuple[str, str], ...]:
        """The (label, value) pairs that fit ``width`` cells after the state: see
        :func:`fit_fields`."""
        return fit_fields(self.status_fields, width)


STATUS_DETAIL = 7
"""Status fields of this priority or lower (who paused, fleet, cycle, worker, database)
give way to a more important field that would otherwise be shortened."""


def fit_fields(fields: Sequence[StatusField], width: int) -> tuple[tuple[str, str], ...]:
    """(label, value) of the ``fields`` that fit ``width`` cells, in their order.

    1. By priority, each field is taken at its least useful length (whole; a shrinkable one
       at its ``compact`` length, or at ``shrink`` characters when that is all that fits),
       or left out when even that does not fit.
    2. By priority, the shortened ones get their room back; a field above
       :data:`STATUS_DETAIL` that can be made whole by leaving details out (the lowest
       first) leaves them out, so a long reason beats the database name.
    3. Details left out that fit again in what remains come back, as in 1 and 2."""
    lengths: dict[int, int] = {}
    by_priority = sorted(range(len(fields)), key=lambda i: fields[i].priority)
    room = width

    def take(index: int) -> None:
        nonlocal room
        field = fields[index]
        whole = len(field.value)
        first = min(whole, field.compact or (field.shrink or whole))
        for length in (first, min(whole, field.shrink)) if field.shrink else (whole,):
            if length and field.cost(length) <= room:
                lengths[index] = length
                room -= field.cost(length)
                return

    def grow(index: int, *, drop: bool) -> None:
        nonlocal room
        need = len(fields[index].value) - lengths[index]
        if drop and need > room and fields[index].priority < STATUS_DETAIL:
            details = [
                i
                for i in reversed(by_priority)
                if i in lengths and fields[i].priority >= STATUS_DETAIL
            ]
            if room + sum(fields[i].cost(lengths[i]) for i in details) >= need:
                for i in details:
                    if room >= need:
                        break
                    room += fields[i].cost(lengths.pop(i))
        step = min(room, need)
        lengths[index] += step
        room -= step

    for index in by_priority:
        take(index)
    for index in by_priority:
        if index in lengths:
            grow(index, drop=True)
    for index in by_priority:
        if index not in lengths:
            take(index)
    for index in by_priority:
        if index in lengths:
            grow(index, drop=False)
    return tuple(
        (fields[i].label, fit(fields[i].value, lengths[i]).rstrip())
        for i in range(len(fields))
        if i in lengths
    )


def status_view(
    snapshot: Snapshot,
    *,
    quitting: bool = False,
    filter: str = "",
    now: datetime | None = None,
    tz: tzinfo | None = None,
    read_only: bool = False,
) -> StatusView:
    """The status bar for ``snapshot``; ``quitting`` shows draining before the service says so;
    ``filter`` names the results filter; ``now`` dates the pause ("by … 3 min ago"); ``tz``:
    the zone of wall-clock times (None: the local one); ``read_only``: no change offered."""
    state = "draining" if quitting and snapshot.state != "stopped" else snapshot.state
    if state == "running" and snapshot.paused:
        state = "paused"
    if state in ("draining", "stopped"):
        next_poll = "-"
    elif snapshot.paused:
        next_poll = "paused"
    else:
        next_poll = format_seconds(snapshot.next_poll_in)
    moment = now or datetime.now(UTC)
    info = snapshot.pause if snapshot.paused else None
    return StatusView(
        state=state,
        cycle=snapshot.cycles,
        next_poll=next_poll,
        concurrency=changed_value(snapshot.concurrency, snapshot.configured_concurrency),
        database=snapshot.database,
        worker_id=snapshot.worker_id,
        fleet=fleet_summary(snapshot),
        filter=filter,
        pause=pause_text("everything", info, now) if snapshot.paused else "",
        pause_reason=one_line(info.reason, 300) if info is not None else "",
        pause_until=pause_until(info, moment, tz),
        pause_by=pause_by(info, moment),
        paused_handlers=paused_handlers(snapshot, moment, tz),
        read_only=read_only,
    )


def pause_until(info: PauseInfo | None, now: datetime, tz: tzinfo | None) -> str:
    """``14:00`` (``14:00:05`` when seconds matter; a date too when not today) in ``tz``,
    when the pause ends by itself; "" otherwise."""
    if info is None or info.resumes_at is None:
        return ""
    local, today = info.resumes_at.astimezone(tz), now.astimezone(tz)
    shown = local.strftime("%H:%M:%S" if local.second else "%H:%M")
    return shown if local.date() == today.date() else f"{local:%Y-%m-%d} {shown}"


def pause_by(info: PauseInfo | None, now: datetime) -> str:
    """``console@ops1 3 min ago``: who paused and when, as far as known ("" if neither)."""
    if info is None:
        return ""
    parts = [info.by] if info.by else []
    if info.at is not None:
        parts.append(ago(now - info.at))
    return " ".join(parts)


def paused_handlers(snapshot: Snapshot, now: datetime, tz: tzinfo | None) -> str:
    """The handlers paused with a reason or an expiry (what their state cell cannot say):
    ``Export: db maintenance, until 14:00`` for one, ``Export, Import`` for several."""
    said = [
        view
        for view in snapshot.handlers.values()
        if view.paused and view.pause is not None and (view.pause.reason or view.pause.resumes_at)
    ]
    if not said:
        return ""
    if len(said) > 1:
        return ", ".join(view.name for view in said)
    view = said[0]
    assert view.pause is not None
    words = [one_line(view.pause.reason, 300)] if view.pause.reason else []
    if until := pause_until(view.pause, now, tz):
        words.append(f"until {until}")
    return f"{view.name}: {', '.join(words)}"


def pause_text(
    subject: str, info: PauseInfo | None, now: datetime | None, tz: tzinfo | None = None
) -> str:
    """``describe_pause`` without the bare "paused" the state already says ("" then), its
    expiry in ``tz`` (None: the local zone)."""
    if info is None:
        return ""
    moment = now or datetime.now(UTC)
    if tz is not None and info.resumes_at is not None:
        # describe_pause shows the expiry in the local zone: say it in tz instead.
        text = describe_pause(subject, replace(info, resumes_at=None), moment)
        text += f"; resumes at {pause_until(info, moment, tz)}"
    else:
        text = describe_pause(subject, info, moment)
    return "" if text == f"{subject} paused" else one_line(text, 300)


def dead_text(view: HandlerView) -> str:
    """``3 dead items returned by fetch_next`` (out of attempts, in its latest fetch: skipped
    until an operator retries them); "" when none."""
    if not view.dead_items:
        return ""
    items = "item" if view.dead_items == 1 else "items"
    return f"{view.dead_items} dead {items} returned by fetch_next"


def fleet_summary(snapshot: Snapshot) -> str:
    """``2/3 alive`` when the database is shared with other workers; empty when alone."""
    workers = snapshot.workers
    others = [w for w in workers if w.worker_id != snapshot.worker_id]
    if not others:
        return ""
    alive = sum(1 for w in workers if w.alive)
    return f"{alive}/{len(workers)} alive"


def changed_value(value: int, configured: int) -> str:
    """``8``, or ``12*`` when the value was changed at run time from what config says."""
    return str(value) if value == configured else f"{value}*"


# --- handlers ----------------------------------------------------------------------------

HANDLER_COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("name", "Handler", None),
    ("state", "State", 8),
    ("batch", "Batch", 6),
    ("in_flight", "In flight", 10),
    ("succeeded", "Succeeded", 9),
    ("failed", "Failed", 7),
    ("last_run", "Last run", 11),
    ("purpose", "Purpose", 9),
    ("last_error", "Last error", None),
)
"""(column key, header, width or None: the name fits its content, the error takes the rest)
of the handlers table, in display order."""

WHY_HEADER = "Why / last error"
"""The last column's header while some handler shown is paused or tripped with a why."""

HANDLER_PRIORITY = (
    "name",
    "state",
    "succeeded",
    "failed",
    "in_flight",
    "batch",
    "last_error",
    "last_run",
    "purpose",
)
"""Which handler columns stay when the table is narrow: the first ones."""

CELL_PADDING = 2
"""Cells a DataTable adds to every column (one space either side)."""

MIN_ERROR_WIDTH = 16
"""The last error column is shown only with at least this many cells."""

WHY_WIDTH = 40
"""Cells a why keeps (as many as it needs, up to this) before the columns after the counts
may have theirs: in flight, batch, last run, purpose."""

WHY_BEFORE = frozenset({"name", "state"})
"""The columns a why never pushes out; the counts make way for its first
:data:`MIN_ERROR_WIDTH` cells, the rest for :data:`WHY_WIDTH`."""

WHY_LINES = 2
"""Lines a handler row may take to say why it is paused or tripped (wrapped, then cut)."""


def handler_columns(
    width: int, name_width: int, why_width: int = 0
) -> tuple[tuple[str, str, int], ...]:
    """The handler columns that fit ``width`` cells, by :data:`HANDLER_PRIORITY`, each with
    its width; the last error (if shown) takes whatever the others leave.

    ``why_width``: the longest why (pause reason, tripped breaker) among the rows shown, 0 for
    none. With one, the last column is headed :data:`WHY_HEADER` and comes before every
    column but the name and state: the counts join only with :data:`MIN_ERROR_WIDTH` cells
    left for it, the columns after them only with up to :data:`WHY_WIDTH` (what the longest
    why needs). An operator asks why a handler is paused before its counts, which do not
    move while it is."""
    widths = {key: fixed for key, _, fixed in HANDLER_COLUMNS if fixed is not None}
    widths["name"] = max(7, min(name_width, 28))
    keep_counts = MIN_ERROR_WIDTH + CELL_PADDING if why_width > 0 else 0
    keep_rest = max(MIN_ERROR_WIDTH, min(why_width, WHY_WIDTH)) + CELL_PADDING if why_width else 0
    chosen: set[str] = set()
    used = 0
    for key in HANDLER_PRIORITY:
        if key == "last_error":
            continue
        need = widths[key] + CELL_PADDING
        if key in WHY_BEFORE:
            keep = 0
        else:
            keep = keep_counts if key in ("succeeded", "failed") else keep_rest
        if used + need + keep > width and key != "name":
            break
        chosen.add(key)
        used += need
    room = width - used - CELL_PADDING
    if room >= MIN_ERROR_WIDTH:
        chosen.add("last_error")
        widths["last_error"] = room
    header = {"last_error": WHY_HEADER} if why_width > 0 else {}
    return tuple(
        (key, header.get(key, title), widths[key])
        for key, title, _ in HANDLER_COLUMNS
        if key in chosen
    )


def note_lines(text: str, width: int, lines: int = WHY_LINES) -> tuple[str, ...]:
    """``text`` wrapped at word boundaries into at most ``lines`` lines of at most ``width``
    cells, the last ending in an ellipsis when some is left out."""
    if width <= 0 or lines <= 0:
        return ()
    wrapped = [
        piece  # textwrap counts characters: a line of wide ones is chopped again, by cells
        for line in textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False)
        for piece in (chop_cells(line, width) if cell_len(line) > width else [line])
    ]
    if len(wrapped) <= lines:
        return tuple(wrapped) or ("",)
    head = wrapped[: lines - 1]
    rest = " ".join(wrapped[lines - 1 :])
    return (*head, fit(rest, width).rstrip())


def counts_label(snapshot: Snapshot) -> str:
    """What the handler counts cover: ``total`` (from the database, across restarts) when the
    snapshot says so, else ``since start`` (this process)."""
    if getattr(snapshot, "counts_are_totals", False) or snapshot.worker_id == "attached":
        return "total"
    return "since start"


STATE_TONES = {
    "active": "success",
    "paused": "warning",
    "disabled": "muted",
    "failing": "error",
    "tripped": "error",
}


@dataclass(frozen=True, slots=True)
class HandlerRow:
    """One handler as the table shows it; ``cells`` follow :data:`HANDLER_COLUMNS`."""

    name: str
    state: str
    paused: bool
    cells: tuple[str, ...]
    why: bool = False
    """The last cell says why it is paused (a reason or an expiry) or tripped: it may take
    :data:`WHY_LINES` lines and the column comes before the counts."""

    @property
    def tone(self) -> str:
        """The theme colour of the state cell: success, warning, error or muted."""
        return STATE_TONES.get(self.state, "muted")

    @property
    def controls(self) -> tuple[str, str]:
        """State and batch size: what an operator changes, so shown without delay."""
        return self.cells[1], self.cells[2]


def handler_row(view: HandlerView, now: datetime, tz: tzinfo | None = None) -> HandlerRow:
    """The table row of one handler (``tz``: the zone of a pause's expiry)."""
    in_flight = str(view.in_flight) if not view.queued else f"{view.in_flight} (+{view.queued})"
    if view.retrying:
        in_flight += f" ↻{view.retrying}"
    why = bool(view.breaker_reason) or (
        view.paused and view.pause is not None and bool(view.pause.reason or view.pause.resumes_at)
    )
    note = handler_note(view, now, tz) or ""
    return HandlerRow(
        name=view.name,
        state=view.state,
        paused=view.paused,
        cells=(
            view.name,
            view.state,
            changed_value(view.batch_size, view.configured_batch_size),
            in_flight,
            format_count(view.succeeded),
            format_count(view.failed),
            format_ago(view.last_run, now),
            view.purpose.value,
            flat(note, WHY_LIMIT) if why else one_line(note, 300),
        ),
        why=why,
    )


WHY_LIMIT = 600
"""Characters of a why kept for the table (a stored reason has at most 500)."""


def flat(text: str, limit: int) -> str:
    """``text`` on one line (every run of whitespace, newlines included, one space), control
    characters shown as escapes, shortened to ``limit`` characters."""
    return one_line(" ".join(neutralise_controls(text).split()), limit)


def pause_why(info: PauseInfo, now: datetime, tz: tzinfo | None) -> str:
    """Why and until when a handler is paused, then who paused it and when: ``db maintenance
    · until 14:00 · by cli@ops1 12 min ago`` (the why first, so that a narrow column keeps it)."""
    words = [info.reason] if info.reason else []
    if until := pause_until(info, now, tz):
        words.append(f"until {until}")
    if by := pause_by(info, now):
        words.append(f"by {by}")
    return " · ".join(words)


def handler_note(view: HandlerView, now: datetime, tz: tzinfo | None = None) -> str | None:
    """The handler row's last column: why it is tripped or paused, dead items it returns,
    else its last error."""
    if view.breaker_reason:
        return view.breaker_reason
    if view.paused and view.pause is not None and (why := pause_why(view.pause, now, tz)):
        return why
    return dead_text(view) or view.last_error


def handler_rows(
    snapshot: Snapshot,
    now: datetime,
    purpose: HandlerPurpose | None = None,
    tz: tzinfo | None = None,
) -> list[HandlerRow]:
    """Rows of every handler (of ``purpose`` only, if given), in registration order."""
    return [
        handler_row(view, now, tz)
        for view in snapshot.handlers.values()
        if purpose is None or view.purpose is purpose
    ]


def next_batch_size(size: int, direction: int) -> int:
    """The batch size one step up (``direction`` 1) or down (-1): steps of ~10 %, at least 1."""
    step = max(1, size // 10)
    return size + step if direction > 0 else max(1, size - step)


# --- queue -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueView:
    """The queue panel: depth, workers, throughput and latency."""

    depth: int
    capacity: int
    depth_text: str
    workers_text: str
    rate_text: str
    throughput: tuple[float, ...]
    last_cycle: str
    latency: tuple[tuple[str, str, str], ...]
    """(stage, p50, p95) for fetch, queue and process: ``("queue", "120 ms", "480 ms")``."""


def _percentiles(stage: str, p: Percentiles) -> tuple[str, str, str]:
    return stage, format_seconds(p.p50), format_seconds(p.p95)


LATENCY_LABEL_WIDTH = 8
"""Cells of the latency table's first column: `` process`` and a space."""
LATENCY_FIGURE_WIDTH = 6
"""Cells of a latency figure in the table, at least: ``120 ms``, ``850 µs``, ``2m 05s``."""


def latency_table(rows: Sequence[tuple[str, str, str]], width: int) -> tuple[tuple[str, str], ...]:
    """The queue pane's latency as a table at most ``width`` cells wide: a heading, then a
    row per stage (``rows``: stage, p50, p95), each as (label, figures), the figures
    right-aligned under ``p50`` and ``p95`` in columns as wide as the longest figure (6 at
    least, so that they stay put as figures change), two cells apart::

        latency      p50     p95
         fetch      4 ms   21 ms
         queue    120 ms  480 ms
         process   11 ms   95 ms

    The unit is said in every figure (a stage in µs beside one in minutes), but once per
    figure rather than in a ``p50 / p95`` pair: ``process 165 ms / 293 ms`` filled the 24
    cells of the pane at 80 columns, and minutes (``5m 10s / 12m 05s``) were cut. When the
    figures do not fit with a gap of two, they lose their inner spaces (``12m05s``), then the
    gap narrows to one."""
    figures = [value for _, p50, p95 in rows for value in (p50, p95)]
    room = width - LATENCY_LABEL_WIDTH
    for compact, gap in ((False, 2), (True, 2), (True, 1)):
        shown = [value.replace(" ", "") if compact else value for value in figures]
        column = max((LATENCY_FIGURE_WIDTH, *(len(value) for value in shown))) + gap
        if 2 * column <= room or (compact and gap == 1):
            break
    cells = iter(shown)
    table = [("latency".ljust(LATENCY_LABEL_WIDTH), "p50".rjust(column) + "p95".rjust(column))]
    for stage, *_ in rows:
        label = f" {stage}".ljust(LATENCY_LABEL_WIDTH)
        table.append((label, next(cells).rjust(column) + next(cells).rjust(column)))
    return tuple(table)


def busy_line(workers: str, cycle: str, width: int) -> tuple[tuple[str, bool], ...]:
    """The queue pane's ``busy 3/8  cycle 512 ms`` line in at most ``width`` cells, as
    (text, is a label) parts: the label under the others' (``depth``, ``items/s``) while it
    fits, else tighter, the figure's inner space last (``busy 16/16 cycle 1.5s``). At 80
    columns the pane has 24 cells and ``busy    0/4  cycle 513 ms`` (25) lost its unit."""
    forms = (
        ("busy".ljust(LATENCY_LABEL_WIDTH), "  cycle ", cycle),
        ("busy".ljust(LATENCY_LABEL_WIDTH), " cycle ", cycle),
        ("busy ", " cycle ", cycle),
        ("busy ", " cycle ", cycle.replace(" ", "")),
    )
    for label, middle, figure in forms:
        if len(label) + len(workers) + len(middle) + len(figure) <= width:
            break
    return ((label, True), (workers, False), (middle, True), (figure, False))


def queue_view(snapshot: Snapshot) -> QueueView:
    """The queue panel for ``snapshot``."""
    capacity = max(1, snapshot.queue_capacity)
    latency = snapshot.latency
    return QueueView(
        depth=min(snapshot.queue_depth, capacity),
        capacity=capacity,
        depth_text=f"{snapshot.queue_depth:,} / {capacity:,}",
        workers_text=f"{snapshot.in_flight}/{snapshot.concurrency}",
        rate_text=f"{format_count(snapshot.rate)}/s",
        throughput=snapshot.throughput,
        last_cycle=format_seconds(snapshot.last_cycle_duration),
        latency=(
            _percentiles("fetch", latency.fetch),
            _percentiles("queue", latency.queue),
            _percentiles("process", latency.process),
        ),
    )


# --- results -----------------------------------------------------------------------------


class ResultFilter(StrEnum):
    """Which results the results pane shows; ``f`` cycles through them in this order."""

    ALL = "all"
    FAILED = "failed only"
    HANDLER = "selected handler"

    def next(self) -> ResultFilter:
        members = list(ResultFilter)
        return members[(members.index(self) + 1) % len(members)]


def result_matches(
    outcome: ItemOutcome, mode: ResultFilter, handler: str | None, query: str = ""
) -> bool:
    """Whether the results pane shows ``outcome`` under ``mode`` (``handler``: the selected
    one) and the search ``query`` (found, ignoring case, in item id, handler or error)."""
    if mode is ResultFilter.FAILED and outcome.status not in NOT_OK_STATUSES:
        return False
    if mode is ResultFilter.HANDLER and outcome.handler != handler:
        return False
    if query:
        needle = query.casefold()
        return any(
            needle in text.casefold()
            for text in (str(outcome.item_id), outcome.handler, outcome.error or "")
        )
    return True


def filter_results(
    outcomes: Iterable[ItemOutcome], mode: ResultFilter, handler: str | None, query: str = ""
) -> list[ItemOutcome]:
    """The outcomes ``mode`` and ``query`` keep, in the order given."""
    if mode is ResultFilter.ALL and not query:
        return list(outcomes)
    return [o for o in outcomes if result_matches(o, mode, handler, query)]


def filter_label(mode: ResultFilter, handler: str | None, query: str = "") -> str:
    """The filter in words (empty when everything shows): ``failed only · /ISRC``."""
    parts = []
    if mode is ResultFilter.HANDLER:
        parts.append(handler or "no handler selected")
    elif mode is ResultFilter.FAILED:
        parts.append(mode.value)
    if query:
        parts.append(f"/{query}")
    return " · ".join(parts)


def filter_title(mode: ResultFilter, handler: str | None, query: str = "") -> str:
    """The results pane title for a filter: ``Results · failed only``."""
    label = filter_label(mode, handler, query)
    return f"Results · {label}" if label else "Results"


@dataclass(frozen=True, slots=True)
class ResultColumns:
    """Widths of the results columns for one terminal width; the error takes what is left."""

    status: int
    time: int
    handler: int
    item: int
    attempts: int
    duration: int
    error: int

    def widths(self) -> tuple[int, ...]:
        return (
            self.status,
            self.time,
            self.handler,
            self.item,
            self.attempts,
            self.duration,
            self.error,
        )


RESULT_HEADERS = ("Status", "Time", "Handler", "Item", "Try", "Duration", "Error")


def result_columns(width: int) -> ResultColumns:
    """Column widths that fit ``width`` cells (one space between shown columns); below 100
    cells the duration gives way (0: not shown) so that the error keeps some room."""
    handler = 18 if width >= 120 else 14
    item = 24 if width >= 150 else (20 if width >= 120 else 12)
    duration = 8 if width >= 100 else 0
    fixed = 9 + 8 + handler + item + 3 + duration + (6 if duration else 5)
    return ResultColumns(
        status=9,
        time=8,
        handler=handler,
        item=item,
        attempts=3,
        duration=duration,
        error=max(0, width - fixed),
    )


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One outcome as the results pane shows it; ``cells`` follow :data:`RESULT_HEADERS`."""

    status: OutcomeStatus
    cells: tuple[str, ...]


def result_row(outcome: ItemOutcome, tz: tzinfo | None) -> ResultRow:
    """The results pane row of one outcome."""
    return ResultRow(
        status=outcome.status,
        cells=(
            STATUS_LABELS[outcome.status],
            format_clock(outcome.finished_at, tz),
            outcome.handler,
            str(outcome.item_id),
            str(outcome.attempts),
            format_seconds(outcome.duration),
            one_line(outcome.error),
        ),
    )


def fit(text: str, width: int) -> str:
    """``text`` padded or shortened (with an ellipsis) to exactly ``width`` cells: a wide
    character (CJK, most emoji) takes two, and is never cut in half."""
    if width <= 0:
        return ""
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    return set_cell_size(text, width)


def distinct_failed(outcomes: Iterable[ItemOutcome], limit: int = 50) -> list[tuple[str, str]]:
    """(handler, item id) of the newest distinct failed items, for "Retry …" commands."""
    seen: dict[tuple[str, str], None] = {}
    for outcome in outcomes:
        if outcome.status in (OutcomeStatus.FAILED, OutcomeStatus.TIMED_OUT):
            seen.setdefault((outcome.handler, str(outcome.item_id)), None)
            if len(seen) >= limit:
                break
    return list(seen)


# --- detail ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptRow:
    number: str
    started: str
    duration: str
    result: str


def attempt_rows(outcome: ItemOutcome, tz: tzinfo | None) -> list[AttemptRow]:
    """Every attempt this process saw of ``outcome``, oldest first."""
    return [
        AttemptRow(
            number=str(attempt.number),
            started=attempt.started_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            duration=format_seconds(attempt.duration),
            result=(
                "timed out"
                if attempt.timed_out
                else (one_line(attempt.error, 300) if attempt.error else "succeeded")
            ),
        )
        for attempt in outcome.history
    ]


def detail_fields(outcome: ItemOutcome, tz: tzinfo | None) -> list[tuple[str, str]]:
    """(label, value) pairs describing ``outcome`` for the detail screen."""
    stamp = "%Y-%m-%d %H:%M:%S"
    return [
        ("Handler", outcome.handler),
        ("Item", str(outcome.item_id)),
        ("Status", outcome.status.value),
        ("Attempts", str(outcome.attempts)),
        ("Duration", format_seconds(outcome.duration)),
        ("Waited in queue", format_seconds(outcome.wait)),
        ("Started", outcome.started_at.astimezone(tz).strftime(stamp)),
        ("Finished", outcome.finished_at.astimezone(tz).strftime(stamp)),
    ]


# --- logs --------------------------------------------------------------------------------

_LOGGER_PREFIXES = (("novaconsole.handlers.", ""), ("novaconsole.", ""))


@dataclass(frozen=True, slots=True)
class LogLine:
    """One log record as a line of the log pane; ``level`` selects its colour."""

    level: str
    text: str


def short_logger_name(name: str) -> str:
    """``novaconsole.engine`` → ``engine``; handler loggers lose their prefix too."""
    for prefix, replacement in _LOGGER_PREFIXES:
        if name.startswith(prefix):
            return replacement + name[len(prefix) :]
    return name


def log_line(record: logging.LogRecord, tz: tzinfo | None) -> LogLine:
    """Format a record: time, level, logger, ``[handler item]`` when known, message; redacted
    like every line the headless logs write (a handler's message is item data)."""
    moment = datetime.fromtimestamp(record.created, tz).strftime("%H:%M:%S")
    handler = getattr(record, "handler", None)
    item_id = getattr(record, "item_id", None)
    logger = short_logger_name(record.name)
    parts = [str(handler)] if handler is not None and str(handler) != logger else []
    if item_id is not None:
        parts.append(f"#{item_id}")
    where = f" [{' '.join(parts)}]" if parts else ""
    try:
        message = record.getMessage()
    except (TypeError, ValueError):
        message = str(record.msg)
    lines = message.splitlines() or [""]
    text = f"{moment} {record.levelname:<7} {logger}{where} {lines[0]}"
    if record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        described = describe(error)
        if described not in text:
            text += f" ({described})"
    return LogLine(level=record.levelname, text=redact(text))


def log_lines(records: Sequence[logging.LogRecord], tz: tzinfo | None) -> list[LogLine]:
    return [log_line(record, tz) for record in records]


# --- fleet -------------------------------------------------------------------------------

FLEET_ROWS = 6
"""Workers listed at most in the fleet pane (the alive ones first)."""


def shows_fleet(snapshot: Snapshot) -> bool:
    """The fleet pane is shown when other workers share the database, or when attached."""
    return snapshot.worker_id == "attached" or bool(fleet_summary(snapshot))


def fleet_rows(snapshot: Snapshot, now: datetime) -> tuple[str, ...]:
    """One line per worker: id (``*`` marks this one), state, in flight, processed and how
    long ago it was last heard of; the alive first, at most :data:`FLEET_ROWS`."""
    workers = sorted(snapshot.workers, key=lambda w: (not w.alive, w.worker_id))
    lines = []
    for worker in workers[:FLEET_ROWS]:
        me = "*" if worker.worker_id == snapshot.worker_id else " "
        state = worker.state if worker.alive or worker.state == "stopped" else "dead"
        heard = format_seconds(max((now - worker.last_beat).total_seconds(), 0.0))
        lines.append(
            f"{me}{worker.worker_id:<28} {state:<9} in flight {worker.in_flight:<5} "
            f"processed {worker.processed:<9} beat {heard} ago"
        )
    if len(workers) > FLEET_ROWS:
        lines.append(f"  … and {len(workers) - FLEET_ROWS} more")
    return tuple(lines)


# --- stats -------------------------------------------------------------------------------

STATS_BUCKET = 5.0
"""Seconds between two samples of the stats history."""
STATS_WINDOW = 600.0
"""Seconds of history the stats screen plots (ten minutes)."""


@dataclass(frozen=True, slots=True)
class StatsSample:
    """What the console read at one instant: finished items per handler, process latency."""

    at: datetime
    counts: tuple[tuple[str, int], ...]
    """(handler, succeeded + failed + skipped)."""
    p50: float
    p95: float
    latency: tuple[tuple[str, float, float, int], ...] = ()
    """(handler, process p50, p95, items they cover: 0 when none finished lately)."""


def stats_sample(snapshot: Snapshot, at: datetime) -> StatsSample:
    """A sample of ``snapshot`` taken at ``at``."""
    return StatsSample(
        at=at,
        counts=tuple(
            (name, view.succeeded + view.failed + view.skipped)
            for name, view in snapshot.handlers.items()
        ),
        p50=snapshot.latency.process.p50,
        p95=snapshot.latency.process.p95,
        latency=tuple(
            (name, view.latency.p50, view.latency.p95, view.latency_samples)
            for name, view in snapshot.handlers.items()
        ),
    )


@dataclass(frozen=True, slots=True)
class HandlerRate:
    """One handler's items per second, one value per sample interval, oldest first."""

    name: str
    rates: tuple[float, ...]

    @property
    def now(self) -> float:
        return self.rates[-1] if self.rates else 0.0

    @property
    def peak(self) -> float:
        return max(self.rates, default=0.0)


def handler_rates(samples: Sequence[StatsSample]) -> list[HandlerRate]:
    """Items per second of each handler between consecutive samples (a count that went down,
    as after a restart, counts as nothing finished)."""
    names: dict[str, list[float]] = {}
    for before, after in pairwise(samples):
        seconds = (after.at - before.at).total_seconds()
        if seconds <= 0:
            continue
        previous = dict(before.counts)
        for name, count in after.counts:
            rates = names.setdefault(name, [])
            rates.append(max(0, count - previous.get(name, count)) / seconds)
    if samples:
        for name, _ in samples[-1].counts:
            names.setdefault(name, [])
    return [HandlerRate(name, tuple(rates)) for name, rates in names.items()]


def rate_scale(rates: Sequence[HandlerRate]) -> float:
    """The one top of every handler's items/s plot: the highest rate any handler reached in
    the window (0 when none finished anything), so that bars compare across handlers."""
    return max((rate.peak for rate in rates), default=0.0)


SPARK_BARS = "▁▂▃▄▅▆▇█"
"""A bar per height, lowest first (those of Textual's Sparkline)."""


def scaled_bars(values: Sequence[float], width: int, top: float) -> tuple[tuple[str, float], ...]:
    """``values`` (oldest first) as ``width`` bars on the scale 0 to ``top``: each bar the
    largest value of its share of ``values``, as (bar, height from 0 to 1). Unlike Textual's
    Sparkline, which stretches every plot between its own lowest and highest value, a bar
    here is as tall as its value is to ``top``: two plots with one ``top`` compare. No
    values, or a ``top`` of 0: lowest bars."""
    if width <= 0:
        return ()
    if not values or top <= 0:
        return ((SPARK_BARS[0], 0.0),) * width
    count = len(values)
    bars = []
    for index in range(width):
        start = index * count // width
        end = max(start + 1, (index + 1) * count // width)
        height = min(max(max(values[start:end]) / top, 0.0), 1.0)
        bars.append((SPARK_BARS[round(height * (len(SPARK_BARS) - 1))], height))
    return tuple(bars)


def rates_heading(samples: Sequence[StatsSample], top: float) -> str:
    """``Items/s per handler, one scale: █ 2,000/s · last 10m 00s`` (``top``: a full bar)."""
    heading = scale_heading("Items/s per handler", top, f"{format_count(top)}/s")
    return f"{heading} · {window_label(samples)}"


def scale_heading(title: str, top: float, shown: str) -> str:
    """``title, one scale: █ shown`` (``shown``: ``top``, a full bar, as text); ``title``
    alone while nothing is plotted (``top`` 0)."""
    return f"{title}, one scale: █ {shown}" if top > 0 else title


def latency_series(samples: Sequence[StatsSample]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Process latency p50 and p95 of every sample, oldest first."""
    return tuple(s.p50 for s in samples), tuple(s.p95 for s in samples)


@dataclass(frozen=True, slots=True)
class HandlerLatencySeries:
    """One handler's process latency p50 and p95 at every sample, oldest first (0 where it
    finished nothing lately), and its latest figures."""

    name: str
    p50: tuple[float, ...]
    p95: tuple[float, ...]
    now_p50: float | None
    """The latest sample's p50; None when it finished nothing lately."""
    now_p95: float | None

    @property
    def text(self) -> str:
        """``12 ms / 95 ms`` now, ``-`` when it finished nothing lately."""
        return self.text_within(None)

    def text_within(self, width: int | None) -> str:
        """:attr:`text` in ``width`` cells when it can be: see :func:`latency_pair`."""
        if self.now_p50 is None or self.now_p95 is None:
            return "-"
        return latency_pair(self.now_p50, self.now_p95, width)


def latency_pair(p50: float, p95: float, width: int | None = None) -> str:
    """``165 ms / 293 ms``; in fewer than its 15 cells (``width``, None for no limit), the
    unit once when both figures have it (``165 / 293 ms``), else the figures without their
    inner spaces (``850µs / 12ms``, then ``2m05s/12m05s``). The stats screen's 'now p50 /
    p95' column has 14 cells at 80 columns, and cut ``165 ms / 293 ms`` to ``165 ms / 293``."""
    low, high = format_seconds(p50), format_seconds(p95)
    forms = [f"{low} / {high}"]
    low_figure, _, low_unit = low.partition(" ")
    high_unit = high.partition(" ")[2]
    if low_unit == high_unit and low_unit.isalpha():
        forms.append(f"{low_figure} / {high}")
    packed = (low.replace(" ", ""), high.replace(" ", ""))
    forms += [" / ".join(packed), "/".join(packed)]
    return next((form for form in forms if width is None or len(form) <= width), forms[-1])


def handler_latencies(samples: Sequence[StatsSample]) -> list[HandlerLatencySeries]:
    """Each handler's latency over the samples, in the order of the latest sample (a
    handler missing from a sample counts as finishing nothing then)."""
    if not samples:
        return []
    names = [name for name, *_ in samples[-1].latency]
    series: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in names}
    for sample in samples:
        seen = {name: (p50, p95, count) for name, p50, p95, count in sample.latency}
        for name, (p50s, p95s) in series.items():
            p50, p95, count = seen.get(name, (0.0, 0.0, 0))
            p50s.append(p50 if count else 0.0)
            p95s.append(p95 if count else 0.0)
    last = {name: (p50, p95, count) for name, p50, p95, count in samples[-1].latency}
    return [
        HandlerLatencySeries(
            name=name,
            p50=tuple(p50s),
            p95=tuple(p95s),
            now_p50=last[name][0] if last[name][2] else None,
            now_p95=last[name][1] if last[name][2] else None,
        )
        for name, (p50s, p95s) in series.items()
    ]


def latency_scale(
    service: Sequence[Sequence[float]], handlers: Sequence[HandlerLatencySeries]
) -> float:
    """The one top of every latency plot on the stats screen: the highest p50 or p95 of the
    service (``service``: its p50 and p95 series) or of any handler in the window, 0 when
    nothing finished. p50 and p95 on one scale, p50 never draws taller than p95; handlers
    on one scale, a 2 ms handler draws lower than a 300 ms one (each plot stretched between
    its own lowest and highest value drew a flat 2 ms at the bottom and 20-35 ms full)."""
    values = [*service, *(s.p50 for s in handlers), *(s.p95 for s in handlers)]
    return max((max(series, default=0.0) for series in values), default=0.0)


def latency_heading(title: str, top: float) -> str:
    """``Process latency per handler, one scale: █ 495 ms`` (``top``: a full bar)."""
    return scale_heading(title, top, format_seconds(top))


def window_label(samples: Sequence[StatsSample]) -> str:
    """How much time the samples cover: ``last 10m 00s``."""
    if len(samples) < 2:
        return "collecting…"
    return f"last {format_seconds((samples[-1].at - samples[0].at).total_seconds())}"
