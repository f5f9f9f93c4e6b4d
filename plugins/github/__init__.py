"""The `github` plugin: GitHub and GitHub Enterprise Server logins (OAuth apps, GitHub Apps).

GitHub is OAuth2 with its own habits, each handled here rather than in the core: endpoints
derived from one `host`, no discovery document, no `response_type` in the authorization URL,
a client secret the code exchange needs (the device flow does not), answers form-encoded unless
JSON is asked for (the core asks), scopes granted comma-separated and normalized, errors with
HTTP 200, `bad_refresh_token` for a dead refresh token, the account named by `GET /user`, and no
RFC 7009 revocation. `emulator` holds a local GitHub for tests and demos. Facts and sources:
docs/github.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import loopauth
from loopauth.errors import ConfigError, ProviderError, UsageError
from loopauth.plugins.oauth2 import client_settings_problem
from loopauth.provider import Account, Provider, ProviderType, Setting
from loopauth.urls import check_url, safe_url

if TYPE_CHECKING:
    from loopauth.apiclient import ApiSession
    from loopauth.store import Store
    from loopauth.token import Token

__all__ = [
    "API_HEADERS",
    "DEFAULT_HOST",
    "GITHUB",
    "HINTS",
    "INCLUDED_SCOPES",
    "PLUGIN",
    "GitHubError",
    "api_base",
    "web_origin",
]

log = logging.getLogger("loopauth.github")

PLUGIN = "github"
DEFAULT_HOST = "github.com"
# Where each endpoint lives under the web host (github.com, or a GHES host): the same paths on
# both (GitHub's `oauth_host_code` variable in its docs: https://github.com or http(s)://HOST).
ENDPOINT_PATHS = {
    "authorization_endpoint": "/login/oauth/authorize",
    "token_endpoint": "/login/oauth/access_token",
    "device_authorization_endpoint": "/login/device/code",
}
# What GitHub's REST docs send with `GET /user`. 2022-11-28 is also what GitHub assumes when the
# header is absent; pinning it keeps answers stable when GitHub's default moves.
API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
# GitHub's scope table nests these under their parent: a token granted the parent holds them,
# and GitHub "normalizes" a request for both to the parent alone (scopes-for-oauth-apps).
INCLUDED_SCOPES: dict[str, frozenset[str]] = {
    "repo": frozenset(
        {"repo:status", "repo_deployment", "public_repo", "repo:invite", "security_events"}
    ),
    "admin:repo_hook": frozenset({"write:repo_hook", "read:repo_hook"}),
    "admin:org": frozenset({"write:org", "read:org"}),
    "admin:public_key": frozenset({"write:public_key", "read:public_key"}),
    "user": frozenset({"read:user", "user:email", "user:follow"}),
    "project": frozenset({"read:project"}),
    "admin:gpg_key": frozenset({"write:gpg_key", "read:gpg_key"}),
    "admin:enterprise": frozenset(
        {"manage_runners:enterprise", "manage_billing:enterprise", "read:enterprise"}
    ),
}
# What GitHub's token-endpoint error codes mean, and what to do about them.
HINTS = {
    "incorrect_client_credentials": "GitHub did not accept the client_id and client_secret: "
    "check both (a regenerated secret replaces the old one)",
    "redirect_uri_mismatch": "register the callback URL http://127.0.0.1/callback in the app's "
    "settings (OAuth apps take any port on a loopback callback; a GitHub App needs the exact "
    "URL, port included)",
    "bad_verification_code": "the code was incorrect or has expired (codes live 10 minutes); "
    "log in again",
    "unverified_user_email": "the GitHub user must verify their primary email address first",
    "bad_refresh_token": "GitHub refresh tokens work once and expire after six months",
    "device_flow_disabled": "enable the device flow in the app's settings on GitHub",
}
# Dead for good: only a new login helps (the core remembers it and asks no more).
DEAD_GRANT_ERRORS = ("bad_refresh_token", "bad_verification_code")


class GitHubError(ProviderError):
    """GitHub refused a token request; `hint` says what its error code means."""

    def __init__(self, message: str, *, error: str, description: str | None, hint: str) -> None:
        self.hint = hint
        super().__init__(
            f"{message.rstrip('. ')}; {hint}",  # GitHub's descriptions end with a period
            error=error,
            description=description,
            grant_rejected=error in DEAD_GRANT_ERRORS,
        )


def web_origin(host: str) -> str | None:
    """Return the web origin for a `host` setting (github.com, HOST[:PORT] or a URL), or None.

    A bare host name means https; a URL may say http only for a loopback host (an emulator).
    """
    text = host.strip()
    if "://" not in text:
        text = f"https://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a bad port
    except ValueError:
        return None
    if port == 0:  # a real server listens on a real port
        return None
    if (
        parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
        or check_url(text) is not None
    ):
        return None
    return f"{parts.scheme}://{parts.netloc}"


def api_base(origin: str) -> str:
    """Return the REST API base URL for a web origin from `web_origin`."""
    parts = urlsplit(origin)
    hostname = (parts.hostname or "").lower()
    if hostname == DEFAULT_HOST:
        return "https://api.github.com"
    if hostname.endswith(".ghe.com"):  # GitHub Enterprise Cloud with data residency
        return f"{parts.scheme}://api.{parts.netloc}"
    return f"{origin}/api/v3"  # GitHub Enterprise Server


def _derive(settings: dict[str, Any]) -> None:
    """Fill the endpoints from `host` and the client authentication from the secret."""
    origin = web_origin(str(settings.get("host") or DEFAULT_HOST))
    if origin is not None:  # else validate names the problem
        for key, path in ENDPOINT_PATHS.items():
            if not settings.get(key):  # an explicit endpoint always wins
                settings[key] = origin + path
        if not settings.get("api_base_url"):
            settings["api_base_url"] = api_base(origin)
    if not settings.get("token_endpoint_auth_method"):
        # GitHub documents the secret as a form parameter; none for the device flow alone.
        method = "client_secret_post" if settings.get("client_secret") else "none"
        settings["token_endpoint_auth_method"] = method


def _validate(settings: Mapping[str, Any]) -> str | None:
    """Require client_id and a usable host; everything else has a GitHub default."""
    if not settings.get("client_id"):
        return "client_id: is required (the Client ID on the app's page on GitHub)"
    host = str(settings.get("host") or DEFAULT_HOST)
    if web_origin(host) is None:
        return (
            f"host: {host!r} is not a GitHub host: write a host name such as github.com or "
            "github.example.com (https is used), optionally with :PORT; an http:// URL only "
            "for a loopback host"
        )
    if settings.get("supports_iss") and not settings.get("issuer"):
        return "supports_iss: GitHub sends no iss in the redirect; leave it unset"
    return client_settings_problem(settings)


def _needs_secret(provider: Provider) -> str:
    return (
        f"{provider.name}: the browser login needs client_secret: GitHub requires the app's "
        "client secret to exchange the code. Set client_secret in providers.yaml (as "
        f"${{VARIABLE}}), or log in without it: loopauth login {provider.name} --device"
    )


def _authorization_params(provider: Provider, params: dict[str, str]) -> dict[str, str]:
    """Refuse a browser login without the secret; leave out the undocumented response_type."""
    if not provider.client_secret:
        # Now, before the browser opens: GitHub would only refuse the code exchange after the
        # user has approved the app.
        raise ConfigError(_needs_secret(provider))
    # GitHub's tables list no response_type: it only has the code flow.
    params.pop("response_type", None)
    return params


def _parse_token_response(
    provider: Provider, data: Mapping[str, Any], previous: Token | None
) -> Token:
    """Parse as RFC 6749 says, adding what GitHub's own error codes mean."""
    from loopauth.oauth import standard_token

    try:
        return standard_token(provider, data, previous)
    except ProviderError as exc:
        hint = HINTS.get(exc.error or "")
        if hint is None:  # authorization_pending, slow_down...: the core knows these
            raise
        raise GitHubError(
            str(exc), error=str(exc.error), description=exc.description, hint=hint
        ) from None


