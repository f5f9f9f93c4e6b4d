"""URL rules in one place: loopback hosts, https-only endpoints, URLs fit for messages."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit, urlunsplit


def is_loopback_host(host: str | None) -> bool:
    """Return True for localhost and loopback IP literals."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(value: str, *, redirect: bool = False, detail: bool = True) -> str | None:
    """Return why `value` is not an acceptable URL, or None (`detail`: may quote parts of it)."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        return f"is not a valid URL ({exc})" if detail else "is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL with a host"
    if parts.fragment:
        return "must not contain a #fragment"
    loopback = is_loopback_host(parts.hostname)
    if redirect:
        if parts.scheme != "http" or not loopback:
            return (
                "must be a loopback http URL (http://127.0.0.1, http://[::1] or "
                "http://localhost, RFC 8252 §7.3)"
            )
    elif parts.scheme == "http" and not loopback:
        return "must use https (http:// is only allowed for loopback hosts)"
    return None


def host_of(url: str) -> str:
    """Return a URL's host[:port] without any user:password@ (for messages)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "<unparseable URL>"


def safe_url(url: str) -> str:
    """Return `url` without credentials, query or fragment (TikTok puts its secret in the query)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    return urlunsplit((parts.scheme, host_of(url), parts.path, "", ""))


def origin(url: str) -> tuple[str, str, int | None] | None:
    """Return (scheme, host, port) of a URL, the default port made explicit; None if invalid."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def origin_text(url: str) -> str:
    """Return a URL's origin for messages (scheme://host:port)."""
    found = origin(url)
    return f"{found[0]}://{found[1]}:{found[2]}" if found else "the authorization server"
