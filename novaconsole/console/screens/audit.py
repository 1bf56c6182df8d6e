"""The audit history (key ``A``): who changed which control, when, old → new, newest first;
the same entries as ``novaconsole audit --json``. Text that came from an operator or a worker
(who, a pause's reason) is shown with secrets masked and control characters neutralised."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Static

from novaconsole.engine.operator import AuditEntry
from novaconsole.redaction import redact

AUDIT_COLUMNS = ("When", "Who", "Change", "Detail")
AUDIT_LIMIT = 200
"""Entries the screen loads (the database keeps the latest 500)."""

Loader = Callable[[], Awaitable[list[AuditEntry]]]


@dataclass(frozen=True, slots=True)
class AuditRow:
    key: str
    cells: tuple[str, ...]


def _line(text: str | None, width: int) -> str:
    shown = " ".join(redact(text or "").split())
    return shown if len(shown) <= width else shown[: width - 1] + "…"


def _when(entry: AuditEntry, tz: tzinfo | None) -> str:
    return f"{entry.at.astimezone(tz):%Y-%m-%d %H:%M:%S}"


def describe_entry(entry: AuditEntry, width: int = 60) -> str:
    """What changed, in one line: "pause NotificationExport: running → paused",
    "concurrency: 8 → 12", "retry CatalogueImport"."""
    text = entry.what.replace("_", " ")
    if entry.handler:
        text += f" {_line(entry.handler, 40)}"
    if entry.old is not None or entry.new is not None:
        text += f": {_line(entry.old, 30) or 'as configured'} → {_line(entry.new, 30) or '-'}"
    return _line(text, width)


def audit_rows(entries: Sequence[AuditEntry], tz: tzinfo | None = None) -> list[AuditRow]:
    """One row per entry, newest first (``entries`` come oldest first, as stored); the key
    is the entry's index in ``entries``."""
    rows = [
        AuditRow(
            str(number),
            (_when(entry, tz), _line(entry.by, 30), describe_entry(entry), _line(entry.detail, 80)),
        )
        for number, entry in enumerate(entries)
    ]
    rows.reverse()
    return rows


def entry_text(entry: AuditEntry, tz: tzinfo | None = None) -> str:
    """One entry in full (the panel under the table): when, who, what, and its detail."""
    head = f"{_when(entry, tz)} · {_line(entry.by, 200)} · {describe_entry(entry, 300)}"
    detail = _line(entry.detail, 600)
    return f"{head}\n{detail}" if detail else head


def audit_summary(entries: Sequence[AuditEntry]) -> str:
    if not entries:
        return (
            "No control changes recorded yet: pauses, resumes, batch sizes, concurrency, "
            "run once, retries and breaker resets are kept here."
        )
    plural = "" if len(entries) == 1 else "s"
    return f"{len(entries)} change{plural}, newest first · r: reload · escape: back"


class AuditScreen(Screen[None]):
    """The audit history. ``load`` reads it again (``r``, and every ``refresh_every``
    seconds when given); ``tz`` is the time zone of the times shown (local by default)."""

    DEFAULT_CSS = """
    AuditScreen #audit-body { border: round $primary; padding: 0 1; }
    AuditScreen #audit-summary { margin-bottom: 1; }
    AuditScreen #audit-entries { height: 1fr; }
    AuditScreen #audit-detail {
        height: auto; max-height: 6; border-top: solid $primary; color: $text-muted;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back", id="close-audit"),
        Binding("r", "reload", "Reload", id="reload-audit"),
    ]

    def __init__(
        self,
        entries: Sequence[AuditEntry],
        load: Loader | None = None,
        tz: tzinfo | None = None,
        *,
        refresh_every: float | None = None,
    ) -> None:
        super().__init__()
        self.entries = list(entries)
        self._load = load
        self._tz = tz
        self._refresh_every = refresh_every
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="audit-body") as body:
            body.border_title = "Audit · who changed which control"
            yield Static(Text(audit_summary(self.entries)), id="audit-summary")
            yield DataTable[Text](id="audit-entries", cursor_type="row", zebra_stripes=True)
            yield Static(id="audit-detail")
        yield Footer()

    def on_mount(self) -> None:
        table: DataTable[Text] = self.query_one("#audit-entries", DataTable)
        table.add_columns(*AUDIT_COLUMNS)
        self._fill()
        table.focus()
        if self._refresh_every and self._load is not None:
            self._timer = self.set_interval(self._refresh_every, self.action_reload)

    def _fill(self) -> None:
        table: DataTable[Text] = self.query_one("#audit-entries", DataTable)
        table.clear()
        for row in audit_rows(self.entries, self._tz):
            table.add_row(*(Text(cell) for cell in row.cells), key=row.key)
        table.display = bool(self.entries)
        self.query_one("#audit-detail").display = bool(self.entries)
        self.query_one("#audit-summary", Static).update(Text(audit_summary(self.entries)))
        self._show_detail()

    @property
    def selected(self) -> AuditEntry | None:
        """The entry under the cursor."""
        table: DataTable[Text] = self.query_one("#audit-entries", DataTable)
        if not self.entries or table.cursor_row < 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.entries[int(key)] if key is not None else None

    @on(DataTable.RowHighlighted, "#audit-entries")
    def _show_detail(self) -> None:
        entry = self.selected
        detail = self.query_one("#audit-detail", Static)
        detail.update(Text(entry_text(entry, self._tz)) if entry is not None else "")

    def show(self, entries: Sequence[AuditEntry]) -> None:
        """Show ``entries`` (oldest first) instead; unchanged entries touch nothing."""
        if list(entries) != self.entries:
            self.entries = list(entries)
            self._fill()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "reload":
            return self._load is not None
        return True

    def action_reload(self) -> None:
        if self._load is not None:
            self.run_worker(self._reload(), group="audit-reload", exclusive=True)

    async def _reload(self) -> None:
        assert self._load is not None
        try:
            entries = await self._load()
        except Exception as error:
            self.notify(redact(str(error)), title="Audit", severity="error")
            return
        self.show(entries)

    def action_close(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.dismiss(None)


AUDIT_TIP = "Audit history: who changed which control, when, old → new (novaconsole audit)"


async def open_audit(app: App[Any], service: object) -> None:
    """Load the audit history from ``service`` (its ``audit(limit)``) and show it, or say in
    a notification why not; on the audit screen already, reload it."""
    load = getattr(service, "audit", None)
    if not callable(load):
        app.notify("No audit history on this console", title="Audit", severity="warning")
        return

    async def loader() -> list[AuditEntry]:
        entries: list[AuditEntry] = await load(AUDIT_LIMIT)
        return entries

    try:
        entries = await loader()
    except Exception as error:
        app.notify(redact(str(error)), title="Audit", severity="error")
        return
    if isinstance(app.screen, AuditScreen):
        app.screen.show(entries)
        return
    interval = getattr(app, "refresh_interval", None)
    tz = getattr(app, "tz", None)
    app.push_screen(AuditScreen(entries, loader, tz, refresh_every=2.0 if interval else None))
