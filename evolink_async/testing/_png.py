"""Tiny PNG writer and painter (no Pillow): the simulator's result images.

``picture_png(prompt, size)`` paints a small landscape drawn from the prompt's hash — a diagonal sky
gradient, a sun, a few stars and mountains — with the prompt's words in blocky capitals on a band below,
512 pixels on the long side with the aspect ratio of ``size``. The same prompt and size always give the
same bytes. ``solid_png`` stays for tests that need a small valid image.

Speed: a benchmark downloads thousands of distinct results from this process, so painting works a row at
a time with slice assignments (every sky row is a slice of one precomputed gradient strip; a shape is one
span per row), never a Python loop per pixel, and the encoded bytes are cached per (prompt, size).
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import random
import re
import struct
import zlib
from collections.abc import Sequence

from ._font import GLYPH_HEIGHT, GLYPH_WIDTH, runs

__all__ = ("LONGEST_SIDE", "colour_for", "dimensions_for", "picture_png", "solid_png")

#: Length in pixels of the longer side of every simulated result image.
LONGEST_SIDE = 512

RGB = tuple[int, int, int]
_DIRECTIVE = re.compile(r"\[[^\]]*\]")  # the simulator's [fail], [duration:2] ... are not drawn
_MAX_LINES = 3
_SHADES = 160
_TEXT = (246, 244, 236)


def dimensions_for(size: str | None) -> tuple[int, int]:
    """Width and height of a result image for EvoLink's ``size`` ratio (``"16:9"`` -> 512x288).

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


