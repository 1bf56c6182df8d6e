"""The footer: the keys that matter most, as many as the width holds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from textual.binding import Binding
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

_PALETTE_WIDTH = 12
"""Cells the "^p palette" key takes at the right end."""


class KeysFooter(Footer):
    """A compact ``Footer`` that drops the keys of least ``PRIORITY`` when the terminal is too
    narrow for all (help lists every one), instead of clipping the last one; grouped keys
    (``+``/``-``) show as one entry."""

    PRIORITY: ClassVar[tuple[str, ...]] = (
        "help",
        "quit",
        "pause_all",
        "resume_all",
        "focus_next",
        "select",
        "select_cursor",
        "search",
        "cycle_filter",
        "run_once",
        "zoom",
        "freeze",
        "copy_id",
        "pause_handler",
        "resume_handler",
        "stats",
        "search_next",
        "batch_up",
        "concurrency_up",
    )

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, compact=True)
        self._width = 0

    def on_resize(self) -> None:
        if self.size.width != self._width:
            self._width = self.size.width
            self.refresh(recompose=True)

    def _entries(self) -> Iterator[tuple[Binding, bool, str, str, str]]:
        """(binding, enabled, tooltip, key shown, description) per action, groups merged."""
        seen: dict[str, list[tuple[Binding, bool, str]]] = {}
        for _, binding, enabled, tooltip in self.screen.active_bindings.values():
            if binding.show:
                seen.setdefault(binding.action, []).append((binding, enabled, tooltip))
        groups: set[str] = set()
        for entries in seen.values():
            binding, enabled, tooltip = entries[0]
            group = binding.group
            if group is not None:
                if group.description in groups:
                    continue
                groups.add(group.description)
                keys = [
                    self.app.get_key_display(b)
                    for e in seen.values()
                    for b, _, _ in e[:1]
                    if b.group is group
                ]
                yield binding, enabled, tooltip, "".join(keys), group.description
            else:
                yield (
                    binding,
                    enabled,
                    tooltip,
                    self.app.get_key_display(binding),
                    (binding.description),
                )

    def compose(self):  # type: ignore[no-untyped-def]
        if not self._bindings_ready:
            return
        order = {action: index for index, action in enumerate(self.PRIORITY)}
        entries = sorted(self._entries(), key=lambda e: order.get(e[0].action, len(order)))
        budget = self.size.width - _PALETTE_WIDTH
        shown = []
        for entry in entries:
            cost = len(entry[3]) + 1 + len(entry[4]) + 1
            if cost <= budget:
                shown.append(entry)
                budget -= cost
        for binding, enabled, tooltip, key_display, description in shown:
            yield FooterKey(
                binding.key,
                key_display,
                description,
                binding.action,
                disabled=not enabled,
                tooltip=tooltip or binding.description,
            ).data_bind(compact=Footer.compact)
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE:
            active = self.screen.active_bindings.get(self.app.COMMAND_PALETTE_BINDING)
            if active is not None:
                _, binding, enabled, tooltip = active
                yield FooterKey(
                    binding.key,
                    self.app.get_key_display(binding),
                    binding.description,
                    binding.action,
                    classes="-command-palette",
                    disabled=not enabled,
                    tooltip=binding.tooltip or binding.description,
                )