def _account_for(provider: Provider, token: Token, callback: Mapping[str, str]) -> Account:
    """Name the account from `GET /user`: its numeric id, labelled with the login."""
    from loopauth import redact, transport

    # Only ever to the configured API: the token goes nowhere else.
    url = str(provider.get("api_base_url") or "").rstrip("/") + "/user"
    redact.protect(token.access_token)
    try:
        data = transport.request_json(
            "GET",
            url,
            f"{provider.name}'s API ({safe_url(url)})",
            timeout=provider.http_timeout,
            headers={**API_HEADERS, "Authorization": f"Bearer {token.access_token}"},
        )
    except ProviderError as exc:
        return _unnamed(provider, str(exc))
    user_id, login = data.get("id"), data.get("login")
    if isinstance(user_id, bool) or not isinstance(user_id, int | str) or not str(user_id):
        said = data.get("message")
        why = f"GitHub answered: {str(said)[:200]}" if isinstance(said, str) else "no user id"
        return _unnamed(provider, f"GET {safe_url(url)} gave {why}")
    if not isinstance(login, str) or not login.isprintable() or len(login) > 100:
        login = None
    return Account(str(user_id), login)


def _unnamed(provider: Provider, why: str) -> Account:
    log.warning(
        "%s: could not name the account (%s); the token is stored as account 'default'. "
        "Check api_base_url (or host) in providers.yaml",
        provider.name,
        why,
    )
    return Account("default")


