"""Saying what is paused, so that a worker that processes nothing says why.

A headless worker that starts with anything paused (everything, or some handlers, set by an
earlier run, the console or ``novaconsole pause``) says so at start, and again every
:data:`~novaconsole.engine.operator.PAUSE_REMINDER` while it stays paused.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from novaconsole.engine.operator import PAUSE_REMINDER

if TYPE_CHECKING:
    from novaconsole.engine.service import ProcessingService

log = logging.getLogger("novaconsole.headless")


def say_paused(service: ProcessingService, *, again: bool = False) -> bool:
    """Log one warning per pause in force; whether anything is paused."""
    lines = service.paused_lines()
    for line in lines:
        log.warning("%s%s", "still: " if again else "", line)
    if lines:
        log.warning("resume with `novaconsole resume [HANDLER]` (or wait for the expiry)")
    return bool(lines)


async def remind_paused(
    service: ProcessingService, every: float = PAUSE_REMINDER.total_seconds()
) -> None:
    """:func:`say_paused` now and every ``every`` seconds while something stays paused; until
    cancelled."""
    say_paused(service)
    while True:
        await anyio.sleep(every)
        say_paused(service, again=True)
