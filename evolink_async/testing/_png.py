"""Tiny PNG writer (no Pillow): solid-colour RGB images for the simulator's result files."""

from __future__ import annotations

import functools
import hashlib
import struct
import zlib

__all__ = ("LONGEST_SIDE", "colour_for", "dimensions_for", "solid_png")

#: Length in pixels of the longer side of every simulated result image.
LONGEST_SIDE = 64


def dimensions_for(size: str | None) -> tuple[int, int]:
    """Width and height of a result image for EvoLink's ``size`` ratio (``"16:9"`` -> 64x36).

    ``auto``, a missing size and anything that is not ``W:H`` give a square.
    """
    if not size or ":" not in size:
        return LONGEST_SIDE, LONGEST_SIDE
    left, _, right = size.partition(":")
    try:
        w, h = float(left), float(right)
    except ValueError:
        return LONGEST_SIDE, LONGEST_SIDE
    if not (w > 0 and h > 0):
        return LONGEST_SIDE, LONGEST_SIDE
    if w >= h:
        return LONGEST_SIDE, max(1, round(LONGEST_SIDE * h / w))
    return max(1, round(LONGEST_SIDE * w / h)), LONGEST_SIDE


def colour_for(text: str) -> tuple[int, int, int]:
    """A stable RGB colour derived from ``text`` (the prompt)."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return digest[0], digest[1], digest[2]


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


@functools.lru_cache(maxsize=256)
def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """Encode a ``width`` x ``height`` truecolour PNG filled with ``rgb``."""
    if width < 1 or height < 1:
        raise ValueError("PNG dimensions must be positive")
    row = b"\x00" + bytes(rgb) * width  # filter byte 0 (None) + pixels
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", ihdr),
            _chunk(b"IDAT", zlib.compress(row * height, 9)),
            _chunk(b"IEND", b""),
        )
    )