def _scope_granted(provider: Provider, scope: str, token: Token) -> bool:
    """Whether the token holds `scope`, as granted or as part of a broader granted scope."""
    granted = set(token.scopes)
    if scope in granted:
        return True
    if scope == "offline_access":
        # GitHub does not list it among a token's scopes: it asks for a refresh token.
        return bool(token.refresh_token)
    if not granted and token.access_token.startswith("ghu_") and token.raw.get("scope") == "":
        # A GitHub App's user token: its scope is always "", its access is the app's permissions.
        return True
    return any(scope in INCLUDED_SCOPES.get(held, ()) for held in granted)


def _lacks(provider: Provider) -> list[str]:
    if provider.client_secret or "client_secret" in provider.missing:
        return []  # a secret that is set, or one whose variable `providers` already names
    return [
        "client_secret: the browser login needs it (GitHub requires it for the code exchange); "
        f"loopauth login {provider.name} --device works without it"
    ]


def _api_session(
    provider: Provider, *, account: str | None, store: Store, shop: str | None
) -> ApiSession:
    """The standard Bearer session, with the headers GitHub's REST docs ask for."""
    from loopauth.apiclient import BearerSession

    if shop is not None:
        raise UsageError(f"{provider.name} (plugin {PLUGIN}) has no shops")
    session = BearerSession(provider, account=account, store=store)
    session.headers.update(API_HEADERS)
    return session


GITHUB = ProviderType(
    name=PLUGIN,
    description="GitHub and GitHub Enterprise Server: OAuth apps and GitHub Apps, browser or "
    "device login",
    settings={
        "host": Setting(
            default=DEFAULT_HOST,
            help="github.com, or a GitHub Enterprise Server host (its endpoints and API follow)",
        ),
        "client_secret": Setting(
            secret=True,
            help="the app's client secret (the browser login needs it; login --device does not)",
        ),
        "scope": Setting(
            "scope",
            default=["read:user"],
            help="GitHub scopes (read:user, repo, gist...); a GitHub App's token has none",
        ),
    },
    # PKCE (S256 only) is optional on github.com; sent, it binds the code to this login.
    defaults={"pkce": True},
    derive=_derive,
    validate=_validate,
    authorization_params=_authorization_params,
    parse_token_response=_parse_token_response,
    account_for=_account_for,
    api_session=_api_session,
    scope_granted=_scope_granted,
    lacks=_lacks,
    logout_note="GitHub has no RFC 7009 revocation endpoint: revoke the app's access under "
    "Settings > Applications on GitHub (github.com/settings/applications), or the app's owner "
    "can with the REST API, DELETE /applications/{client_id}/token and the client secret",
    init_settings=("client_id", "client_secret", "scope"),
    init_help="GitHub: register an OAuth app at https://github.com/settings/developers\n"
    "(OAuth Apps > New OAuth App) with the callback URL http://127.0.0.1/callback\n"
    "(a loopback callback takes any port). Copy its Client ID; generate a client secret\n"
    "and set it in the variable below. Without a secret only `loopauth login NAME --device`\n"
    "works (enable the device flow in the app's settings).\n"
    "GitHub Enterprise Server: add host: github.example.com",
)


@loopauth.hookimpl
def register_provider_types(register: Callable[[ProviderType], None]) -> None:
    """Register `github`."""
    register(GITHUB)


@loopauth.hookimpl
def register_emulators(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the GitHub emulator."""
    from .emulator import GitHubEmulator

    register(PLUGIN, GitHubEmulator)
