"""Validation of create bodies (images, videos, audio), and pricing, as EvoLink documents them."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

__all__ = ("IDEMPOTENCY_KEY", "InvalidRequest", "price_of", "validate_audio", "validate_create", "validate_video")

IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._-]{16,96}")

_SIZES = ("auto", "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
_FLASH_SIZES = (*_SIZES, "1:4", "4:1", "1:8", "8:1")
_QUALITIES = ("1K", "2K", "4K")
_FLASH_QUALITIES = ("0.5K", *_QUALITIES)
_PRICE_BY_QUALITY = {"0.5K": 1.2, "1K": 1.2, "2K": 1.6, "4K": 3.2}
_DEFAULT_QUALITY = "2K"
_UNKNOWN_MODEL_PRICE = 1.0
_MAX_CALLBACK_URL = 2048


@attrs.frozen
class _ModelRules:
    max_prompt: int | None
    sizes: tuple[str, ...]
    qualities: tuple[str, ...]
    max_images: int


_MODELS: dict[str, _ModelRules] = {
    "gemini-3-pro-image-preview": _ModelRules(2000, _SIZES, _QUALITIES, 10),
    "gemini-3.1-flash-image-preview": _ModelRules(None, _FLASH_SIZES, _FLASH_QUALITIES, 14),
    "gemini-2.5-flash-image": _ModelRules(1000, _SIZES, _QUALITIES, 10),
}


class InvalidRequest(Exception):
    """A 400 answer: ``param`` names the field at fault (``None`` for the body as a whole)."""

    def __init__(self, param: str | None, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


_VIDEO_CREDITS_PER_SECOND = 2.0
_VIDEO_DEFAULT_SECONDS = 5
_AUDIO_PRICE = 4.0
_VIDEO_QUALITIES = ("480p", "720p", "1080p", "4k")
_VIDEO_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "adaptive")


def price_of(body: Mapping[str, Any], kind: str = "image") -> float:
    """Credits reserved for a (valid) create body: images by quality for known models (1.0 otherwise),
    videos by the second, songs at a flat price (made-up prices of the simulator)."""
    if kind == "video":
        seconds = body.get("duration", _VIDEO_DEFAULT_SECONDS)
        return _VIDEO_CREDITS_PER_SECOND * (seconds if isinstance(seconds, (int, float)) else _VIDEO_DEFAULT_SECONDS)
    if kind == "audio":
        return _AUDIO_PRICE
    if body.get("model") not in _MODELS:
        return _UNKNOWN_MODEL_PRICE
    quality = body.get("quality", _DEFAULT_QUALITY)
    if not isinstance(quality, str) or quality not in _PRICE_BY_QUALITY:
        quality = _DEFAULT_QUALITY
    return _PRICE_BY_QUALITY[quality]


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _check_callback_url(value: object, *, allow_local: bool = False) -> None:
    if not isinstance(value, str):
        raise InvalidRequest("callback_url", "callback_url must be a string")
    if len(value) > _MAX_CALLBACK_URL:
        raise InvalidRequest("callback_url", f"callback_url must be at most {_MAX_CALLBACK_URL} characters")
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        raise InvalidRequest("callback_url", "callback_url is not a valid URL") from None
    if parts.scheme != "https" or not host:
        raise InvalidRequest("callback_url", "callback_url must be an HTTPS URL")
    if allow_local:
        return  # the simulator's local-testing mode: loopback and private receivers are fine
    if host == "localhost" or host.endswith(".localhost"):
        raise InvalidRequest("callback_url", "callback_url must not point to a private or loopback address")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return  # a host name: fine
    if (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_reserved
        or address.is_multicast
    ):
        raise InvalidRequest("callback_url", "callback_url must not point to a private or loopback address")


def _check_model_and_prompt(body: Mapping[str, Any], max_prompt: int, *, may_be_empty: bool = False) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model", "model is required and must be a non-empty string")
    prompt = body.get("prompt", "")
    if not isinstance(prompt, str) or (not prompt.strip() and not may_be_empty):
        raise InvalidRequest("prompt", "prompt must be a non-empty string")
    if len(prompt) > max_prompt:
        raise InvalidRequest("prompt", f"prompt is too long: {len(prompt)} characters, at most {max_prompt}")


def _check_image_urls(body: Mapping[str, Any], max_images: int | None) -> None:
    if "image_urls" not in body:
        return
    urls = body["image_urls"]
    if not isinstance(urls, list):
        raise InvalidRequest("image_urls", "image_urls must be a list of URLs")
    if max_images is not None and len(urls) > max_images:
        raise InvalidRequest("image_urls", f"image_urls has {len(urls)} items, at most {max_images}")
    for index, url in enumerate(urls):
        if not _is_http_url(url):
            raise InvalidRequest("image_urls", f"image_urls[{index}] is not an http(s) URL")


def validate_video(body: Mapping[str, Any], *, allow_local_callbacks: bool = False) -> None:
    """Raise :class:`InvalidRequest` if a ``POST /v1/videos/generations`` body breaks a documented rule."""
    _check_model_and_prompt(body, 5000)
    duration = body.get("duration")
    if duration is not None and (not isinstance(duration, (int, float)) or isinstance(duration, bool) or duration <= 0):
        raise InvalidRequest("duration", "duration must be a positive number of seconds")
    for name, allowed in (("quality", _VIDEO_QUALITIES), ("aspect_ratio", _VIDEO_RATIOS)):
        if name in body and body[name] not in allowed:
            raise InvalidRequest(name, f"{name} must be one of {', '.join(allowed)}, got {body[name]!r}")
    _check_image_urls(body, 9)
    if "callback_url" in body:
        _check_callback_url(body["callback_url"], allow_local=allow_local_callbacks)


def validate_audio(body: Mapping[str, Any], *, allow_local_callbacks: bool = False) -> None:
    """Raise :class:`InvalidRequest` if a ``POST /v1/audios/generations`` body breaks a documented rule."""
    custom = body.get("custom_mode") is True
    _check_model_and_prompt(body, 5000 if custom else 500, may_be_empty=custom and body.get("instrumental") is True)
    if custom:
        for name in ("style", "title"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise InvalidRequest(name, f"{name} is required in custom mode")
    duration = body.get("duration")
    if duration is not None and not (isinstance(duration, (int, float)) and 30 <= duration <= 240):
        raise InvalidRequest("duration", "duration must be between 30 and 240 seconds")
    if "callback_url" in body:
        _check_callback_url(body["callback_url"], allow_local=allow_local_callbacks)


def validate_create(body: Mapping[str, Any], *, allow_local_callbacks: bool = False) -> None:
    """Raise :class:`InvalidRequest` if ``body`` breaks a documented rule; unknown models/fields pass.

    ``allow_local_callbacks`` accepts a ``callback_url`` on a loopback or private host (still HTTPS only),
    which the real API rejects: for local testing of callback receivers.
    """
    model = body.get("model")
    if model is None:
        raise InvalidRequest("model", "model is required")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model", "model must be a non-empty string")
    rules = _MODELS.get(model)

    prompt = body.get("prompt")
    if prompt is None:
        raise InvalidRequest("prompt", "prompt is required")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequest("prompt", "prompt must be a non-empty string")
    if rules is not None and rules.max_prompt is not None and len(prompt) > rules.max_prompt:
        raise InvalidRequest(
            "prompt", f"prompt is too long: {len(prompt)} characters, at most {rules.max_prompt} for {model}"
        )

    if rules is not None:
        for name, allowed in (("size", rules.sizes), ("quality", rules.qualities)):
            if name in body and body[name] not in allowed:
                raise InvalidRequest(
                    name, f"{name} must be one of {', '.join(allowed)} for {model}, got {body[name]!r}"
                )

    if "image_urls" in body:
        urls = body["image_urls"]
        if not isinstance(urls, list):
            raise InvalidRequest("image_urls", "image_urls must be a list of URLs")
        if rules is not None and len(urls) > rules.max_images:
            raise InvalidRequest(
                "image_urls", f"image_urls has {len(urls)} items, at most {rules.max_images} for {model}"
            )
        for index, url in enumerate(urls):
            if not _is_http_url(url):
                raise InvalidRequest("image_urls", f"image_urls[{index}] is not an http(s) URL")

    if "callback_url" in body:
        _check_callback_url(body["callback_url"], allow_local=allow_local_callbacks)

    if "model_params" in body and not isinstance(body["model_params"], dict):
        raise InvalidRequest("model_params", "model_params must be an object")
