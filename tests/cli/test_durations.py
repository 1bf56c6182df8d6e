"""Durations as config.toml, the environment and flags write them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from novaconsole.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00:05:00", timedelta(minutes=5)),
        ("01:00:00", timedelta(hours=1)),
        ("00:00:00.250", timedelta(milliseconds=250)),
        ("1.02:00:00", timedelta(days=1, hours=2)),
        ("PT5M", timedelta(minutes=5)),
        ("pt1h30m", timedelta(hours=1, minutes=30)),
        ("P1DT2S", timedelta(days=1, seconds=2)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("300", timedelta(seconds=300)),
        (" 2.5 ", timedelta(seconds=2.5)),
        (300, timedelta(seconds=300)),
        (0.1, timedelta(milliseconds=100)),
        (timedelta(seconds=7), timedelta(seconds=7)),
    ],
)
def test_accepted_formats(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["five minutes", "5m", "P", "PT", "00:61:00", "", True, None, -1])
def test_rejected_with_a_message_for_users(text):
    with pytest.raises(ValueError) as error:
        parse_duration(text)
    assert "\n" not in str(error.value)


def test_negative_rejected():
    with pytest.raises(ValueError, match="negative"):
        parse_duration("-5")


@pytest.mark.parametrize(
    ("value", "text"),
    [(timedelta(minutes=5), "00:05:00"), (1.5, "00:00:01.500"), (timedelta(hours=25), "25:00:00")],
)
def test_format_round_trips(value, text):
    assert format_duration(value) == text
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)
