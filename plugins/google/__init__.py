"""The `google` plugin: Google's OAuth 2.0 / OpenID Connect for a Desktop app OAuth client.

Google is standard OpenID Connect; this states only what differs (facts and their sources:
docs/google.md):

- the endpoints come from Google's published discovery document, shipped with the plugin
  (openid-configuration.json), so nothing is fetched before the browser opens;
- the Desktop client's secret is required at the token endpoint, sent in the form body as
  Google's own libraries send it;
- `access_type=offline` and `prompt=consent` go with every browser login, so that each login
  gets a refresh token, not only the first one;
- Google grants `email` and `profile` under their URL names (`.../auth/userinfo.email`);
- an id_token may name the issuer without its scheme (`accounts.google.com`);
- with `hd` in auth_params (a Google Workspace domain), the id_token's `hd` claim is checked,
  as Google's id_token validation says: the parameter alone only changes Google's page.

`emulator` holds a local Google for tests and demos (`loopauth emulator google`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import loopauth
from loopauth.errors import AccessDenied
from loopauth.plugins.oauth2 import client_settings_problem
from loopauth.provider import Account, Provider, ProviderType, Setting

if TYPE_CHECKING:
    from loopauth.token import Token

__all__ = [
    "DOCUMENT",
    "GOOGLE",
    "GOOGLE_ISSUER",
    "OFFLINE_PARAMS",
    "USERINFO_SCOPES",
    "google_scope",
    "published_metadata",
]

PLUGIN = "google"
GOOGLE_ISSUER = "https://accounts.google.com"
# Google's discovery document (https://accounts.google.com/.well-known/openid-configuration) as
# published; package data, read on first use only.
DOCUMENT = "openid-configuration.json"
# The scopes Google grants under another name: a token response answers `email` with the URL.
USERINFO_SCOPES = {
    "email": "https://www.googleapis.com/auth/userinfo.email",
    "profile": "https://www.googleapis.com/auth/userinfo.profile",
}
_SAME_SCOPE = {**USERINFO_SCOPES, **{url: name for name, url in USERINFO_SCOPES.items()}}
# Sent with every browser login unless auth_params says otherwise. Google's installed-app guide
# says installed apps always get a refresh token, but its OpenID guide says a refresh token
# needs access_type=offline and comes only "the first time that you perform the code exchange
# flow"; `prompt=consent` shows the consent screen again, which is what a first time is. So a
# login on a second machine, or after the stored token was lost, still gets a refresh token.
OFFLINE_PARAMS = {"access_type": "offline", "prompt": "consent"}


@functools.cache
def published_metadata() -> Mapping[str, Any]:
    """Return Google's discovery document as shipped with the plugin (read once, when needed)."""
    import json
    from importlib import resources

    text = resources.files(__name__).joinpath(DOCUMENT).read_text(encoding="utf-8")
    document = json.loads(text)
    if not isinstance(document, dict):  # a broken installation, not a user's mistake
        raise RuntimeError(f"{__name__}/{DOCUMENT} is not a JSON object")
    return MappingProxyType(document)  # shared by every provider: read-only


def google_scope(scope: str) -> str:
    """Return a space-separated scope as Google's token responses write it (email as its URL)."""
    out: list[str] = []
    for name in scope.split():
        name = USERINFO_SCOPES.get(name, name)
        if name not in out:
            out.append(name)
    return " ".join(out)


def _metadata(provider: Provider) -> Mapping[str, Any] | None:
    """Google's shipped document for Google's issuer; any other issuer is discovered as usual."""
    if provider.settings.get("issuer") != GOOGLE_ISSUER:
        return None  # an emulator or a proxy named as issuer: fetched from it
    return published_metadata()


def _validate(settings: Mapping[str, Any]) -> str | None:
    if not settings.get("client_id"):
        return (
            "client_id: is required: the Client ID of a Desktop app OAuth client (Google Cloud "
            "console > APIs & Services > Credentials), ending in .apps.googleusercontent.com"
        )
    if not settings.get("client_secret"):
        return (
            "client_secret: is required: Google's token endpoint wants the client secret of a "
            "Desktop app client too (Google says that for an installed app it 'is obviously not "
            "treated as a secret'); set it from the environment, e.g. "
            "client_secret: ${GOOGLE_CLIENT_SECRET}"
        )
    if settings.get("token_endpoint_auth_method") == "none":
        return (
            "token_endpoint_auth_method: Google authenticates every client with its secret: "
            "use client_secret_post (the default) or client_secret_basic"
        )
    if (settings.get("auth_params") or {}).get("hd") and "openid" not in (
        settings.get("scope") or []
    ):
        return "auth_params: hd needs `openid` in scope: the domain is checked in the id_token"
    return client_settings_problem(settings)


