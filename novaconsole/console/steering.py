"""Calling the service's controls with who made the change (``by=console@host``) and, for a
pause, its reason and expiry, when the service takes them: ``ProcessingService`` does; an
attached fleet, a read-only window or a test double may not, and then gets the plain call."""

from __future__ import annotations

import inspect
import re
from datetime import timedelta
from typing import Any

from novaconsole.engine.operator import operator_id

CONSOLE = operator_id("console")
"""Who a change from this console is recorded as: ``console@<host>``."""


def steer(service: Any, name: str, *args: Any, **options: Any) -> Any:
    """``service.<name>(*args, by=CONSOLE, **options)``, leaving out the keywords (``by``,
    ``reason``, ``until``) its method does not take; options that are None are not sent."""
    method = getattr(service, name)
    wanted = {"by": CONSOLE, **{k: v for k, v in options.items() if v is not None}}
    return method(*args, **_accepted(method, wanted))


def _accepted(method: Any, options: dict[str, Any]) -> dict[str, Any]:
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return options
    return {k: v for k, v in options.items() if k in parameters}


_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_COMPOUND = re.compile(r"(\d+)\s*([dhms])")


def parse_duration(text: str) -> timedelta | None:
    """``"30m"``, ``"1h30m"``, ``"90s"``, ``"2d"``, ``"HH:MM:SS"`` or ``"MM:SS"`` as a
    positive duration; "" gives None; anything else raises ``ValueError`` saying what works."""
    text = text.strip().lower()
    if not text:
        return None
    seconds: int | None = None
    if ":" in text:
        parts = text.split(":")
        if 2 <= len(parts) <= 3 and all(p.isdigit() for p in parts):
            seconds = 0
            for part in parts:
                seconds = seconds * 60 + int(part)
    elif _COMPOUND.sub("", text).strip() == "" and _COMPOUND.search(text):
        seconds = sum(int(n) * _UNITS[unit] for n, unit in _COMPOUND.findall(text))
    elif text.isdigit():
        seconds = int(text) * 60  # a bare number: minutes
    if seconds is None:
        raise ValueError(f"not a duration: {text!r} (try 30m, 1h30m, 90s or 01:30:00)")
    if seconds <= 0:
        raise ValueError("a pause must last a positive time")
    return timedelta(seconds=seconds)
