"""Secrets in database URLs, masked wherever a URL or a message holding one is shown."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<head>(?:[a-zA-Z][\w+.-]*)?://[^\s:/@?#]*:)[^\s@/?#]*(?=@)")
_QUERY_SECRET = re.compile(r"(?i)(?P<head>[?&](?:password|passwd|pwd)=)[^&#\s]*")


def mask_secrets(text: str) -> str:
    """Every URL password in ``text``, ``user:secret@`` or ``?password=secret``, as ``***``:
    ``postgresql://app:s3cret@db/x`` → ``postgresql://app:***@db/x``."""
    return _QUERY_SECRET.sub(r"\g<head>***", _USERINFO.sub(r"\g<head>***", text))
