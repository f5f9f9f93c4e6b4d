"""The `tiktok_shop` plugin: TikTok Shop seller authorization, token refresh and signed API calls.

TikTok Shop is OAuth2 in outline only: the authorization link carries a `service_id` and no
client_id or redirect_uri; the code exchange and the refresh are GET requests with the app
secret in the query string; answers come in a `{code, message, data, request_id}` envelope with
absolute expiry timestamps. Facts: ../shared/reference/tiktok-shop.md.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import loopauth
from loopauth.errors import ProviderError
from loopauth.oauth import sensible_time
from loopauth.provider import Account, Provider, ProviderType, Setting, TokenRequest
from loopauth.token import Token
from loopauth.transport import read_json

if TYPE_CHECKING:
    import argparse

    import requests

    from loopauth.command import Command
    from loopauth.store import TokenStore

log = logging.getLogger("loopauth.tiktok_shop")

PLUGIN = "tiktok_shop"
AUTH_HOST = "https://auth.tiktok-shops.com"
AUTHORIZE_URLS = {
    "global": "https://services.tiktokshop.com/open/authorize",
    "us": "https://services.us.tiktokshop.com/open/authorize",
}
SHOPS_PATH = "/authorization/202309/shops"
TOKEN_HEADER = "x-tts-access-token"

HINTS = {
    36004004: "the authorization code was already used or has expired (codes live about "
    "30 minutes); log in again",
    36004005: "TikTok Shop does not know this refresh token (the authorization was revoked or "
    "replaced); log in again",
    36004001: "the refresh token has expired; log in again",
    105002: "the access token has expired",
    106001: "the request signature or timestamp was rejected (check the App Secret and the clock)",
    105005: "the app lacks the API package for this call; add it in Partner Center",
}
RELOGIN = (36004004, 36004005, 36004001)


class TikTokShopError(ProviderError):
    """TikTok Shop answered with a non-zero `code`."""

    def __init__(self, provider: str, code: int, message: str, request_id: str | None) -> None:
        self.code, self.tiktok_message, self.request_id = code, message, request_id
        hint = HINTS.get(code)
        text = f"{provider}: TikTok Shop error {code}: {message}"
        if request_id:
            text += f" (request_id {request_id})"
        if hint:
            text += f"; {hint}"
        if code in RELOGIN:
            text += f": run loopauth login {provider}"
        super().__init__(text, error=str(code), description=message)


def _derive(settings: dict[str, Any]) -> None:
    if not settings.get("authorization_endpoint"):
        settings["authorization_endpoint"] = AUTHORIZE_URLS[settings.get("region") or "global"]


def _validate(settings: Mapping[str, Any]) -> str | None:
    for key, name in (
        ("client_id", "App Key"),
        ("client_secret", "App Secret"),
        ("service_id", "Service ID"),
    ):
        if not settings.get(key):
            return f"{key}: is required (the app's {name} in Partner Center)"
    service_id = str(settings["service_id"])
    if service_id == settings["client_id"] or not service_id.isdigit():
        # Passing the app key here gives TikTok's "This service does not exist" page.
        log.warning(
            "service_id does not look like a Service ID: that is the long number at "
            "the end of the app's authorization link in Partner Center, not the App Key",
        )
    return None


def _ours(provider: Provider) -> bool:
    return provider.plugin == PLUGIN


def app_credentials(
    client: Any, method: str, uri: str, headers: dict[str, str], body: str
) -> tuple[str, dict[str, str], str]:
    """authlib client authentication: app_key and app_secret go into the query string."""
    parts = urlsplit(uri)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k not in ("app_key", "app_secret")
    ]
    query += [("app_key", client.client_id), ("app_secret", client.client_secret or "")]
    return urlunsplit(parts._replace(query=urlencode(query))), headers, body


@loopauth.hookimpl
def register_provider_types(register: Callable[[ProviderType], None]) -> None:
    """Register `tiktok_shop`."""
    register(TIKTOK_SHOP)


@loopauth.hookimpl
def register_emulators(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the TikTok Shop emulator."""
    from loopauth.plugins.tiktok_shop_emulator import TikTokShopEmulator

    register(PLUGIN, TikTokShopEmulator)


def authorization_params(provider: Provider, params: dict[str, str]) -> dict[str, str]:
    """Only service_id and state (plus PKCE when switched on, and the user's auth_params)."""
    out = {"service_id": str(provider.get("service_id")), "state": params["state"]}
    for key in ("code_challenge", "code_challenge_method"):
        if key in params:
            out[key] = params[key]
    out.update(provider.get("auth_params") or {})
    return out


def token_request(
    provider: Provider, request: TokenRequest, callback: Mapping[str, str]
) -> TokenRequest:
    """GET token/get with auth_code and grant_type=authorized_code (TikTok's spelling)."""
    params = {"auth_code": request.params["code"], **(provider.get("token_params") or {})}
    if "code_verifier" in request.params:
        params["code_verifier"] = request.params["code_verifier"]
    return TokenRequest(request.url, "authorized_code", params, method="GET", auth=app_credentials)


def refresh_request(provider: Provider, request: TokenRequest) -> TokenRequest:
    """GET token/refresh: TikTok answers a POST with 404, and needs app_secret here too."""
    params = {
        "refresh_token": request.params["refresh_token"],
        **(provider.get("token_params") or {}),
    }
    return TokenRequest(request.url, "refresh_token", params, method="GET", auth=app_credentials)


