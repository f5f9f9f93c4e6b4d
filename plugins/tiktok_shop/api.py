"""Signed Shop API calls: TikTok's request signature, a requests auth that keeps the token
fresh, a session for relative paths, and `loopauth shops`."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import loopauth
from loopauth.errors import ProviderError
from loopauth.provider import Provider
from loopauth.token import Token
from loopauth.transport import read_json

from .auth import PLUGIN, SHOPS_PATH, TOKEN_HEADER, check_envelope, is_tiktok_shop

if TYPE_CHECKING:
    import argparse

    import requests

    from loopauth.store import Store


def sign(
    secret: str,
    path: str,
    params: Mapping[str, str],
    body: bytes | str | None = None,
    *,
    include_empty: bool = True,
) -> str:
    """Return TikTok Shop's request signature (lowercase hex HMAC-SHA256).

    Sorted query parameters except sign and access_token, as key+value with no separators and
    no URL-encoding, after the path; then the exact body bytes; all wrapped in the secret.
    Whether TikTok signs empty parameters is not documented: `include_empty` chooses.
    """
    pairs = sorted(
        (k, v)
        for k, v in params.items()
        if k not in ("sign", "access_token") and (include_empty or v != "")
    )
    base = (path + "".join(f"{k}{v}" for k, v in pairs)).encode()
    if body:
        base += body.encode() if isinstance(body, str) else body
    key = secret.encode()
    return hmac.new(key, key + base + key, hashlib.sha256).hexdigest()


class TikTokShopAuth:
    """A `requests` auth (any callable will do) signing Shop API calls with a fresh stored token.

    `requests.get(url, auth=TikTokShopAuth("tiktok-shop"))` adds app_key, timestamp, sign and
    the x-tts-access-token header; when TikTok answers 105002 (the access token expired on its
    side) it refreshes the stored token and sends the request once more. If the caller's session
    follows a redirect, the token header is taken off first: the next host gets no token.
    """

    def __init__(
        self,
        provider: str | Provider | None = None,
        *,
        account: str | None = None,
        config: str | None = None,
        store: Store | None = None,
    ) -> None:
        from loopauth.api import resolve_provider
        from loopauth.stores import open_store

        self.provider = resolve_provider(provider, config)
        if not is_tiktok_shop(self.provider):
            raise loopauth.ConfigError(
                f"{self.provider.name} uses plugin {self.provider.plugin}, not {PLUGIN}"
            )
        self.account = account
        self.store = store or open_store(self.provider)

    def __repr__(self) -> str:
        return f"TikTokShopAuth(provider={self.provider.name!r}, account={self.account!r})"

    def token(self, force: bool = False) -> Token:
        """Return the stored token, refreshed (and saved) first when needed or forced."""
        from loopauth.api import ensure_fresh

        return ensure_fresh(self.provider, self.account, self.store, force=force)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        self._sign(request, self.token())
        request.register_hook("response", self._retry_when_expired)  # type: ignore[no-untyped-call]
        return request

    def _sign(self, request: requests.PreparedRequest, token: Token) -> None:
        parts = urlsplit(request.url or "")
        query = [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k not in ("app_key", "timestamp", "sign", "access_token")
        ]
        names = [k for k, _ in query]
        repeated = sorted({k for k in names if names.count(k) > 1})
        if repeated:  # how TikTok signs repeated parameters is not documented: don't guess
            raise ProviderError(
                f"query parameter {repeated[0]!r} is repeated; TikTok Shop's signing of repeated "
                "parameters is not documented, so send one value (e.g. comma-separated)"
            )
        query += [
            ("app_key", str(self.provider.get("client_id"))),
            ("timestamp", str(int(time.time()))),  # seconds, not milliseconds
        ]
        ctype = request.headers.get("Content-Type", "")
        body = None if ctype.startswith("multipart/") else request.body
        if body is not None and not isinstance(body, bytes | str):
            raise ProviderError("TikTokShopAuth needs the request body as bytes or text to sign it")
        signature = sign(
            str(self.provider.client_secret),
            parts.path,
            dict(query),
            body,
            include_empty=bool(self.provider.get("sign_empty_params", True)),
        )
        request.url = urlunsplit(parts._replace(query=urlencode([*query, ("sign", signature)])))
        request.headers[TOKEN_HEADER] = token.access_token
        request.headers.setdefault("Content-Type", "application/json")
        # requests' redirect hops are copies without this mark and share our response hook:
        # only an answer to a request signed here may trigger a re-signed retry.
        request._tts_signed = True  # type: ignore[attr-defined]

    def _retry_when_expired(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        if _drop_token_before_redirect(response, response.request):
            return response
        if (
            response.status_code not in (200, 401)
            or not getattr(response.request, "_tts_signed", False)
            or getattr(response.request, "_retried", False)
        ):
            return response
        try:
            code = response.json().get("code")
        except (ValueError, AttributeError, RecursionError):
            return response
        if code != 105002:
            return response
        retry = response.request.copy()
        retry._retried = True  # type: ignore[attr-defined]
        self._sign(retry, self.token(force=True))
        response.content  # noqa: B018 - read it so the connection can be reused
        response.close()
        # The adapter itself never follows redirects; a caller's session may follow this answer,
        # and it does so from a copy of the original request, not of `retry`.
        again: requests.Response = response.connection.send(retry, **kwargs)
        _drop_token_before_redirect(again, response.request, retry)
        again.history.append(response)
        return again


def _drop_token_before_redirect(
    response: requests.Response, *sent: requests.PreparedRequest
) -> bool:
    """Remove the token header from `sent` when `response` is a redirect; say whether it was."""
    if not response.is_redirect:
        return False
    # requests builds the next hop from a copy of these very objects, made after the hooks ran,
    # and only strips Authorization when the host changes, never x-tts-access-token.
    for request in sent:
        request.headers.pop(TOKEN_HEADER, None)
    return True


def shop_session(
    provider: str | Provider | None = None,
    *,
    account: str | None = None,
    config: str | None = None,
    store: Store | None = None,
) -> requests.Session:
    """Return a requests session for the Shop API: relative paths, signed, token kept fresh."""
    import requests

    from loopauth.transport import trust_env

    auth = TikTokShopAuth(provider, account=account, config=config, store=store)
    base = str(auth.provider.get("api_base_url")).rstrip("/")

    class ShopSession(requests.Session):
        def request(
            self,
            method: str | bytes,
            url: str | bytes,
            *args: Any,
            **kwargs: Any,
        ) -> requests.Response:
            url = url.decode() if isinstance(url, bytes) else url
            if url.startswith("/"):
                url = base + url
            kwargs.setdefault("timeout", auth.provider.http_timeout)
            return super().request(method, url, *args, **kwargs)

        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
            # Forced here, not defaulted in request(): Session.get() passes
            # allow_redirects=True, and a redirect target must get neither token nor signature.
            kwargs["allow_redirects"] = False
            return super().send(request, **kwargs)

    session = ShopSession()
    session.auth = auth
    session.trust_env = trust_env(base)
    return session


def get_authorized_shops(
    provider: str | Provider | None = None,
    *,
    account: str | None = None,
    config: str | None = None,
    store: Store | None = None,
) -> list[dict[str, Any]]:
    """Call Get Authorized Shops and return TikTok's list of shops."""
    from loopauth.transport import talking_to

    session = shop_session(provider, account=account, config=config, store=store)
    auth: TikTokShopAuth = session.auth  # type: ignore[assignment]
    url = f"{auth.provider.get('api_base_url')}{SHOPS_PATH}"
    with talking_to(url, auth.provider.http_timeout), session:
        data = read_json(session.get(SHOPS_PATH, stream=True), f"{auth.provider.name}'s Shop API")
    shops = check_envelope(auth.provider, data).get("shops")
    if not isinstance(shops, list) or not all(isinstance(s, dict) for s in shops):
        raise ProviderError(f"{auth.provider.name}: Get Authorized Shops returned no shop list")
    return shops


def shops_command(args: argparse.Namespace) -> int:
    """`loopauth shops`: the shops the stored token covers."""
    shops = get_authorized_shops(args.provider, account=args.account, config=args.config)
    if args.json:
        from loopauth.terminal import json_text

        print(json_text(shops, indent=2, ensure_ascii=False))
        return 0
    if not shops:
        print("no authorized shops")
    for shop in shops:
        print(
            f"{shop.get('name')}  region={shop.get('region')}  "
            f"seller_type={shop.get('seller_type')}  cipher={shop.get('cipher')}"
        )
    return 0
