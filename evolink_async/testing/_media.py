"""The simulator's video and audio result files: a short valid MP4 and MP3 (made once with ffmpeg and shipped
with the package, a few KB each), and a WAV written here."""

from __future__ import annotations

import functools
import io
import math
import struct
import wave
from importlib import resources

__all__ = ("MEDIA_TYPES", "media_file")

#: Content type of each result-file extension the simulator serves.
MEDIA_TYPES = {"png": "image/png", "mp4": "video/mp4", "mp3": "audio/mpeg", "wav": "audio/wav"}


@functools.cache
def _packaged(name: str) -> bytes:
    return resources.files("evolink_async.testing").joinpath("media").joinpath(name).read_bytes()


@functools.cache
def _tone_wav(seconds: float = 1.0, rate: int = 8000, pitch: float = 440.0) -> bytes:
    """A mono 16-bit sine tone."""
    frames = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * pitch * i / rate))) for i in range(int(seconds * rate))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(frames)
    return out.getvalue()


def media_file(ext: str) -> bytes:
    """The bytes of the simulator's video (``mp4``) or audio (``mp3``, ``wav``) result."""
    if ext == "wav":
        return _tone_wav()
    return _packaged(f"sample.{ext}")
