"""TikTok Shop's authorization as a provider type: service_id (or, for creators, app_key)
links, GET token requests with the app credentials in the query, the
`{code, message, data, request_id}` envelope with absolute expiry times, and what TikTok's error
codes mean. Facts: ../shared/reference/tiktok-shop.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from loopauth.errors import AccessDenied, ProviderError
from loopauth.oauth import sensible_time
from loopauth.provider import Account, Provider, ProviderType, Setting, TokenRequest
from loopauth.token import Token

log = logging.getLogger("loopauth.tiktok_shop")

PLUGIN = "tiktok_shop"
AUTH_HOST = "https://auth.tiktok-shops.com"
# The token's `user_type` for each kind of account (TikTok's authorization overview).
USER_TYPES = {"seller": 0, "creator": 1, "partner": 3}
CREATOR_AUTHORIZE_URL = "https://shop.tiktok.com/alliance/creator/auth"
# user_type -> region -> authorization link. Creators have one host for every market.
AUTHORIZE_URLS = {
    "seller": {
        "global": "https://services.tiktokshop.com/open/authorize",
        # TikTok's current overview; its older 202309 guide still shows services.us.tiktokshop.com.
        "us": "https://services.tiktokshops.us/open/authorize",
    },
    "creator": {"global": CREATOR_AUTHORIZE_URL, "us": CREATOR_AUTHORIZE_URL},
    "partner": {
        "global": "https://partner.tiktokshop.com/open/authorize",
        "us": "https://partner.us.tiktokshop.com/open/authorize",
    },
}
SHOPS_PATH = "/authorization/202309/shops"
TOKEN_HEADER = "x-tts-access-token"
# TikTok accepts a request `timestamp` from this far behind to this far ahead of its clock.
TIMESTAMP_BEHIND, TIMESTAMP_AHEAD = 300, 30

HINTS = {
    36004004: "the authorization code was already used or has expired (codes live about "
    "30 minutes); log in again",
    36004005: "TikTok Shop does not know this refresh token (the authorization was revoked or "
    "replaced); log in again",
    36004001: "the refresh token has expired; log in again",
    105001: "the authorization was withdrawn (the seller deauthorized the app, or it was "
    "revoked); log in again",
    105002: "the access token has expired",
    105005: "the app lacks the API package (scope) for this call: add it in Partner Center; "
    "a creator who unticked the scope must log in again and allow it",
    106001: "the request signature was rejected: check the App Secret (client_secret)",
    36009004: "TikTok Shop did not accept the App Key: check client_id (US and global apps have "
    "different keys)",
    36009002: "rate limited: TikTok Shop allows about 50 requests a second per API, app and shop",
    36009003: "TikTok Shop had an internal error",
    101000: "this API is for another kind of account: seller APIs need a seller's token, creator "
    "APIs a creator's",
}
RELOGIN = (36004004, 36004005, 36004001)


def _kind(user_type: object) -> str | None:
    """Return "seller", "creator" or "partner" for a token's user_type, None if unknown."""
    return next((k for k, v in USER_TYPES.items() if v == user_type), None)


def clock_hint(clock_offset: float | None) -> str:
    """Return what to say when TikTok rejects the timestamp; offset = our clock minus TikTok's."""
    text = (
        "the request timestamp was rejected: check this computer's clock (TikTok Shop accepts "
        f"{TIMESTAMP_BEHIND} s behind to {TIMESTAMP_AHEAD} s ahead of its own)"
    )
    if clock_offset is None:
        return text
    seconds = round(abs(clock_offset))
    if seconds < 1:
        return f"{text}; it agrees with TikTok's clock to within a second"
    way = "ahead of" if clock_offset > 0 else "behind"
    return f"{text}; this computer's clock is {seconds} s {way} TikTok's"


def hint_for(
    code: int,
    message: str,
    *,
    user_type: object = None,
    clock_offset: float | None = None,
) -> str | None:
    """Return what TikTok's `code` means and what to do; `message` and context refine it."""
    if code == 36009004:
        return _invalid_parameter_hint(message.lower(), clock_offset)
    if code == 101000:
        kind = _kind(user_type)
        if kind == "seller":
            return (
                "this API is for creators and this account is a seller: call it with a "
                "creator's token (a provider with user_type: creator)"
            )
        if kind == "creator":
            return (
                "this API is for sellers and this account is a creator: call it with a "
                "seller's token (a provider with user_type: seller)"
            )
    return HINTS.get(code)