def colour_for(text: str) -> RGB:
    """A stable RGB colour derived from ``text`` (the prompt)."""
    digest = _digest(text)
    return digest[0], digest[1], digest[2]


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(
    width: int, height: int, rows: Sequence[bytes | bytearray], palette: Sequence[RGB] = (), level: int = 6
) -> bytes:
    """Encode ``height`` rows of ``width`` pixels as a PNG: RGB (3 bytes a pixel), or indices into ``palette``."""
    if width < 1 or height < 1:
        raise ValueError("PNG dimensions must be positive")
    raw = b"\x00" + b"\x00".join(rows)  # filter byte 0 (None) before each row
    colour_type = 3 if palette else 2  # 3: palette indices, 2: truecolour; both 8 bits, no interlace
    chunks = [_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))]
    if palette:
        chunks.append(_chunk(b"PLTE", b"".join(bytes(rgb) for rgb in palette)))
    chunks += [_chunk(b"IDAT", zlib.compress(raw, level)), _chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


@functools.lru_cache(maxsize=256)
def solid_png(width: int, height: int, rgb: RGB) -> bytes:
    """Encode a ``width`` x ``height`` truecolour PNG filled with ``rgb``."""
    if width < 1 or height < 1:
        raise ValueError("PNG dimensions must be positive")
    return encode_png(width, height, [bytes(rgb) * width] * height, level=9)


def _hsv(hue: float, saturation: float, value: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return round(r * 255), round(g * 255), round(b * 255)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t)


class _Canvas:
    """Rows of palette indices (one byte a pixel: a third of RGB's bytes to paint and to compress)."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.rows: list[bytearray] = []
        self.palette: list[RGB] = []
        self._pixels: dict[RGB, bytes] = {}

    def ink(self, rgb: RGB) -> bytes:
        """The one-byte pixel of ``rgb``, added to the palette (at most 256 colours) when new."""
        pixel = self._pixels.get(rgb)
        if pixel is None:
            if len(self.palette) == 256:
                raise ValueError("a palette PNG holds at most 256 colours")
            pixel = self._pixels[rgb] = bytes((len(self.palette),))
            self.palette.append(rgb)
        return pixel

    def sky(self, top: RGB, bottom: RGB, mirrored: bool) -> None:
        """A diagonal gradient: pixel (x, y) takes the colour at x + 2y of one strip, so each row is a slice."""
        length = self.width + 2 * self.height
        # _SHADES colours at most, each over its stretch of the strip: finer steps would not show.
        shades = min(length, _SHADES)
        stretches = []
        for i in range(shades):
            pixel = self.ink(_mix(top, bottom, i / max(1, shades - 1)))
            stretches.append(pixel * ((i + 1) * length // shades - i * length // shades))
        if mirrored:  # the light comes from the top right instead: x runs the other way along the strip
            stretches.reverse()
        strip = b"".join(stretches)
        starts = (length - 2 * y - self.width if mirrored else 2 * y for y in range(self.height))
        self.rows = [bytearray(strip[start : start + self.width]) for start in starts]

    def span(self, y: int, x0: int, x1: int, pixel: bytes) -> None:
        x0, x1 = max(0, x0), min(self.width, x1)
        if 0 <= y < self.height and x1 > x0:
            self.rows[y][x0:x1] = pixel * (x1 - x0)

    def disc(self, cx: int, cy: int, radius: int, rgb: RGB) -> None:
        pixel = self.ink(rgb)
        for y in range(cy - radius, cy + radius + 1):
            half = int((radius * radius - (y - cy) ** 2) ** 0.5)
            self.span(y, cx - half, cx + half + 1, pixel)

    def mountain(self, peak_x: int, peak_y: int, base_y: int, half_base: int, rgb: RGB) -> None:
        pixel = self.ink(rgb)
        rise = max(1, base_y - peak_y)
        for y in range(peak_y, base_y):
            half = half_base * (y - peak_y) // rise
            self.span(y, peak_x - half, peak_x + half + 1, pixel)

    def band(self, top: int, rgb: RGB) -> None:
        pixel = self.ink(rgb)
        for y in range(max(0, top), self.height):
            self.rows[y] = bytearray(pixel * self.width)

    def text_line(self, line: str, top: int, scale: int, background: RGB) -> None:
        """``line`` in the blocky font, centred, ``scale`` pixels per font pixel, on a band of ``background``."""
        advance = (GLYPH_WIDTH + 1) * scale
        left = (self.width - len(line) * advance + scale) // 2
        glyphs = [runs(char) for char in line]
        paper, ink = self.ink(background), self.ink(_TEXT)
        for glyph_row in range(GLYPH_HEIGHT):
            row = bytearray(paper * self.width)
            for index, glyph in enumerate(glyphs):
                for start, end in glyph[glyph_row]:
                    x0 = left + index * advance + start * scale
                    x1 = min(self.width, left + index * advance + end * scale)
                    if x1 > x0 >= 0:
                        row[x0:x1] = ink * (x1 - x0)
            for k in range(scale):  # a font pixel is scale x scale: the same row, scale times
                y = top + glyph_row * scale + k
                if 0 <= y < self.height:
                    self.rows[y] = row


def _wrap(prompt: str, max_chars: int) -> list[str]:
    """The prompt's words (without simulator directives) in capitals, on at most three lines."""
    words = _DIRECTIVE.sub(" ", prompt).upper().split()
    lines: list[str] = []
    for word in words:
        word = word[:max_chars]
        if lines and len(lines[-1]) + 1 + len(word) <= max_chars:
            lines[-1] += " " + word
        elif len(lines) < _MAX_LINES:
            lines.append(word)
        else:
            lines[-1] = lines[-1][: max_chars - 3].rstrip() + "..."
            break
    return lines


def _landscape(canvas: _Canvas, rng: random.Random, hue: float, horizon: int) -> None:
    """Sun, stars and three mountains above ``horizon``, placed and coloured by ``rng``."""
    w, small = canvas.width, min(canvas.width, horizon)
    star = _hsv(hue + 0.5, 0.1, 1.0)
    for _ in range(rng.randint(5, 12)):
        canvas.disc(rng.randrange(w), rng.randrange(max(1, horizon // 2)), rng.choice((1, 1, 2)), star)
    sun = (round(w * rng.uniform(0.15, 0.85)), round(horizon * rng.uniform(0.18, 0.4)))
    canvas.disc(*sun, max(4, round(small * rng.uniform(0.08, 0.14))), _hsv(hue + 0.5, 0.55, 1.0))
    for layer in range(3):  # back to front: each nearer range lower and darker
        peak_y = round(horizon * rng.uniform(0.3 + 0.12 * layer, 0.5 + 0.12 * layer))
        colour = _hsv(hue + 0.08 * (layer + 1), 0.45 + 0.1 * layer, 0.55 - 0.13 * layer)
        canvas.mountain(rng.randrange(w), peak_y, horizon, round(w * rng.uniform(0.3, 0.55)), colour)


@functools.lru_cache(maxsize=2048)
def picture_png(prompt: str, size: str | None) -> bytes:
    """The simulator's result image for ``prompt`` at the aspect ratio of ``size`` (deterministic, cached)."""
    width, height = dimensions_for(size)
    digest = _digest(prompt)
    rng = random.Random(digest)
    hue = digest[0] / 256
    scale = 3 if width >= 400 else 2
    lines = _wrap(prompt, max(1, (width - 8 * scale) // ((GLYPH_WIDTH + 1) * scale)))
    line_height = (GLYPH_HEIGHT + 3) * scale
    horizon = height - (len(lines) * line_height + 5 * scale if lines else 0)
    canvas = _Canvas(width, height)
    canvas.sky(_hsv(hue, 0.3, 0.98), _hsv(hue + 0.1, 0.75, 0.72), mirrored=digest[1] % 2 == 1)
    _landscape(canvas, rng, hue, max(1, horizon))
    if lines:
        background = _hsv(hue + 0.05, 0.5, 0.2)
        canvas.band(horizon, background)
        for number, line in enumerate(lines):
            canvas.text_line(line, horizon + 3 * scale + number * line_height, scale, background)
    return encode_png(width, height, canvas.rows, canvas.palette)
