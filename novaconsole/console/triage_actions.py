"""The console's side of the operator's toolkit: ``e`` failure groups (a group opens its items;
``t`` retries the whole group after a confirm stating the count), ``d`` peek at the selected
handler. A mixin of :class:`~novaconsole.console.app.NovaConsole`: it calls the service's
read model (``failure_groups``, ``failure_group``, ``peek``) and ``retry_item``, nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import tzinfo
from typing import TYPE_CHECKING, Any

from textual.binding import Binding

from novaconsole.console.screens.confirm import ConfirmScreen
from novaconsole.console.screens.failures import FailureGroupsScreen, FailureItemsScreen
from novaconsole.console.screens.peek import PeekScreen
from novaconsole.console.triage_view_models import retry_question
from novaconsole.triage import FailureGroup

if TYPE_CHECKING:
    from textual.app import App

    _Base = App[int]
else:
    _Base = object

TIPS = {
    "e": "Failed items grouped by handler, exception and message; a group retries at once",
    "d": "Peek: what the selected handler's fetch_next would return now (rolled back)",
}

BINDINGS = [
    Binding(
        "e", "failure_groups", "Failures", id="failure-groups", priority=True, tooltip=TIPS["e"]
    ),
    Binding("d", "peek", "Peek", id="peek-handler", priority=True, tooltip=TIPS["d"]),
]


class TriageActions(_Base):
    """Failure groups and peek for :class:`NovaConsole` (which provides ``service`` and ``tz``)."""

    service: Any
    tz: tzinfo | None

    def _service_call(self, name: str) -> Callable[..., Awaitable[Any]] | None:
        call = getattr(self.service, name, None)
        if call is None:
            self.notify("Not available on an attached console", severity="warning")
        return call

    # ------------------------------------------------------------------ failure groups

    def action_failure_groups(self) -> None:
        self.run_worker(self._failure_groups(), group="triage", exclusive=True)

    async def _failure_groups(self) -> None:
        if (load := self._service_call("failure_groups")) is None:
            return
        try:
            groups: list[FailureGroup] = await load()
        except Exception as error:
            self.notify(str(error), title="Failure groups", severity="error")
            return
        self.push_screen(FailureGroupsScreen(groups, self, self.tz))

    def open_failure_group(self, group: FailureGroup) -> None:
        self.run_worker(self._open_group(group), group="triage", exclusive=True)

    async def _open_group(self, group: FailureGroup) -> None:
        if (load := self._service_call("failure_group")) is None:
            return
        found, items = await load(group.id)
        if found is None:
            self.notify("No failed items left in this group", title="Failure groups")
            return
        self.push_screen(FailureItemsScreen(found, items, self, self.tz))

    def retry_failure_group(self, group: FailureGroup) -> None:
        self.run_worker(self._ask_retry(group), group="triage", exclusive=True)

    async def _ask_retry(self, group: FailureGroup) -> None:
        if (load := self._service_call("failure_group")) is None:
            return
        found, items = await load(group.id)
        if found is None or not items:
            self.notify("No failed items left in this group", title="Retry")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._retry_all(found, items), group="retry")

        self.push_screen(ConfirmScreen(retry_question(found, len(items))), answered)

    async def _retry_all(self, group: FailureGroup, items: list[Any]) -> None:
        retried = 0
        for item in items:
            if await self.service.retry_item(item.handler, item.item_id):
                retried += 1
        left = len(items) - retried
        self.notify(
            f"Retry requested for {retried} items of {group.handler}"
            + (f"; {left} had nothing to retry" if left else ""),
            title="Retry group",
        )

    # ------------------------------------------------------------------ peek

    def action_peek(self) -> None:
        handler = getattr(self, "selected_handler", None)
        if handler is not None:
            self.peek_handler(handler)

    def peek_handler(self, handler: str) -> None:
        self.run_worker(self._peek(handler), group="triage", exclusive=True)

    async def _peek(self, handler: str) -> None:
        if (peek := self._service_call("peek")) is None:
            return
        from novaconsole.engine.peek import PeekError

        try:
            result = await peek(handler)
        except PeekError as error:
            self.push_screen(PeekScreen(handler, None, str(error)))
            return
        self.push_screen(PeekScreen(handler, result))
