"""The protocol, on authlib's pieces: discovery, authorization URL, code exchange, refresh,
account naming.

Everything here is the standard (RFC 6749/7636/8414) way; a provider type's own callables
replace single steps for its providers (`ProviderType.token_request`, ...).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import redact, transport
from .errors import NoTokenError, ProviderError
from .provider import Account, Provider, TokenRequest
from .token import Token, is_token_text
from .urls import check_url, host_of, safe_url

log = logging.getLogger("loopauth.oauth")

MAX_TIME = 253402300799  # 9999-12-31: any later expiry is garbage


def _well_known_urls(issuer: str) -> list[str]:
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    base = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    return [
        f"{base}{path}/.well-known/openid-configuration",
        f"{base}/.well-known/oauth-authorization-server{path}",  # RFC 8414 §3.1
    ]


def discover(provider: Provider) -> None:
    """Fill provider.metadata from the issuer's discovery document (once per provider object)."""
    issuer = provider.settings.get("issuer")
    if not issuer or provider.metadata:
        return
    shipped = provider.type.metadata(provider) if provider.type.metadata is not None else None
    if shipped is not None:  # the plugin knows it: no request before the browser opens
        _take_metadata(provider, shipped, "the plugin's own copy")
        return
    errors = []
    for url in _well_known_urls(issuer):
        try:
            doc = transport.request_json(
                "GET", url, f"discovery at {safe_url(url)}", timeout=provider.http_timeout
            )
        except ProviderError as exc:
            errors.append(str(exc))
            continue
        _take_metadata(provider, doc, f"the discovery document at {safe_url(url)}")
        return
    raise ProviderError(
        f"{provider.name}: discovery failed for issuer {issuer}: " + "; ".join(errors)
    )


def _take_metadata(provider: Provider, doc: Mapping[str, Any], source: str) -> None:
    """Check a discovery document against the configured issuer and keep its endpoints."""
    issuer = provider.settings.get("issuer")
    if doc.get("issuer") != issuer:
        raise ProviderError(
            f"{provider.name}: {source} names issuer {doc.get('issuer')!r}, not the "
            f"configured {issuer!r} (RFC 8414 §3.3)"
        )
    meta: dict[str, Any] = {"issuer": issuer}
    for key in (
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "revocation_endpoint",
        "device_authorization_endpoint",
    ):
        value = doc.get(key)
        if value is None:
            continue
        problem = check_url(value) if isinstance(value, str) else "is not a string"
        if problem:
            raise ProviderError(f"{provider.name}: discovered {key} {problem}")
        meta[key] = value
    if "authorization_response_iss_parameter_supported" in doc:
        meta["supports_iss"] = bool(doc["authorization_response_iss_parameter_supported"])
    meta["code_challenge_methods_supported"] = doc.get("code_challenge_methods_supported")
    provider.metadata = meta
    log.debug("discovered %s from %s", provider.name, source)


def endpoint(provider: Provider, key: str) -> str:
    """Return a required endpoint (configured or discovered), or raise ProviderError."""
    discover(provider)
    value = provider.get(key)
    if not value:
        raise ProviderError(f"{provider.name}: no {key} configured or discovered")
    return str(value)


@dataclass
class AuthorizationRequest:
    """The authorization URL with the state and PKCE verifier it was built with."""

    url: str
    redirect_uri: str
    state: str = field(repr=False)
    verifier: str | None = field(default=None, repr=False)


def authorization_request(provider: Provider, redirect_uri: str) -> AuthorizationRequest:
    """Build the authorization URL: fresh state (256 bits) and PKCE S256 unless turned off."""
    from authlib.common.urls import add_params_to_uri

    url = endpoint(provider, "authorization_endpoint")
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64) if provider.get("pkce") else None  # 86 chars
    params: dict[str, str] = {"response_type": "code", "client_id": provider.get("client_id") or ""}
    params["redirect_uri"] = redirect_uri
    scopes = provider.get("scope") or []
    if scopes:
        params["scope"] = " ".join(scopes)
    params["state"] = state
    if verifier:
        params["code_challenge"] = s256_challenge(verifier)
        params["code_challenge_method"] = "S256"
    params.update(provider.get("auth_params") or {})
    if provider.type.authorization_params is not None:
        params = provider.type.authorization_params(provider, dict(params))
    return AuthorizationRequest(
        add_params_to_uri(url, list(params.items())), redirect_uri, state, verifier
    )


