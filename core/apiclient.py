"""Calls to a provider's API with its stored token: `loopauth api` and `loopauth.session()`.

A session joins paths to the provider's `api_base_url`, sends nothing to any other origin,
never follows a redirect, and keeps the token fresh. How a request is authorized is the
provider type's choice (`ProviderType.api_session`; TikTok Shop signs each request); the
standard is an RFC 6750 Bearer token, refreshed and sent once more when the API calls it
invalid. `pages` (also `session.pages`) follows the type's paging (`ProviderType.next_page`) or
RFC 8288 `Link: <...>; rel="next"`.
"""

from __future__ import annotations

import itertools
import json as jsonlib
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urljoin

import requests

from .errors import ConfigError, ProviderError, UsageError
from .provider import Provider
from .store import Store
from .token import Token
from .transport import talking_to, trust_env
from .urls import host_of, origin

__all__ = ["MAX_PAGES", "NOT_JSON", "ApiError", "ApiSession", "BearerSession", "pages", "session"]

# A provider that always names a next page would otherwise keep a script paging forever.
MAX_PAGES = 1000
NOT_JSON: Any = object()  # what `decoded` returns for a body that is not JSON
_INVALID_TOKEN = re.compile(r'\berror\s*=\s*"?invalid_token\b', re.IGNORECASE)


class ApiError(ProviderError):
    """An API call answered an error: HTTP >= 400, a redirect, or the provider's error code.

    `http_response` is the answer; `response` its JSON object, when it is one.
    """

    def __init__(self, message: str, response: requests.Response) -> None:
        super().__init__(message)
        self.http_response = response
        data = decoded(response)
        self.response = data if isinstance(data, dict) else None

    @property
    def redirect(self) -> bool:
        """Return True when the answer was a redirect (not followed)."""
        return bool(self.http_response.is_redirect)


def decoded(response: requests.Response) -> Any:
    """Return the response's body as JSON, or NOT_JSON (parsed once per response)."""
    cached = getattr(response, "_loopauth_json", None)
    if cached is None:
        try:
            cached = (jsonlib.loads(response.content),)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
            cached = (NOT_JSON,)
        response._loopauth_json = cached  # type: ignore[attr-defined]
    return cached[0]


class ApiSession(requests.Session):
    """A requests session for one provider's API: paths joined to `api_base_url`, no redirects.

    URLs at another origin are refused (the token must go nowhere else), and every request
    gets the provider's `http_timeout` unless it names one. Subclasses authorize requests.
    """

    def __init__(self, provider: Provider) -> None:
        super().__init__()
        base = provider.get("api_base_url")
        if not base:
            raise ConfigError(_no_base(provider))
        self.provider = provider
        self.base_url = str(base).rstrip("/")
        self.trust_env = trust_env(self.base_url)  # no proxy from the environment for loopback

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider.name!r}, base={self.base_url!r})"

    def url_for(self, url: str | bytes) -> str:
        """Return `url` (a path starting with /, or a URL under the API) as a full URL."""
        text = url.decode() if isinstance(url, bytes) else str(url)
        if text.startswith("/") and not text.startswith("//"):
            from urllib.parse import unquote, urlsplit

            segments = unquote(urlsplit(text).path).split("/")
            if "." in segments or ".." in segments:  # would leave api_base_url's path
                raise UsageError(
                    f"{text[:100]!r} has a . or .. segment; paths stay under "
                    f"{self.provider.name}'s api_base_url ({self.base_url})"
                )
            return self.base_url + text
        if origin(text) is None:
            raise UsageError(
                f"{text[:100]!r} is neither a path starting with / nor a URL; paths are joined "
                f"to {self.provider.name}'s api_base_url ({self.base_url})"
            )
        if origin(text) != origin(self.base_url):
            raise UsageError(
                f"{host_of(text)} is not {self.provider.name}'s API ({host_of(self.base_url)}); "
                "a session sends its token only to api_base_url"
            )
        return text

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        """Join a relative URL to the API's base before requests prepares (and authorizes) it."""
        request.url = self.url_for(request.url)
        return super().prepare_request(request)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Send `request` without following a redirect, with the provider's timeout."""
        self.url_for(request.url or "")  # one prepared elsewhere: the same origin rule
        # Forced here, not defaulted in request(): Session.get() passes allow_redirects=True,
        # and a redirect target must get neither the token nor a signature.
        kwargs["allow_redirects"] = False
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.provider.http_timeout
        return super().send(request, **kwargs)

    def pages(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        data: bytes | str | None = None,
        max_pages: int = MAX_PAGES,
    ) -> Iterator[requests.Response]:
        """Yield the answer to one call page by page (see the module's `pages`)."""
        return pages(self, method, path, params=params, json=json, data=data, max_pages=max_pages)

    def error_of(self, response: requests.Response) -> str | None:
        """Return what went wrong for stderr (a redirect, HTTP >= 400), or None for a success."""
        status = response.status_code
        if response.is_redirect:
            where = urljoin(response.url or self.base_url, response.headers.get("location", ""))
            return (
                f"HTTP {status}: the API answered with a redirect to {host_of(where)}; not "
                "followed (loopauth sends no token or signature on to another address)"
            )
        if status < 400:
            return None
        reason = f" {response.reason}" if isinstance(response.reason, str) else ""
        return f"HTTP {status}{reason}{_detail(decoded(response))}"