def _invalid_parameter_hint(message: str, clock_offset: float | None) -> str | None:
    """36009004 is TikTok's "invalid parameter": its message tells which one."""
    outside = clock_offset is not None and not (
        -TIMESTAMP_BEHIND <= clock_offset <= TIMESTAMP_AHEAD
    )
    # One code for a bad app_key and for a timestamp outside TikTok's window.
    if "timestamp" in message or outside:
        return clock_hint(clock_offset)
    if "secret" in message:
        return (
            "TikTok Shop did not accept the app's credentials: check client_id and "
            "client_secret (US and global apps have different keys)"
        )
    if "access token" in message or "access_token" in message:
        return "TikTok Shop does not know this access token (another app's?); log in again"
    if "app_key" in message or "app key" in message:
        return HINTS[36009004]
    if "_" in message or "body" in message:
        return None  # it names another parameter (shop_cipher, page_size...): that says it all
    return (
        "TikTok Shop uses this code for a bad App Key (check client_id; US and global apps have "
        "different keys) and for a timestamp outside its window (check this computer's clock)"
    )


def envelope_code(response: Mapping[str, Any]) -> int | None:
    """Return the envelope's numeric `code` ("36004005" counts), or None when there is none."""
    code = response.get("code")
    if isinstance(code, str) and code.strip().lstrip("-").isdigit():
        code = int(code)
    if isinstance(code, bool) or not isinstance(code, int):
        return None
    return code