def s256_challenge(verifier: str) -> str:
    """Return the PKCE S256 code challenge: BASE64URL(SHA256(ASCII(verifier))) (RFC 7636 §4.2).

    What authlib's `create_s256_code_challenge` computes, without importing authlib's OAuth 2
    package (its server side) before the browser opens.
    """
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


# What `send` and `transport.request_json` import, in that order.
PRELOAD = ("authlib.oauth2.auth", "authlib.oauth2.rfc6749.parameters", "requests")


def preload() -> None:
    """Import what a token exchange needs (requests, authlib's pieces) ahead of the exchange.

    Run in a background thread while the user is in the browser, so that the exchange after the
    redirect does not wait for the imports. A failure is left for the exchange to report.
    """
    import importlib

    try:
        for name in PRELOAD:  # in the order the exchange imports them: no lock-order surprises
            importlib.import_module(name)
    except Exception:
        log.debug("preloading the token exchange's modules failed", exc_info=True)


def sensible_time(provider: Provider, key: str, value: object, *, absolute: bool = False) -> float:
    """Return a token response's duration (or absolute Unix time) in seconds, or raise."""
    problem = f"{provider.name}: the token response's {key} is not a sensible " + (
        "Unix time" if absolute else "number"
    )
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ProviderError(problem)
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ProviderError(problem) from None
    low = 1e9 if absolute else 0  # an absolute time before 2001 is a duration or garbage
    if not math.isfinite(number) or not low <= number < MAX_TIME:
        raise ProviderError(problem)
    return number


def standard_token(provider: Provider, data: Mapping[str, Any], previous: Token | None) -> Token:
    """Parse an RFC 6749 §5.1 token response (or raise ProviderError for §5.2 errors)."""
    if "error" in data:
        error, desc = str(data.get("error")), data.get("error_description")
        text = f"{error}: {desc}" if desc else error
        raise ProviderError(
            f"{provider.name} refused the token request: {text}",
            error=error,
            description=str(desc) if desc else None,
        )
    access = data.get("access_token")
    if not isinstance(access, str) or not access:
        raise ProviderError(f"{provider.name}: the token response has no access_token")
    now = time.time()

    def number(key: str) -> float | None:
        value = data.get(key)
        return None if value is None else sensible_time(provider, key, value)

    expires_in, expires_at = number("expires_in"), number("expires_at")
    refresh_in = number("refresh_expires_in") or number("refresh_token_expires_in")
    refresh = data.get("refresh_token")
    if refresh is not None and not isinstance(refresh, str):
        raise ProviderError(f"{provider.name}: the token response's refresh_token is not a string")
    token_type = data.get("token_type") or "Bearer"
    if not isinstance(token_type, str):
        raise ProviderError(f"{provider.name}: the token response's token_type is not a string")
    scope = data.get("scope")
    if scope is not None and not isinstance(scope, str | list):
        raise ProviderError(f"{provider.name}: the token response's scope is not a string")
    if scope is None:
        scopes = previous.scopes if previous else list(provider.get("scope") or [])
    else:
        # RFC 6749 §3.3 separates with spaces; GitHub answers "read:user,user:email".
        scopes = (
            scope.replace(",", " ").split() if isinstance(scope, str) else [str(s) for s in scope]
        )
    token = Token(
        access,
        provider=provider.name,
        token_type=token_type,
        refresh_token=refresh or (previous.refresh_token if previous else None),  # RFC 6749 §6
        expires_at=now + expires_in if expires_in is not None else expires_at,
        refresh_expires_at=now + refresh_in
        if refresh_in is not None
        else (previous.refresh_expires_at if previous and not refresh else None),
        scopes=scopes,
        raw=dict(data),
    )
    if isinstance(data.get("id_token"), str):
        token.extra["id_token_claims"] = id_token_claims(provider, data["id_token"])
    return token


