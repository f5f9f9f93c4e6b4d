"""Talking to a provider: timeouts, no redirects, at most 1 MiB, every failure a ProviderError.

Every request that can carry a secret (token exchange, refresh, userinfo, Shop API calls) goes
through here or through `read_json` and `talking_to`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from .errors import LoopauthError, ProviderError
from .urls import is_loopback_host, safe_url

if TYPE_CHECKING:
    import requests

MAX_RESPONSE = 1 << 20


def request_error(exc: BaseException, url: str, timeout: float) -> ProviderError:
    """Describe a requests exception without its text, which can quote the full URL."""
    import requests

    if isinstance(exc, requests.Timeout):
        return ProviderError(f"{safe_url(url)} did not answer within {timeout:g} s")
    if isinstance(exc, requests.ConnectionError):
        return ProviderError(
            f"cannot connect to {safe_url(url)} (connection refused or unreachable)"
        )
    if isinstance(exc, requests.TooManyRedirects):
        return ProviderError(f"{safe_url(url)} redirected too many times")
    if isinstance(exc, RecursionError):
        return ProviderError(f"{safe_url(url)} answered with absurdly nested JSON")
    return ProviderError(f"request to {safe_url(url)} failed ({type(exc).__name__})")


def read_json(resp: requests.Response, what: str) -> dict[str, Any]:
    """Read at most 1 MiB of a response and return its JSON object, or raise ProviderError."""
    if resp.is_redirect:
        # Never followed: a token request would carry the client secret and codes to wherever
        # it points, past the https-only check on configured endpoints.
        where = safe_url(resp.headers.get("location", ""))
        resp.close()
        raise ProviderError(
            f"{what} answered with a redirect (HTTP {resp.status_code}) to "
            f"{where}; loopauth does not follow redirects from a provider: "
            "configure the final URL"
        )
    chunks, size = [], 0
    for chunk in resp.iter_content(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE:
            resp.close()
            raise ProviderError(f"{what} answered with more than 1 MiB; giving up")
    body = b"".join(chunks)
    status = resp.status_code
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        data = _form(resp, body)
    if not isinstance(data, dict):
        ctype = resp.headers.get("content-type", "")
        looks_html = "html" in ctype or b"<html" in body[:2048].lower()
        kind = "an HTML page" if looks_html else "something that is not a JSON object"
        if not body:
            kind = "an empty body"
        raise ProviderError(f"{what} answered HTTP {status} with {kind} ({len(body)} bytes)")
    if status >= 500 and "error" not in data:
        # Some providers (TikTok Shop) answer with an envelope of their own: keep its code,
        # message and request_id, which are what their support asks for.
        told = [
            f"{key} {str(data[key])[:200]}"
            for key in ("code", "message", "request_id")
            if isinstance(data.get(key), str | int) and not isinstance(data.get(key), bool)
        ]
        detail = f": {', '.join(told)}" if told else ""
        raise ProviderError(f"{what} answered HTTP {status} (server error){detail}")
    return data


def _form(resp: requests.Response, body: bytes) -> dict[str, str] | None:
    """Return a form-encoded answer as a dict (GitHub answers so unless asked for JSON)."""
    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return None
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return None
    return dict(pairs) if pairs else None


@contextlib.contextmanager
def talking_to(url: str, timeout: float) -> Iterator[None]:
    """Turn any failure of an exchange with `url` into a ProviderError that never quotes it."""
    try:
        yield
    except LoopauthError:
        raise
    except Exception as exc:  # requests, urllib3 and json can raise more than RequestException
        raise request_error(exc, url, timeout) from None


def trust_env(url: str) -> bool:
    """Return False for loopback URLs, so that no proxy from the environment is used for them."""
    # An HTTP(S)_PROXY from the environment must not capture traffic to a local emulator.
    return not is_loopback_host(urlsplit(url).hostname)


def request_json(
    method: str,
    url: str,
    what: str,
    *,
    timeout: float,
    headers: dict[str, str] | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    """Send one request and return the JSON object it answers (see read_json for the rules)."""
    import requests

    with talking_to(url, timeout), requests.Session() as session:
        session.trust_env = trust_env(url)
        with session.request(
            method,
            url,
            headers=headers,
            data=body or None,
            timeout=timeout,
            stream=True,
            allow_redirects=False,  # a redirect would carry codes and secrets along
        ) as resp:
            return read_json(resp, what)