class TikTokShopError(ProviderError):
    """TikTok Shop answered with a non-zero `code`."""

    def __init__(
        self,
        provider: str,
        code: int,
        message: str,
        request_id: str | None,
        *,
        status: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.code, self.tiktok_message, self.request_id = code, message, request_id
        self.status = status
        self.hint = hint = hint or hint_for(code, message)
        text = f"{provider}: TikTok Shop error {code}: {message}"
        where = [f"HTTP {status}"] if status and status != 200 else []
        if request_id:
            where.append(f"request_id {request_id}")
        if where:
            text += f" ({', '.join(where)})"
        if hint:
            text += f"; {hint}"
        if code in RELOGIN:
            text += f": run loopauth login {provider}"
        super().__init__(text, error=str(code), description=message, grant_rejected=code in RELOGIN)


def _derive(settings: dict[str, Any]) -> None:
    if not settings.get("authorization_endpoint"):
        links = AUTHORIZE_URLS.get(settings.get("user_type") or "seller", AUTHORIZE_URLS["seller"])
        settings["authorization_endpoint"] = links[settings.get("region") or "global"]


def _validate(settings: Mapping[str, Any]) -> str | None:
    user_type = settings.get("user_type") or "seller"
    required = [("client_id", "App Key"), ("client_secret", "App Secret")]
    if user_type != "creator":  # a creator's link carries the app key, not a Service ID
        required.append(("service_id", "Service ID"))
    for key, name in required:
        if not settings.get(key):
            if key == "service_id":
                return (
                    f"service_id: is required for user_type: {user_type} (the long number at "
                    "the end of the app's authorization link in Partner Center)"
                )
            return f"{key}: is required (the app's {name} in Partner Center)"
    if user_type == "creator":
        return None
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


def user_type(provider: Provider) -> str:
    """Return the kind of account the provider logs in: seller, creator or partner."""
    return str(provider.get("user_type") or "seller")


def authorization_params(provider: Provider, params: dict[str, str]) -> dict[str, str]:
    """service_id (creators: app_key) and state, plus PKCE when switched on and auth_params."""
    if user_type(provider) == "creator":
        # TikTok's creator link takes the App Key; its `state` is mandatory (always sent here).
        out = {"app_key": str(provider.get("client_id")), "state": params["state"]}
    else:
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
    code = envelope_code(response)
    if code is None:
        raise ProviderError(
            f"{provider.name}: TikTok Shop answered without a numeric `code` "
            "(not a TikTok Shop envelope)"
        )
    if code != 0:
        raise envelope_error(provider, response, code)
    data = response.get("data")
    if not isinstance(data, dict):
        raise ProviderError(f"{provider.name}: TikTok Shop answered code 0 without a `data` object")
    return data


def envelope_error(
    provider: Provider,
    response: Mapping[str, Any],
    code: int,
    *,
    status: int | None = None,
    hint: str | None = None,
) -> TikTokShopError:
    """Return the TikTokShopError for an envelope with non-zero `code`, the answer kept on it."""
    message, request_id = response.get("message"), response.get("request_id")
    error = TikTokShopError(
        provider.name,
        code,
        str(message) if message else "(no message)",
        str(request_id) if isinstance(request_id, str | int) else None,
        status=status,
        hint=hint,
    )
    error.response = dict(response)
    return error


def _check_user_type(provider: Provider, data: Mapping[str, Any], refresh: bool) -> None:
    """Refuse a token for another kind of account than the provider's user_type asks for."""
    got = data.get("user_type")
    if isinstance(got, str) and got.strip().isdigit():
        got = int(got)
    wanted = user_type(provider)
    if got is None or got == USER_TYPES[wanted]:
        return
    kind = _kind(got)
    who = f"a {kind} account" if kind else "an account of unknown kind"
    outcome = "the stored token was kept" if refresh else "nothing was stored"
    fix = f", or set user_type: {kind} for {provider.name}" if kind else ""
    raise AccessDenied(
        f"{provider.name}: TikTok Shop answered for {who} (user_type {got}), but "
        f"{provider.name} is set up for {wanted}s (user_type: {wanted}); {outcome}. "
        f"Log in with a {wanted} account{fix}"
    )


def parse_token_response(
    provider: Provider, response: Mapping[str, Any], previous: Token | None
) -> Token:
    """Unwrap the envelope; *_expire_in are absolute Unix times, not durations."""
    data = check_envelope(provider, response)
    _check_user_type(provider, data, refresh=previous is not None)

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
    """The account is the open_id; its label the seller name, saying creator or partner."""
    for key in ("shop_region", "locale"):  # only the redirect tells these
        if callback.get(key):
            token.extra[key] = callback[key]
    open_id = token.extra.get("open_id")
    if not isinstance(open_id, str) or not open_id:
        raise ProviderError(f"{provider.name}: TikTok Shop's token response has no open_id")
    name = token.extra.get("seller_name")
    name = name if isinstance(name, str) and name else None
    kind = _kind(token.extra.get("user_type"))
    if kind in (None, "seller"):
        return Account(open_id, name)
    # Creators often have no name: the end of the open_id keeps each label unique for --account.
    return Account(open_id, f"{name} ({kind})" if name else f"{kind} {open_id[-6:]}")


def _api_session(provider: Provider, **options: Any) -> Any:
    """`loopauth api`'s session: signed calls, `shop` resolved (api.py imports this module)."""
    from .api import shop_session

    return shop_session(provider, **options)


def _next_page(params: Mapping[str, str], response: Any) -> dict[str, str] | None:
    """TikTok's paging: data.next_page_token back as page_token (see session.next_page)."""
    from .session import next_page

    return next_page(params, response)


TIKTOK_SHOP = ProviderType(
    name=PLUGIN,
    description="TikTok Shop seller / creator / partner authorization",
    settings={
        "service_id": Setting(help="the Service ID from the app's authorization link"),
        "region": Setting(
            default="global",
            choices=("global", "us"),
            help="which authorization host: global or us",
        ),
        "user_type": Setting(
            default="seller",
            choices=tuple(USER_TYPES),
            help="who logs in: seller, creator (app_key link, no service_id) or partner",
        ),
        "sign_empty_params": Setting(
            "bool",
            default=True,
            help="send empty query parameters, signed as key + nothing; false leaves them out "
            "of the request and the signature (TikTok does not document which it expects)",
        ),
        "api_base_url": Setting(
            "url",
            default="https://open-api.tiktokglobalshop.com",
            help="Shop API base URL (all regions)",
        ),
        "api_retries": Setting(
            "int",
            default=4,
            help="Shop API calls retried after a rate limit (429) or, for GET/PUT/DELETE, a "
            "server error (5xx), at most this many times",
        ),
        "api_backoff": Setting(
            "float",
            default=1.0,
            help="seconds before the first retry: doubling, random (full jitter), at most 30 s "
            "each and 60 s in all; TikTok's Retry-After wins",
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
    api_session=_api_session,
    next_page=_next_page,
    init_settings=("client_id", "client_secret", "service_id", "region", "redirect_uri"),
    init_help="TikTok Shop: App Key (client_id), App Secret and Service ID are in Partner Center;\n"
    "the Redirect URL registered there must be this redirect_uri (docs/tiktok-shop.md).",
)