def id_token_claims(provider: Provider, id_token: str) -> dict[str, Any]:
    """Return an ID token's claims after checking iss and aud.

    The token came straight from the token endpoint over TLS (or loopback), so OpenID Connect
    Core §3.1.3.7 lets TLS stand in for the signature check.
    """
    try:
        payload = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        raise ProviderError(f"{provider.name}: the id_token is not a JWT") from None
    if not isinstance(claims, dict):
        raise ProviderError(f"{provider.name}: the id_token is not a JWT")
    issuer = provider.get("issuer")
    if issuer and not issued_by(provider, claims.get("iss"), claims):
        raise ProviderError(
            f"{provider.name}: the id_token was issued by {claims.get('iss')!r}, not {issuer!r}"
        )
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if provider.get("client_id") not in auds:
        raise ProviderError(f"{provider.name}: the id_token is not meant for this client")
    return claims


def issued_by(provider: Provider, iss: object, claims: Mapping[str, Any]) -> bool:
    """Return whether `iss` (a redirect's, or an id_token's with its claims) names the issuer."""
    if not isinstance(iss, str):
        return False
    custom = provider.type.issuer_matches
    if custom is not None:
        return custom(provider, iss, claims)
    expected = str(provider.get("issuer") or "")
    return hmac.compare_digest(iss.encode(), expected.encode())


def send(provider: Provider, request: TokenRequest, previous: Token | None) -> Token:
    """Send a token request (authlib builds it and authenticates the client) and parse the answer.

    Only authlib's protocol pieces are used: its requests integration would pull in its OpenID
    client and cryptography while the browser waits for its page.
    """
    from authlib.oauth2.auth import ClientAuth
    from authlib.oauth2.rfc6749.parameters import prepare_token_request

    redact.protect(provider.client_secret, *request.params.values())
    method = request.method.upper()
    what = f"{provider.name}'s token endpoint ({safe_url(request.url)})"
    # Building it can fail too (a plugin's client authentication, odd parameters): still a
    # ProviderError that quotes no URL.
    with transport.talking_to(request.url, provider.http_timeout):
        body = prepare_token_request(request.grant_type, **request.params)
        url = request.url
        if method == "GET":  # the parameters go in the query, as authlib's clients do
            url, body = f"{url}{'&' if '?' in url else '?'}{body}", ""
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
            **request.headers,
        }
        auth = ClientAuth(provider.get("client_id"), provider.client_secret, request.auth)
        url, headers, body = auth.prepare(method, url, headers, body)
    log.debug("%s %s (grant_type=%s)", method, safe_url(url), request.grant_type)
    data = transport.request_json(
        method, url, what, timeout=provider.http_timeout, headers=headers, body=body
    )
    try:
        parse = provider.type.parse_token_response or standard_token
        token = parse(provider, data, previous)
    except ProviderError as exc:
        exc.response = data  # Chilkat's AccessTokenResponse on error
        raise
    for key, value in (
        ("access_token", token.access_token),
        ("refresh_token", token.refresh_token),
    ):
        if value and not is_token_text(value):
            # RFC 6749 A.12: printable ASCII only; anything else is garbage, or an attack on
            # the terminal that `loopauth token` prints it to.
            raise ProviderError(
                f"{provider.name}: the token response's {key} has characters a token cannot have"
            )
    token.provider = provider.name
    if previous is not None:
        token.account_id = token.account_id or previous.account_id
        token.account_label = token.account_label or previous.account_label
        token.extra = {**previous.extra, **token.extra}
    return token


BINDING_KEYS = ("issuer", "client_id", "token_endpoint", "refresh_endpoint")


def binding(provider: Provider, *, network: bool = True) -> dict[str, str | None]:
    """Return who issues this provider's tokens: issuer, client id, token and refresh endpoints.

    Without `network`, endpoints that only discovery would tell are left out.
    """
    issuer, client_id = provider.get("issuer"), provider.get("client_id")
    out: dict[str, str | None] = {
        "issuer": str(issuer) if issuer else None,
        "client_id": str(client_id) if client_id else None,
    }
    token_endpoint = (
        endpoint(provider, "token_endpoint") if network else provider.get("token_endpoint")
    )
    if token_endpoint:
        out["token_endpoint"] = str(token_endpoint)
    refresh_endpoint = provider.get("refresh_endpoint") or token_endpoint
    if refresh_endpoint:
        out["refresh_endpoint"] = str(refresh_endpoint)
    return out


