"""TikTok Shop's authorization as a provider type: service_id links, GET token requests with
the app credentials in the query, the `{code, message, data, request_id}` envelope with absolute
expiry times. Facts: ../shared/reference/tiktok-shop.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from loopauth.errors import ProviderError
from loopauth.oauth import sensible_time
from loopauth.provider import Account, Provider, ProviderType, Setting, TokenRequest
from loopauth.token import Token

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
        self.hint = hint = HINTS.get(code)
        text = f"{provider}: TikTok Shop error {code}: {message}"
        if request_id:
            text += f" (request_id {request_id})"
        if hint:
            text += f"; {hint}"
        if code in RELOGIN:
            text += f": run loopauth login {provider}"
        super().__init__(text, error=str(code), description=message, grant_rejected=code in RELOGIN)


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


def is_tiktok_shop(provider: Provider) -> bool:
    """Return True for a provider of this plugin's type."""
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
