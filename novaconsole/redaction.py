"""Text that a handler, an item or a database URL controls, made safe to store and show.

Two jobs, always done together by :func:`redact`: secrets are masked (URL passwords and the
like) and terminal control characters are neutralised, so that error text, which is item
data, can neither leak a password nor drive the operator's terminal.
"""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<head>(?:[a-zA-Z][\w+.-]*)?://[^\s:/@?#]*:)[^\s@/?#]*(?=@)")
_QUERY_SECRET = re.compile(r"(?i)(?P<head>[?&](?:password|passwd|pwd)=)[^&#\s]*")
# C0 controls but tab and newline, DEL, and C1 controls (ESC-less CSI/OSC on 8-bit terminals).
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def mask_secrets(text: str) -> str:
    """Every URL password in ``text``, ``user:secret@`` or ``?password=secret``, as ``***``:
    ``postgresql://app:s3cret@db/x`` → ``postgresql://app:***@db/x``."""
    return _QUERY_SECRET.sub(r"\g<head>***", _USERINFO.sub(r"\g<head>***", text))


def neutralise_controls(text: str) -> str:
    """``text`` with every control character but newline and tab shown as a visible escape
    (``ESC`` becomes ``\\x1b``), so that it cannot move the cursor, set the window title or
    write the clipboard of the terminal it is printed on."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def redact(text: str) -> str:
    """``text`` safe to store and show: secrets masked, control characters neutralised."""
    return neutralise_controls(mask_secrets(text))
