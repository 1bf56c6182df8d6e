"""The one masker and control-character neutraliser: a table of hits and of text left alone."""

from __future__ import annotations

import pytest

from novaconsole.redaction import mask_secrets, neutralise_controls, redact

MASKED = [
    # URL passwords, any scheme
    ("postgresql+asyncpg://bob:s3cret@db:5432/x", "postgresql+asyncpg://bob:***@db:5432/x"),
    ("url=redis://:pw@h/0 and more", "url=redis://:***@h/0 and more"),
    ("postgresql://app:p@ss@db/x", "postgresql://app:***@db/x"),
    ("postgresql://app:p@ss@w@rd@db:5432/x?x=1", "postgresql://app:***@db:5432/x?x=1"),
    ("amqp://guest:gu:est@rabbit//", "amqp://guest:***@rabbit//"),
    (
        "mongodb+srv://u:hunter2@cluster0.example.net/db",
        "mongodb+srv://u:***@cluster0.example.net/db",
    ),
    ("https://user:tok3n@git.example.com/repo.git", "https://user:***@git.example.com/repo.git"),
    ("(dsn='mysql://root:r00t@127.0.0.1/app')", "(dsn='mysql://root:***@127.0.0.1/app')"),
    # query strings and parameters
    (
        "postgresql://db/x?sslmode=verify-full&sslpassword=k3y&x=1",
        "postgresql://db/x?sslmode=verify-full&sslpassword=***&x=1",
    ),
    (
        "postgresql+asyncpg://db/x?user=app&password=hunter2",
        "postgresql+asyncpg://db/x?user=app&password=***",
    ),
    ("GET /v1/items?api_key=abc123&page=2", "GET /v1/items?api_key=***&page=2"),
    (
        "https://h/cb?code=1&access_token=eyJh.eyJz.sig#frag",
        "https://h/cb?code=1&access_token=***#frag",
    ),
    ("https://h/?token=t0k&secret=s3c", "https://h/?token=***&secret=***"),
    ("POST client_id=app&client_secret=xyz", "POST client_id=app&client_secret=***"),
    ("https://h/?apiKey=zz", "https://h/?apiKey=***"),
    # libpq keyword strings
    ("host=db user=app password=secret dbname=x", "host=db user=app password=*** dbname=x"),
    ("host=db password='se cret' dbname=x", "host=db password='***' dbname=x"),
    (r"password='it\'s secret' port=5432", "password='***' port=5432"),
    ("sslpassword = k3y sslmode=require", "sslpassword = *** sslmode=require"),
    # dict reprs, JSON, headers
    (
        "KeyError: {'user': 'app', 'password': 'hunter2'}",
        "KeyError: {'user': 'app', 'password': '***'}",
    ),
    ('{"api_key": "abc", "n": 1}', '{"api_key": "***", "n": 1}'),
    ("Authorization: Bearer abc.def.ghi", "Authorization: Bearer ***"),
    ("sent Bearer eyJhbGciOiJIUzI1NiJ9.e30.x to the API", "sent Bearer *** to the API"),
]

UNTOUCHED = [
    "sqlite+aiosqlite:///a/b.db",
    "http://host:8080/path",
    "https://example.com:443/a?b=c and mail bob@example.com",
    "mailto:bob@example.com",
    "password reset failed for user bob",
    "passwords must match",
    "token count exceeded: max_tokens=4096, input_tokens=5000",
    "the secretary=alice; tokenizer=bert",
    "keyboard=us, sort_key=name",
    "Bearer of bad news",
    "RuntimeError: item 42 broke at 12:30:01 (attempt 2/3)",
    "ValueError: invalid literal for int() with base 10: 'abc'",
    "user@host:~$ ls",
    "ratio 3:4@60fps",
]


@pytest.mark.parametrize(("text", "masked"), MASKED)
def test_secrets_are_masked(text: str, masked: str) -> None:
    assert mask_secrets(text) == masked


@pytest.mark.parametrize("text", UNTOUCHED)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert mask_secrets(text) == text


@pytest.mark.parametrize(("text", "masked"), MASKED)
def test_masking_is_idempotent(text: str, masked: str) -> None:
    assert mask_secrets(masked) == masked


OSC_TITLE = "\x1b]0;pwned\x07"
OSC_CLIPBOARD = "\x1b]52;c;SGVsbG8=\x07"
CSI_CLEAR = "\x1b[2J"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (OSC_TITLE, r"\x1b]0;pwned\x07"),
        (OSC_CLIPBOARD, r"\x1b]52;c;SGVsbG8=\x07"),
        (CSI_CLEAR + "boom", r"\x1b[2Jboom"),
        ("\x9b2J C1 CSI", r"\x9b2J C1 CSI"),
        ("\x9d0;title\x9c", r"\x9d0;title\x9c"),
        ("null\x00 bell\x07 del\x7f", r"null\x00 bell\x07 del\x7f"),
        ("all good\rpwned", r"all good\x0dpwned"),
        ("line one\r\nline two\n\tindented", "line one\r\nline two\n\tindented"),
        ("café ✓ 東京", "café ✓ 東京"),
    ],
)
def test_controls_are_neutralised(text: str, shown: str) -> None:
    assert neutralise_controls(text) == shown
    assert neutralise_controls(shown) == shown


def test_redact_does_both_on_the_hostile_error() -> None:
    hostile = f"{OSC_TITLE}{OSC_CLIPBOARD}{CSI_CLEAR} postgresql://app:secret@db/x"
    safe = redact(hostile)
    assert "\x1b" not in safe and "\x07" not in safe
    assert "secret" not in safe
    assert safe.endswith("postgresql://app:***@db/x")
    assert redact(safe) == safe


def test_a_control_character_cannot_split_a_secret_out_of_the_mask() -> None:
    assert redact("postgresql://app:s3\x1bcret@db/x") == "postgresql://app:***@db/x"
    assert redact("password=hunter\x072 dbname=x") == "password=*** dbname=x"
