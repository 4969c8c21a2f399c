"""A batch input's own id (``custom_id``, as in OpenAI's batch files): read, checked, and kept unique per run.

It names the input's downloaded files (``<custom_id>-<n>.<ext>``, through ``safe_stem``, which gives a changed id
a hash of its own: ``a/b`` and ``a_b`` make two names), so two ids whose file names differ only in case (``A``
and ``a``: one file on a case-insensitive disk) are one id repeated.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from . import errors
from ._download import safe_stem

__all__ = ("MAX_LENGTH", "CustomIds", "custom_id_of")

MAX_LENGTH = 128


def custom_id_of(item: Any) -> str | None:
    """The ``custom_id`` of a mapping input, checked (a printable string of at most 128 characters); else None."""
    if not isinstance(item, Mapping) or item.get("custom_id") is None:
        return None
    value = item["custom_id"]
    if not isinstance(value, str) or not value.strip():
        raise errors.ValidationError("custom_id", f"must be a non-empty string, got {value!r:.80}")
    if len(value) > MAX_LENGTH:
        raise errors.ValidationError("custom_id", f"is {len(value)} characters; at most {MAX_LENGTH}")
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        # It is printed in the CLI's lines and the contact sheet: no terminal escapes, no invisible characters.
        raise errors.ValidationError("custom_id", f"must hold no control characters, got {value!r:.80}")
    return value


class CustomIds:
    """The custom ids seen so far in one run; a repeat is refused before its input is sent."""

    def __init__(self) -> None:
        self._by_stem: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._by_stem)

    def check(self, item: Any) -> None:
        """Raise ValidationError (``custom_id``) if ``item``'s id is invalid or names the files of an earlier one."""
        custom_id = custom_id_of(item)
        if custom_id is None:
            return
        stem = safe_stem(custom_id).lower()
        earlier = self._by_stem.get(stem)
        if earlier is not None:
            same = "is repeated" if earlier == custom_id else f"names the same files as {earlier!r}"
            raise errors.ValidationError("custom_id", f"{custom_id!r} {same}: each input needs its own")
        self._by_stem[stem] = custom_id
