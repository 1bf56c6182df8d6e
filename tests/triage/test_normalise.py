"""Failure triage's pure parts: normalised messages, error splitting, group ids."""

from __future__ import annotations

import pytest

from novaconsole.triage import group_id, group_key, normalise, split_error


@pytest.mark.parametrize(
    ("message", "normalised"),
    [
        ("not UTF-8 text (bad byte at offset 17)", "not UTF-8 text (bad byte at offset #)"),
        ("not UTF-8 text (bad byte at offset 4021)", "not UTF-8 text (bad byte at offset #)"),
        ("row 12 of 300 failed", "row # of # failed"),
        ("took 1.25 s (limit 0.5)", "took # s (limit #)"),
        ("at 12:30:01 on 2026-12-01", "at # on #"),
        ("item-4021 is missing", "item-# is missing"),
        ("order12345 and v2 over IPv4", "order# and v2 over IPv4"),
        ("retry in 30s", "retry in #s"),
        ("order 9f3c2e1d-7a4b-4c1e-9d2f-0123456789ab gone", "order <uuid> gone"),
        ("order 9F3C2E1D7A4B4C1E9D2F0123456789AB gone", "order <uuid> gone"),
        ("object at 0x7f3a2b1c", "object at <hex>"),
        ("checksum deadbeef42 mismatch", "checksum <hex> mismatch"),
        ("no such user 'alice'", "no such user '…'"),
        ('bad value "12 apples" for key', 'bad value "…" for key'),
        ("'a' and 'b'", "'…' and '…'"),
        ("  spaces\tand\nnewlines  ", "spaces and newlines"),
        ("deadline exceeded", "deadline exceeded"),  # a word of hex letters only stays
        ("", ""),
    ],
)
def test_values_are_replaced_by_placeholders(message: str, normalised: str) -> None:
    assert normalise(message) == normalised


def test_long_messages_group_by_their_start() -> None:
    text = normalise("x" * 500)
    assert len(text) == 200 and text.endswith("…")


@pytest.mark.parametrize(
    ("error", "split"),
    [
        ("SourceError: not UTF-8 text", ("SourceError", "not UTF-8 text")),
        ("shop.errors.Gone: item 4", ("shop.errors.Gone", "item 4")),
        ("KeyError", ("KeyError", "")),
        ("timed out after 30s", ("", "timed out after 30s")),
        ("TimeoutError: timed out after 30s", ("TimeoutError", "timed out after 30s")),
        (None, ("", "")),
    ],
)
def test_errors_split_into_type_and_message(error: str | None, split: tuple[str, str]) -> None:
    assert split_error(error) == split


def test_group_ids_are_stable_and_tell_groups_apart() -> None:
    a = group_id(*group_key("CatalogImport", "SourceError: bad byte at offset 3"))
    b = group_id(*group_key("CatalogImport", "SourceError: bad byte at offset 999"))
    assert a == b == group_id("CatalogImport", "SourceError", "bad byte at offset #")
    assert len(a) == 10 and int(a, 16) >= 0
    assert a != group_id(*group_key("Other", "SourceError: bad byte at offset 3"))
    assert a != group_id(*group_key("CatalogImport", "ValueError: bad byte at offset 3"))
