"""The proxy the environment names for a URL: ``HTTPS_PROXY`` / ``HTTP_PROXY`` and ``NO_PROXY``, read as httpx
and requests read them (the standard library's parser, upper or lower case; ``HTTP_PROXY`` ignored in a CGI
request, where a client could set it).

A proxy only carries the requests: an ``https://`` API is reached through a ``CONNECT`` tunnel, so the proxy
never sees the key; the key still goes only to the API's and the files API's hosts.
"""

from __future__ import annotations

import urllib.request
from urllib.parse import urlsplit

from . import errors

__all__ = ("proxy_for",)

_SCHEMES = ("http", "https")


def proxy_for(url: str) -> str | None:
    """The proxy URL for requests to ``url``, or None to connect directly."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme)
    if not proxy or not parts.hostname:
        return None
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    # NO_PROXY (on macOS and Windows, also the system's exceptions), as requests consults it.
    if urllib.request.proxy_bypass(host):
        return None
    if "://" not in proxy:
        proxy = f"http://{proxy}"  # "proxy:3128", as requests and curl accept it
    scheme = urlsplit(proxy).scheme.lower()
    if scheme not in _SCHEMES:
        variable = f"{parts.scheme.upper()}_PROXY"
        raise errors.ConfigurationError(
            f"{variable} names a {scheme} proxy; only http:// and https:// proxies are supported "
            f"(or exclude the host with NO_PROXY)"
        )
    return proxy