def _detail(data: Any) -> str:
    """Return ": error: description" from a JSON error answer (RFC 6749/6750 or a message)."""
    if not isinstance(data, dict):
        return ""
    error = data.get("error")
    if isinstance(error, dict):  # {"error": {"code": ..., "message": ...}} (Google, Graph)
        data, error = error, error.get("code")
    words = [
        str(value)
        for value in (
            error,
            data.get("error_description") or data.get("message") or data.get("detail"),
        )
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value)
    ]
    text = ": ".join(words)
    return f": {text[:500]}" if text else ""


class BearerSession(ApiSession):
    """The standard session: the stored token as `Authorization: Bearer`, refreshed as needed."""

    def __init__(self, provider: Provider, *, account: str | None, store: Store) -> None:
        super().__init__(provider)
        self.store = store
        self.account = account
        # Pinned to the account found now: a `switch` meanwhile must not change whose token
        # the next page is asked with. This also refreshes an expired token before any call.
        self.account = self.token().account

    def token(self, force: bool = False) -> Token:
        """Return the stored token, refreshed (and saved) first when needed or forced."""
        from .api import ensure_fresh

        return ensure_fresh(self.provider, self.account, self.store, force=force)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Send with a fresh token; refresh and send once more when it is called invalid."""
        self.url_for(request.url or "")  # refused before the token is put on it
        request.headers["Authorization"] = f"Bearer {self.token().access_token}"
        response = super().send(request, **kwargs)
        if response.status_code != 401 or not _INVALID_TOKEN.search(
            response.headers.get("www-authenticate", "")
        ):
            return response
        # RFC 6750 §3.1: the provider no longer takes this token (revoked, or expired before
        # its time): one forced refresh, one more try.
        response.close()
        retry = request.copy()
        retry.headers["Authorization"] = f"Bearer {self.token(force=True).access_token}"
        return super().send(retry, **kwargs)


def _no_base(provider: Provider) -> str:
    return (
        f"{provider.name} has no api_base_url: set it in providers.yaml to the base URL of "
        "its API (e.g. api_base_url: https://api.example.com)"
    )


def session(
    provider: str | Provider | None = None,
    *,
    account: str | None = None,
    config: str | None = None,
    store: Store | None = None,
    shop: str | None = None,
) -> ApiSession:
    """Return a requests session for the provider's API: paths, a fresh token, no redirects.

    `session("github").get("/user")`. The provider type decides how requests are authorized
    (a Bearer token, or TikTok Shop's signature); `shop` names one of a TikTok Shop account's
    authorized shops (name, id or cipher), whose `shop_cipher` then goes with every request.
    """
    from .api import resolve_provider, store_for

    resolved = resolve_provider(provider, config)
    if not resolved.get("api_base_url"):
        raise ConfigError(_no_base(resolved))
    factory = resolved.type.api_session
    if factory is None and shop is not None:
        raise UsageError(
            f"{resolved.name} (plugin {resolved.plugin}) has no shops: a shop can only be "
            "chosen for provider types that have them (tiktok_shop)"
        )
    opened = store_for(resolved, store)
    if factory is not None:
        return factory(resolved, account=account, store=opened, shop=shop)
    return BearerSession(resolved, account=account, store=opened)


def pages(
    api: ApiSession,
    method: str,
    path: str,
    *,
    params: Mapping[str, str] | None = None,
    json: Any = None,
    data: bytes | str | None = None,
    max_pages: int = MAX_PAGES,
) -> Iterator[requests.Response]:
    """Send a request and yield its answer page by page, as the provider type pages.

    The body (`json`, or `data` sent exactly as given) goes with every page. An error answer
    (HTTP >= 400, a redirect, or the provider's own error code) raises ApiError holding it; a
    next page at another origin, one asked for before, or more than `max_pages` raise
    ProviderError. Each page is asked for only when the previous one has been taken.
    """
    if json is not None and data is not None:
        raise UsageError("pages() takes json or data, not both")
    body = jsonlib.dumps(json).encode() if json is not None else data
    if isinstance(body, str):
        body = body.encode()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    name = api.provider.name
    url, query = path, dict(params or {})
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for number in itertools.count(1):
        seen.add((api.url_for(url), tuple(sorted(query.items()))))
        with talking_to(api.url_for(url), api.provider.http_timeout):
            response = api.request(method, url, params=query or None, data=body, headers=headers)
            problem = api.error_of(response)
        if problem is not None:
            raise ApiError(f"{name}: {problem}", response)
        yield response
        following = _next_page(api, url, query, response)
        if following is None:
            return
        if (api.url_for(following[0]), tuple(sorted(following[1].items()))) in seen:
            raise ProviderError(
                f"{name}: the API named a page already fetched as the next one; stopped after "
                f"{number} page(s) rather than loop"
            )
        if number >= max_pages:
            raise ProviderError(
                f"{name}: more than {max_pages} pages; stopped (ask for bigger pages, or "
                "allow more: --max-pages N, max_pages=N)"
            )
        url, query = following


def _next_page(
    api: ApiSession, url: str, query: dict[str, str], response: requests.Response
) -> tuple[str, dict[str, str]] | None:
    """Return the next page's (url, query), or None after the last page."""
    hook = api.provider.type.next_page
    if hook is not None:
        data = decoded(response)
        if data is NOT_JSON:
            return None
        following = hook(dict(query), data)
        return None if following is None else (url, dict(following))
    link = response.links.get("next", {}).get("url")
    if not link:
        return None
    target = urljoin(response.url, link).split("#", 1)[0]  # a fragment names no other page
    if origin(target) != origin(api.base_url):
        raise ProviderError(
            f"{api.provider.name}: the next page's link points to {host_of(target)}, not to "
            f"the API ({host_of(api.base_url)}); not followed"
        )
    return target, {}