def _same(key: str, a: str | None, b: str | None) -> bool:
    if key.endswith("_endpoint") and a and b:  # a plugin's request may add a query string
        return urlsplit(a)._replace(query="", fragment="") == urlsplit(b)._replace(
            query="", fragment=""
        )
    return a == b


def check_binding(provider: Provider, token: Token, current: Mapping[str, str | None]) -> None:
    """Raise NoTokenError (exit 6, nothing sent) when `token` was issued for another setup.

    Only what both sides know is compared: a token saved by an older version is bound on use.
    """
    bound = token.bound_to
    changed = [
        k
        for k in BINDING_KEYS
        if k in bound and k in current and not _same(k, bound[k], current[k])
    ]
    if not changed:
        return
    key = changed[-1]  # endpoints first: their hosts say most
    was, now = bound.get(key), current.get(key)
    # The host says it best; the whole URL (without query) when only the path changed.
    whole = host_of(was or "") == host_of(now or "")
    who = token.account_label or token.account
    raise NoTokenError(
        f"the token for {provider.name} ({who}) was issued by {_issued_by(key, was, whole)} "
        f"({key}); providers.yaml now names {_issued_by(key, now, whole)}. loopauth sent "
        f"nothing. If the change is intended, run: loopauth login {provider.name}"
    )


def _issued_by(key: str, value: str | None, whole_url: bool) -> str:
    if key == "client_id":
        return f"client id {value!r}"
    if not value:
        return f"no {key}"
    return safe_url(value) if whole_url else host_of(value)


def exchange_code(
    provider: Provider,
    code: str,
    verifier: str | None,
    redirect_uri: str,
    callback: Mapping[str, str],
) -> Token:
    """Exchange an authorization code for a token (never retried: codes are single use)."""
    params = {"code": code, "redirect_uri": redirect_uri, **(provider.get("token_params") or {})}
    if verifier:
        params["code_verifier"] = verifier
    standard = TokenRequest(
        endpoint(provider, "token_endpoint"),
        "authorization_code",
        params,
        auth=provider.auth_method,
    )
    custom = provider.type.token_request
    request = custom(provider, standard, callback) if custom is not None else standard
    return send(provider, request, previous=None)


def refresh(provider: Provider, token: Token) -> Token:
    """Use the refresh token, only where it was issued; the result keeps the account and extras.

    The refresh token goes nowhere else: a providers.yaml changed since (or one in a folder the
    user cd'd into) gets nothing, not even a discovery request when the issuer changed.
    """
    check_binding(provider, token, binding(provider, network=False))
    current = binding(provider)
    check_binding(provider, token, current)
    url = current["refresh_endpoint"] or ""
    params = {"refresh_token": token.refresh_token or "", **(provider.get("token_params") or {})}
    standard = TokenRequest(url, "refresh_token", params, auth=provider.auth_method)
    custom = provider.type.refresh_request
    request = custom(provider, standard) if custom is not None else standard
    check_binding(provider, token, {"refresh_endpoint": request.url})  # where a plugin sends it
    new = send(provider, request, previous=token)
    new.bound_to = current
    return new


def name_account(provider: Provider, token: Token, callback: Mapping[str, str]) -> Account:
    """Return who the token belongs to: the type's account_for, else the id_token, else userinfo."""
    custom = provider.type.account_for
    account = custom(provider, token, callback) if custom is not None else None
    if account is not None:
        return account
    claims = token.extra.get("id_token_claims")
    if not claims and provider.get("userinfo_endpoint"):
        try:
            claims = transport.request_json(
                "GET",
                str(provider.get("userinfo_endpoint")),
                "userinfo",
                timeout=provider.http_timeout,
                headers={"Authorization": f"Bearer {token.access_token}"},
            )
        except ProviderError as exc:
            log.warning("could not name the account from userinfo: %s", exc)
            claims = None
    if isinstance(claims, dict) and claims.get("sub"):
        label = claims.get("email") or claims.get("preferred_username") or claims.get("name")
        return Account(str(claims["sub"]), str(label) if label else None)
    return Account("default")
