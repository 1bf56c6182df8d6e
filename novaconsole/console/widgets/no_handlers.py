"""What the console shows instead of empty panes when no handler is registered."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static


def no_handlers_text(config: str | None) -> Content:
    """Where the handlers were looked for, and how to register one."""
    if config is not None:
        where = Content.assemble(("Looked in: ", "$text-muted"), (config, "bold"))
        fix = (
            f'Add a [[handlers]] table with a name and factory = "module:Class" to {config},'
            " or start with --config PATH naming a config file that has one."
        )
    else:
        where = Content.styled("This service was built in code with no add_handler() call.", "")
        fix = "register a handler with BackgroundProcessing.add_handler() before build()."
    return Content("\n").join(
        [
            Content.styled("No handler is registered: there is nothing to run.", "bold $warning"),
            Content(""),
            where,
            Content(""),
            Content.assemble(("To fix: ", "$text-muted"), fix),
            Content.assemble(
                ("Example: ", "$text-muted"), "novaconsole demo runs three example handlers."
            ),
        ]
    )


class NoHandlers(Static):
    """Shown in place of the handlers pane while the service has no handler."""

    def __init__(self, config: str | None, *, id: str | None = None) -> None:
        super().__init__(no_handlers_text(config), id=id)