def _authorization_params(provider: Provider, params: dict[str, str]) -> dict[str, str]:
    """Add access_type=offline and prompt=consent unless auth_params set them ("" drops one)."""
    for key, value in OFFLINE_PARAMS.items():
        params.setdefault(key, value)
    return {k: v for k, v in params.items() if not (k in OFFLINE_PARAMS and v == "")}


def _issuer_matches(provider: Provider, iss: str, claims: Mapping[str, Any]) -> bool:
    """An id_token's iss may lack the scheme ("accounts.google.com"); a redirect's may not."""
    issuer = str(provider.get("issuer") or "")
    if not issuer:
        return False
    if iss == issuer:
        return True
    # Google: an id_token's iss is "https://accounts.google.com or accounts.google.com". No
    # such leniency for a redirect's iss (claims == {}): what Google sends there has the scheme.
    _, sep, bare = issuer.partition("://")
    return bool(claims) and bool(sep) and iss == bare


def _account_for(provider: Provider, token: Token, callback: Mapping[str, str]) -> Account | None:
    """Refuse an account outside the `hd` domain asked for; else name it the standard way."""
    wanted = (provider.get("auth_params") or {}).get("hd")
    if not wanted:
        return None
    claims = token.extra.get("id_token_claims") or {}
    got = claims.get("hd")
    # Google: hd "is a UI optimization" only; the id_token's hd claim says the account's domain
    # and its absence "indicates that the account does not belong to a Google hosted domain".
    if got == wanted or (wanted == "*" and got):
        return None
    who = claims.get("email") or "the account"
    domain = "any Google Workspace domain" if wanted == "*" else f"the domain {wanted}"
    raise AccessDenied(
        f"{provider.name}: {who} is not in {domain} (auth_params hd)"
        + ("" if claims else ", or Google sent no id_token to tell")
        + "; nothing was stored. Log in with an account of that domain"
    )


def _scope_granted(provider: Provider, scope: str, token: Token) -> bool:
    """`email` counts as granted when Google answers with its URL name, and the other way round."""
    granted = set(token.scopes)
    return scope in granted or _SAME_SCOPE.get(scope) in granted


GOOGLE = ProviderType(
    name=PLUGIN,
    description="Google accounts and APIs (OpenID Connect, a Desktop app OAuth client)",
    settings={
        "client_id": Setting(help="Client ID of a Desktop app OAuth client (Google Cloud console)"),
        "client_secret": Setting(
            secret=True,
            help="that client's secret: Google requires it (not confidential for a Desktop app)",
        ),
    },
    defaults={
        "issuer": GOOGLE_ISSUER,
        "scope": ["openid", "email"],
        # Both are in Google's discovery document; Google's Python libraries (google-auth,
        # google-auth-oauthlib) send client_id and client_secret as form fields, as do
        # Google's own request samples.
        "token_endpoint_auth_method": "client_secret_post",
        # Google's loopback form: 127.0.0.1 (localhost "may cause issues with client
        # firewalls"), any port, the root path as in Google's samples and libraries.
        "redirect_uri": "http://127.0.0.1:0/",
    },
    validate=_validate,
    authorization_params=_authorization_params,
    account_for=_account_for,
    metadata=_metadata,
    issuer_matches=_issuer_matches,
    scope_granted=_scope_granted,
    init_settings=("client_id", "client_secret", "scope"),
    init_help=(
        "Google: Google Cloud console > APIs & Services > Credentials > Create credentials >\n"
        "OAuth client ID > Application type: Desktop app. Nothing to register as redirect URI:\n"
        "Google takes a loopback redirect (http://127.0.0.1) on any port from a Desktop client.\n"
        "`login --device` needs a second client of type 'TVs and Limited Input devices'."
    ),
)


@loopauth.hookimpl
def register_provider_types(register: Callable[[ProviderType], None]) -> None:
    """Register `google`."""
    register(GOOGLE)


@loopauth.hookimpl
def register_emulators(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the Google emulator."""
    from .emulator import GoogleEmulator

    register(PLUGIN, GoogleEmulator)