def check_envelope(provider: Provider, response: Mapping[str, Any]) -> dict[str, Any]:
    """Return the envelope's `data`, or raise TikTokShopError for a non-zero code."""
    code = response.get("code")
    request_id = response.get("request_id")
    request_id = str(request_id) if isinstance(request_id, str | int) else None
    if isinstance(code, str) and code.strip().lstrip("-").isdigit():  # "36004005" is still a code
        code = int(code)
    if isinstance(code, bool) or not isinstance(code, int):
        raise ProviderError(
            f"{provider.name}: TikTok Shop answered without a numeric `code` "
            "(not a TikTok Shop envelope)"
        )
    if code != 0:
        message = response.get("message")
        raise TikTokShopError(
            provider.name, code, str(message) if message else "(no message)", request_id
        )
    data = response.get("data")
    if not isinstance(data, dict):
        raise ProviderError(f"{provider.name}: TikTok Shop answered code 0 without a `data` object")
    return data


def parse_token_response(
    provider: Provider, response: Mapping[str, Any], previous: Token | None
) -> Token:
    """Unwrap the envelope; *_expire_in are absolute Unix times, not durations."""
    data = check_envelope(provider, response)

    def text(key: str) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value:
            raise ProviderError(
                f"{provider.name}: TikTok Shop's token response has a missing or malformed {key}"
            )
        return value

    def when(key: str) -> float:
        # Absolute Unix times, not durations: read as durations, refresh would never happen.
        return sensible_time(provider, key, data.get(key), absolute=True)

    open_id = data.get("open_id")
    if (
        previous is not None
        and open_id is not None
        and open_id != previous.extra.get("open_id", open_id)
    ):
        raise ProviderError(
            f"{provider.name}: the refresh answered for another account "
            f"(open_id {open_id!r}); the stored token was kept"
        )

    scopes = data.get("granted_scopes") or []
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise ProviderError(f"{provider.name}: TikTok Shop's granted_scopes is not a list")
    extra: dict[str, Any] = {
        key: data[key]
        for key in ("open_id", "seller_name", "seller_base_region", "user_type")
        if key in data
    }
    # If a refresh ever answers without a refresh token, the previous one stays valid.
    refresh: str | None
    refresh_expires: float | None
    if previous is None or data.get("refresh_token") is not None:
        refresh, refresh_expires = text("refresh_token"), when("refresh_token_expire_in")
    else:
        refresh, refresh_expires = previous.refresh_token, previous.refresh_expires_at
    return Token(
        text("access_token"),
        provider=provider.name,
        token_type="Bearer",
        refresh_token=refresh,
        expires_at=when("access_token_expire_in"),
        refresh_expires_at=refresh_expires,
        scopes=list(scopes),
        raw=dict(response),
        extra=extra,
    )


def account_for(provider: Provider, token: Token, callback: Mapping[str, str]) -> Account:
    """The account is the open_id; its label the seller name (creators have none)."""
    for key in ("shop_region", "locale"):  # only the redirect tells these
        if callback.get(key):
            token.extra[key] = callback[key]
    open_id = token.extra.get("open_id")
    if not isinstance(open_id, str) or not open_id:
        raise ProviderError(f"{provider.name}: TikTok Shop's token response has no open_id")
    name = token.extra.get("seller_name")
    return Account(open_id, name if isinstance(name, str) and name else None)


TIKTOK_SHOP = ProviderType(
    name=PLUGIN,
    description="TikTok Shop seller / creator authorization",
    settings={
        "service_id": Setting(help="the Service ID from the app's authorization link"),
        "region": Setting(
            default="global",
            choices=("global", "us"),
            help="which authorization host: global or us",
        ),
        "sign_empty_params": Setting(
            "bool",
            default=True,
            help="sign empty query parameters as key + nothing (TikTok does not document it)",
        ),
        "api_base_url": Setting(
            "url",
            default="https://open-api.tiktokglobalshop.com",
            help="Shop API base URL (all regions)",
        ),
    },
    defaults={
        "redirect_uri": "http://localhost:3017/",
        "token_endpoint": f"{AUTH_HOST}/api/v2/token/get",
        "refresh_endpoint": f"{AUTH_HOST}/api/v2/token/refresh",
        "pkce": False,  # not documented by TikTok; can be switched on per provider
        "denied_errors": ["auth_denied", "access_denied"],
        # Access tokens live 7 days: refreshing in the last day keeps scheduled jobs (and the
        # seed-style --output file they rewrite) from ever handing out an expired token.
        "refresh_leeway": 86400.0,
    },
    derive=_derive,
    validate=_validate,
    authorization_params=authorization_params,
    token_request=token_request,
    refresh_request=refresh_request,
    parse_token_response=parse_token_response,
    account_for=account_for,
)


# -- Signed Shop API calls -----------------------------------------------------------------


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
        store: TokenStore | None = None,
    ) -> None:
        from loopauth.api import resolve_provider
        from loopauth.store import TokenStore

        self.provider = resolve_provider(provider, config)
        if not _ours(self.provider):
            raise loopauth.ConfigError(
                f"{self.provider.name} uses plugin {self.provider.plugin}, not {PLUGIN}"
            )
        self.account = account
        self.store = store or TokenStore()

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
    store: TokenStore | None = None,
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
    store: TokenStore | None = None,
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


def _shops_command(args: argparse.Namespace) -> int:
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


@loopauth.hookimpl
def register_commands(register: Callable[[Command], None]) -> None:
    """Add `loopauth shops`."""
    from loopauth.command import Command

    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    register(
        Command(
            "shops",
            "list the shops a TikTok Shop token is authorized for (Get Authorized Shops)",
            _shops_command,
            configure,
        )
    )
