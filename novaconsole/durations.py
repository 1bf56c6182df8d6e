"""Durations as config writes them: ``"HH:MM:SS"`` (the seed's format), ISO 8601 or seconds."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator

_CLOCK = re.compile(r"^(?:(?P<days>\d+)\.)?(?P<h>\d+):(?P<m>[0-5]?\d):(?P<s>[0-5]?\d(?:\.\d+)?)$")
_ISO = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)

DurationLike = timedelta | int | float | str
Duration = DurationLike
"""A duration as the API takes it: a ``timedelta``, seconds, or ``"HH:MM:SS"`` / ISO 8601 text."""


def parse_duration(value: DurationLike) -> timedelta:
    """Turn ``"00:05:00"``, ``"PT5M"``, ``"300"``, ``300`` or a timedelta into a timedelta.

    Raises ValueError with a message fit to show a user for anything else, negatives included.
    """
    try:
        if isinstance(value, timedelta):
            result = value
        elif isinstance(value, bool):
            raise ValueError(f"expected a duration, got {value!r}")
        elif isinstance(value, int | float):
            if not math.isfinite(value):
                raise ValueError(f"expected a duration, got {value!r}")
            result = timedelta(seconds=value)
        elif isinstance(value, str):
            result = _parse_text(value.strip())
        else:
            raise ValueError(f"expected a duration, got {value!r}")
    except OverflowError:  # inf, 1e300, "99999999999.00:00:00"
        raise ValueError(f"{value!r} is too long to be a duration") from None
    if result < timedelta(0):
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    return result


def _parse_text(text: str) -> timedelta:
    if match := _CLOCK.match(text):
        return timedelta(
            days=int(match["days"] or 0),
            hours=int(match["h"]),
            minutes=int(match["m"]),
            seconds=float(match["s"]),
        )
    if len(text) > 1 and (match := _ISO.match(text)) and text.upper() not in ("P", "PT"):
        parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
        if parts:
            return timedelta(
                days=parts.get("days", 0),
                hours=parts.get("h", 0),
                minutes=parts.get("m", 0),
                seconds=parts.get("s", 0),
            )
    try:
        return timedelta(seconds=float(text))
    except ValueError:
        pass
    raise ValueError(
        f'{text!r} is not a duration; write "HH:MM:SS" ("00:05:00"), ISO 8601 ("PT5M") '
        "or seconds (300)"
    )


def format_duration(value: timedelta | float) -> str:
    """``timedelta(minutes=5)`` → ``"00:05:00"``; sub-second parts kept to milliseconds."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    whole, frac = divmod(seconds, 1)
    hours, rest = divmod(int(whole), 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{text}.{round(frac * 1000):03d}" if frac >= 0.0005 else text


DurationField = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A pydantic field type for a handler's ``Options`` model: takes ``"00:05:00"``, ``"PT5M"``,
seconds or a timedelta, and holds a timedelta."""
