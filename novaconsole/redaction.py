"""Text that a handler, an item or a database URL controls, made safe to store and show.

Two jobs, always done together by :func:`redact`: secrets are masked (URL passwords and the
like) and terminal control characters are neutralised, so that error text, which is item
data, can neither leak a password nor drive the operator's terminal. Both are idempotent:
redacting redacted text changes nothing, so old rows can be redacted again when shown.
"""

from __future__ import annotations

import re

MASK = "***"

# ``scheme://user:password@host``: the password runs to the last ``@`` before the host, so
# that an ``@`` inside it (``app:p@ss@db``) is masked whole.
_USERINFO = re.compile(r"(?P<head>(?:[a-zA-Z][\w+.-]*)?://[^\s:/@?#]*:)[^\s/?#]*(?=@)")

# A key naming a secret: ``password``, ``sslpassword``, ``client_secret``, ``api_key``,
# ``access_token``… but not ``tokens``, ``secretary`` or ``keyboard``.
_SECRET_KEY = (
    r"(?:[a-z0-9]+[_-])*"
    r"(?:ssl)?(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|private[_-]?key)"
)
# ``key=value`` as in query strings (``?sslpassword=x&``), libpq keyword strings
# (``password=secret``, ``password='se cret'``) and form parameters.
_KEY_VALUE = re.compile(
    rf"(?i)(?P<head>(?<![\w.-]){_SECRET_KEY}\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^\s&;#'\"]+)"
)
# ``'password': 'x'`` and ``"token": "x"``, as in dict reprs and JSON.
_QUOTED_ITEM = re.compile(
    rf"(?i)(?P<head>(?P<q>['\"]){_SECRET_KEY}(?P=q)\s*:\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
)
# ``Authorization: Bearer x`` and a bare bearer token of a credible length.
_AUTHORIZATION = re.compile(
    r"(?i)(?P<head>\bauthorization\s*[:=]\s*(?:(?:bearer|basic|token)\s+)?)[^\s,;'\"]+"
)
_BEARER = re.compile(r"(?P<head>\bBearer\s+)[A-Za-z0-9._~+/-]{16,}=*")

# C0 controls but tab and newline, DEL, and C1 controls (ESC-less CSI/OSC on 8-bit terminals).
# A carriage return is kept only in ``\r\n``: a lone one moves back and overwrites the line.
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]|\r(?!\n)")


def _quoted_mask(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match['head']}{quote}{MASK}{quote}"


def mask_secrets(text: str) -> str:
    """``text`` with every secret it carries shown as ``***``.

    Masked: URL passwords in any scheme (``postgresql://app:s3cret@db/x`` →
    ``postgresql://app:***@db/x``, an ``@`` inside the password included), secret keys in
    query strings, parameters and libpq strings (``?sslpassword=x``, ``password='se cret'``,
    ``api_key=…``, ``access_token=…``), the same keys in dict reprs and JSON, and
    ``Authorization`` / ``Bearer`` tokens. Ordinary text is left alone.
    """
    text = _USERINFO.sub(rf"\g<head>{MASK}", text)
    text = _KEY_VALUE.sub(_quoted_mask, text)
    text = _QUOTED_ITEM.sub(_quoted_mask, text)
    text = _AUTHORIZATION.sub(rf"\g<head>{MASK}", text)
    return _BEARER.sub(rf"\g<head>{MASK}", text)


def neutralise_controls(text: str) -> str:
    """``text`` with every control character but newline, tab and ``\\r\\n`` shown as a visible
    escape (``ESC`` becomes ``\\x1b``), so that it cannot move the cursor, overwrite a line, set
    the window title or write the clipboard of the terminal it is printed on."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def redact(text: str) -> str:
    """``text`` safe to store and show: secrets masked, control characters neutralised."""
    return neutralise_controls(mask_secrets(text))
