"""Text from outside (a server, a proxy, a caller) made safe for where it goes: a URL path, a file name, a log line,
a terminal. Pure functions, the package's lowest layer: ``errors`` itself uses them."""

from __future__ import annotations

import re

__all__ = ("MAX_ID_LENGTH", "id_problem", "printable", "redact")

#: The longest task or file id accepted (EvoLink's are about 40 characters).
MAX_ID_LENGTH = 200
# "/" and "\" would make another path (or file) of it, "?" and "#" end the path; quoting alone does not help with
# dot segments, which the URL library removes after quoting ("/v1/tasks/.." is "/v1/").
_ID_FORBIDDEN = frozenset("/\\?#")
REDACTED = "[redacted]"
# What every id EvoLink gives looks like: checked in one C call, before the character-by-character rule.
_PLAIN_ID = re.compile(r"[A-Za-z0-9_:-][A-Za-z0-9_.:-]*")


def id_problem(value: object) -> str | None:
    """Why ``value`` cannot be a task or file id (a path segment, a file name, a log word), or None if it can."""
    if not isinstance(value, str) or not value:
        return f"must be a non-empty string, got {value!r}"[:120]
    if len(value) <= MAX_ID_LENGTH and _PLAIN_ID.fullmatch(value):  # no dot segment: its first character is no dot
        return None
    if len(value) > MAX_ID_LENGTH:
        return f"is {len(value)} characters long; at most {MAX_ID_LENGTH} are accepted"
    if value in (".", ".."):
        return f"{value!r} is a dot segment, not an id"
    for char in value:
        if char in _ID_FORBIDDEN or char.isspace() or not char.isprintable():
            return f"{printable(value[:60])!r} holds {char!r}, which no id holds"
    return None


def printable(text: str) -> str:
    """``text`` with every control or invisible character (ESC, BEL, CR, LF, bidi overrides...) escaped as ``\\x1b``
    and the like: a server's text can neither drive a terminal nor forge a log line."""
    if text.isprintable():  # the common case, in C
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def redact(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` (the API key, echoed by a server or proxy) replaced."""
    return text.replace(secret, REDACTED) if secret and secret in text else text
