"""The `microsoft` plugin: Microsoft Entra ID (the Microsoft identity platform, v2.0 endpoints).

Entra ID is OpenID Connect with a tenant in every path; this states only what differs (facts
and their sources: docs/microsoft.md):

- the endpoints and the issuer come from `authority_host` and `tenant`, and the discovery
  document is built from them: nothing is fetched (for `common` and `organizations` Entra's
  issuer is a template, `https://login.microsoftonline.com/{tenantid}/v2.0`, not a URL to fetch);
- an id_token's `iss` is checked against that template with its `tid` claim put in, and the
  tenant setting decides which tids are welcome (`organizations` refuses personal accounts);
- a public client (no secret, PKCE) registered as a "Mobile and desktop application" with the
  redirect URI http://localhost, any port;
- `offline_access` (refresh tokens), `openid` and `profile` (who logged in) are always asked for,
  and counted as granted by a refresh token and an id_token, since Entra does not list
  `offline_access` in its answers; bare scopes are Microsoft Graph's (`User.Read`);
- refresh tokens rotate (the standard parser keeps the new one); there is no revocation.

`emulator` holds a local Entra ID for tests and demos (`loopauth emulator microsoft`).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import loopauth
from loopauth.plugins.oauth2 import client_settings_problem
from loopauth.provider import Provider, ProviderType, Setting, TokenRequest

if TYPE_CHECKING:
    from loopauth.token import Token

__all__ = [
    "CONSUMERS_TENANT",
    "DEFAULT_SCOPE",
    "GLOBAL_AUTHORITY",
    "GRAPH",
    "MICROSOFT",
    "PLUGIN",
    "RESERVED_SCOPES",
    "TENANT_TEMPLATE",
    "endpoints",
    "is_guid",
    "issuer_for",
    "tenant_problem",
]

PLUGIN = "microsoft"
GLOBAL_AUTHORITY = "https://login.microsoftonline.com"
# The tenant of personal Microsoft accounts: `tid` of their tokens, usable in place of
# `consumers` (id-token-claims-reference, v2-protocols-oidc).
CONSUMERS_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
# What Entra's tenant-independent discovery document names as issuer: the literal, lower-case
# placeholder its validators replace with the token's tid (access-tokens#validate-the-issuer).
TENANT_TEMPLATE = "{tenantid}"
TENANT_KEYWORDS = ("common", "organizations", "consumers")
# Scopes without a resource are Microsoft Graph's: `User.Read` is
# `https://graph.microsoft.com/User.Read` (scopes-oidc).
GRAPH = "https://graph.microsoft.com"
# Asked for on every login, as Microsoft's own MSAL does: offline_access because v2.0 hands out a
# refresh token only when it is asked for, openid for the id_token that names the account, and
# profile for the claims that name it for people (preferred_username, oid).
RESERVED_SCOPES = ("openid", "profile", "offline_access")
DEFAULT_SCOPE = ["openid", "profile", "offline_access", "User.Read"]
# Microsoft's China cloud answers on one host and names another as issuer (MSAL-JS's built-in
# metadata for login.chinacloudapi.cn); elsewhere the issuer is on the sign-in host itself.
ISSUER_HOSTS = {"https://login.chinacloudapi.cn": "https://login.partner.microsoftonline.cn"}
_GUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN_RE = re.compile(rf"(?:{_LABEL}\.)+[a-z][a-z0-9-]{{0,61}}[a-z0-9]")
_ENDPOINTS = {
    "authorization_endpoint": "oauth2/v2.0/authorize",
    "token_endpoint": "oauth2/v2.0/token",
    "device_authorization_endpoint": "oauth2/v2.0/devicecode",
}
# What Entra's discovery documents say besides endpoints (the stored common and tenant copies).
_DOCUMENT = {
    "token_endpoint_auth_methods_supported": [
        "client_secret_post",
        "private_key_jwt",
        "client_secret_basic",
    ],
    "response_modes_supported": ["query", "fragment", "form_post"],
    "subject_types_supported": ["pairwise"],
    "id_token_signing_alg_values_supported": ["RS256"],
    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
    "scopes_supported": ["openid", "profile", "email", "offline_access"],
    "request_uri_parameter_supported": False,
    "http_logout_supported": True,
    "frontchannel_logout_supported": True,
    "claims_supported": [
        "sub",
        "iss",
        "cloud_instance_name",
        "cloud_instance_host_name",
        "cloud_graph_host_name",
        "msgraph_host",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "acr",
        "nonce",
        "preferred_username",
        "name",
        "tid",
        "ver",
        "at_hash",
        "c_hash",
        "email",
    ],
}
LOGOUT_NOTE = (
    "Microsoft Entra ID has no token revocation endpoint: the refresh token stays valid until "
    "it expires (90 days by default) or the user's sign-in sessions are revoked (Microsoft "
    "Graph revokeSignInSessions, or an administrator)"
)


def is_guid(value: object) -> bool:
    """Return True for a GUID such as a tenant id (8-4-4-4-12 hexadecimal digits)."""
    return isinstance(value, str) and _GUID_RE.fullmatch(value) is not None


def tenant_problem(tenant: str) -> str | None:
    """Return why `tenant` is no Entra tenant value, or None."""
    if tenant in TENANT_KEYWORDS or is_guid(tenant):
        return None
    if len(tenant) <= 253 and _DOMAIN_RE.fullmatch(tenant):
        return None
    return (
        f"{tenant!r} is not a tenant: use common (work, school and personal accounts), "
        "organizations (work and school accounts only), consumers (personal accounts only), "
        "a tenant ID (a GUID such as 8eaef023-2b34-4da1-9baa-8bc8c9d6a490) or the tenant's "
        "domain name (such as contoso.onmicrosoft.com)"
    )


def issuer_for(authority_host: str, tenant: str) -> str:
    """Return the issuer a tenant's id_tokens carry, `{tenantid}` where any tenant may sign."""
    host = ISSUER_HOSTS.get(authority_host, authority_host)
    if tenant == "consumers":  # its tokens name the personal-accounts tenant, not "consumers"
        return f"{host}/{CONSUMERS_TENANT}/v2.0"
    if is_guid(tenant):
        return f"{host}/{tenant}/v2.0"
    # common and organizations cover many tenants; a domain name's GUID is not known offline.
    return f"{host}/{TENANT_TEMPLATE}/v2.0"


def endpoints(authority_host: str, tenant: str) -> dict[str, str]:
    """Return a tenant's authorization, token and device authorization endpoints."""
    return {key: f"{authority_host}/{tenant}/{path}" for key, path in _ENDPOINTS.items()}


def _derive(settings: dict[str, Any]) -> None:
    """Endpoints and issuer from authority_host and tenant (explicit ones win); reserved scopes."""
    host = str(settings.get("authority_host") or GLOBAL_AUTHORITY).rstrip("/")
    # Tenant values are case-insensitive, and tokens write GUIDs in lower case.
    tenant = str(settings.get("tenant") or "common").strip().lower()
    settings["authority_host"], settings["tenant"] = host, tenant
    for key, url in endpoints(host, tenant).items():
        if settings.get(key) is None:
            settings[key] = url
    if settings.get("issuer") is None:
        settings["issuer"] = issuer_for(host, tenant)
    scope = list(settings.get("scope") or [])
    settings["scope"] = scope + [s for s in RESERVED_SCOPES if s not in scope]
    if settings.get("token_endpoint_auth_method") is None:
        # A public client must not send a secret; a web app's secret goes in the form body, the
        # first method Entra's discovery document lists (basic works too, when configured).
        secret = settings.get("client_secret")
        settings["token_endpoint_auth_method"] = "client_secret_post" if secret else "none"


def _validate(settings: Mapping[str, Any]) -> str | None:
    problem = tenant_problem(str(settings.get("tenant") or ""))
    if problem:
        return f"tenant: {problem}"
    parts = urlsplit(str(settings.get("authority_host") or ""))
    if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
        return (
            "authority_host: must be the sign-in host alone, such as "
            "https://login.microsoftonline.com or https://login.microsoftonline.us; the tenant "
            "goes in `tenant`"
        )
    if not settings.get("client_id"):
        return (
            "client_id: is required: the Application (client) ID of the app registration "
            "(Microsoft Entra admin center > App registrations)"
        )
    method = settings.get("token_endpoint_auth_method")
    if method == "none" and settings.get("client_secret"):
        return (
            "token_endpoint_auth_method: none sends no client secret, but client_secret is set: "
            "remove the secret (a public client must not use one) or use client_secret_post"
        )
    return client_settings_problem(settings)


def _as_registered(provider: Provider, redirect_uri: str | None) -> str | None:
    """Return the redirect URI without the listener's `/` when the setting has no path.

    `http://localhost` is what Microsoft says to register and what MSAL sends (with the port):
    without a path, as registered. The browser's request still arrives at `/`.
    """
    configured = str(provider.settings.get("redirect_uri") or "")
    if redirect_uri and not urlsplit(configured).path:
        parts = urlsplit(redirect_uri)
        if parts.path == "/":
            return urlunsplit(parts._replace(path=""))
    return redirect_uri


def _authorization_params(provider: Provider, params: dict[str, str]) -> dict[str, str]:
    """Keep the reserved scopes in a login whose scopes `login --scope` replaced; send the
    redirect URI as registered."""
    if "scope" in params:
        asked = params["scope"].split()
        params["scope"] = " ".join(asked + [s for s in RESERVED_SCOPES if s not in asked])
    if "redirect_uri" in params:
        params["redirect_uri"] = _as_registered(provider, params["redirect_uri"]) or ""
    return params


def _token_request(
    provider: Provider, request: TokenRequest, callback: Mapping[str, str]
) -> TokenRequest:
    """The code exchange names the redirect URI exactly as the authorization request did."""
    if "redirect_uri" in request.params:
        uri = _as_registered(provider, request.params["redirect_uri"])
        request.params["redirect_uri"] = uri or ""
    return request


def _metadata(provider: Provider) -> Mapping[str, Any]:
    """Entra's discovery document for these settings, built here: nothing is fetched."""
    settings = dict(provider.settings)
    _derive(settings)
    host, tenant = settings["authority_host"], settings["tenant"]
    doc: dict[str, Any] = {
        **_DOCUMENT,
        "issuer": settings["issuer"],
        **{key: settings[key] for key in _ENDPOINTS},
        "jwks_uri": f"{host}/{tenant}/discovery/v2.0/keys",
        "end_session_endpoint": f"{host}/{tenant}/oauth2/v2.0/logout",
    }
    if host == GLOBAL_AUTHORITY:  # the national clouds' Graph hosts are not in the sources
        doc["userinfo_endpoint"] = f"{GRAPH}/oidc/userinfo"
    return doc


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _expected_tid(tenant: str) -> str | None:
    """Return the only tid a tenant setting accepts, or None when several are welcome."""
    if tenant == "consumers":
        return CONSUMERS_TENANT
    return tenant if is_guid(tenant) else None


def _template_tid(issuer: str, iss: str) -> str | None:
    """Return the GUID `iss` puts where the issuer has `{tenantid}`, or None if it is no fill."""
    if TENANT_TEMPLATE not in issuer:
        return None
    head, _, tail = issuer.partition(TENANT_TEMPLATE)
    if not (iss.startswith(head) and iss.endswith(tail)) or len(iss) <= len(head) + len(tail):
        return None
    tid = iss[len(head) : len(iss) - len(tail)]
    return tid if is_guid(tid) else None


def _issuer_matches(provider: Provider, iss: str, claims: Mapping[str, Any]) -> bool:
    """An id_token's iss is the issuer with its `tid` put in for `{tenantid}` (a redirect's,
    with a GUID put in); the tenant setting decides which tids count."""
    issuer = str(provider.get("issuer") or "")
    if not issuer:
        return False
    if not claims:
        # Entra sends no iss in redirects (no RFC 9207 in its metadata). Should it start to, as
        # Google did unannounced, the template takes any tenant's GUID: the host and form
        # still tell a mix-up, and the tenant rules below still apply.
        tid = _template_tid(issuer, iss)
        if tid is None:
            return _same(iss, issuer)
    else:
        tid = claims.get("tid")
    if TENANT_TEMPLATE in issuer:
        # access-tokens#validate-the-issuer: replace {tenantid} with the token's tenant, then
        # compare exactly; the tid must be a GUID (no path tricks in what is put in).
        if not is_guid(tid):
            return False
        issuer = issuer.replace(TENANT_TEMPLATE, str(tid))
    if not _same(iss, issuer):
        return False
    tenant = str(provider.settings.get("tenant") or "common")
    wanted = _expected_tid(tenant)
    if wanted is not None:
        return isinstance(tid, str) and tid.lower() == wanted
    if tenant == "organizations":  # work and school accounts only
        return not (isinstance(tid, str) and tid.lower() == CONSUMERS_TENANT)
    # common takes every tenant. A domain name stands for one tenant whose GUID is not known
    # offline; its token came straight from that tenant's token endpoint over TLS.
    return True


def _scope_key(scope: str) -> str:
    """Return a scope as compared: case-insensitive, Graph's without its resource prefix."""
    low = scope.lower()
    prefix = GRAPH.lower() + "/"
    return low[len(prefix) :] if low.startswith(prefix) else low


def _resource(scope: str) -> str:
    """Return the resource a scope belongs to (Graph for a bare name)."""
    key = _scope_key(scope)
    return key.rsplit("/", 1)[0] if "/" in key else GRAPH.lower()


def _scope_granted(provider: Provider, scope: str, token: Token) -> bool:
    """offline_access is shown by a refresh token, openid by an id_token; User.Read is
    https://graph.microsoft.com/User.Read; `.default` by any scope of its resource."""
    key = _scope_key(scope)
    if key == "offline_access":
        return bool(token.refresh_token)
    if key == "openid":
        return "id_token" in token.raw or "openid" in {_scope_key(s) for s in token.scopes}
    granted = {_scope_key(s) for s in token.scopes}
    if key in granted:
        return True
    if key == ".default" or key.endswith("/.default"):
        # The answer lists the permissions `.default` stood for, never `.default` itself.
        wanted = _resource(scope)
        oidc = {"openid", "profile", "email", "offline_access"}
        return any(_resource(s) == wanted for s in token.scopes if _scope_key(s) not in oidc)
    return False


MICROSOFT = ProviderType(
    name=PLUGIN,
    description="Microsoft Entra ID: work, school and personal Microsoft accounts (public client)",
    settings={
        "client_id": Setting(help="Application (client) ID of the app registration"),
        "tenant": Setting(
            default="common",
            help="common, organizations, consumers, a tenant ID or a domain name",
        ),
        "authority_host": Setting(
            "url",
            default=GLOBAL_AUTHORITY,
            help="sign-in host: national clouds have their own (https://login.microsoftonline.us)",
        ),
    },
    defaults={
        "scope": list(DEFAULT_SCOPE),
        # MSAL's and Entra's form for apps using the system browser: the portal takes
        # http://localhost (not http://127.0.0.1) and Entra ignores the port of a loopback
        # redirect URI, so any free port matches the one registration.
        "redirect_uri": "http://localhost:0",
        # access_denied from the browser, authorization_declined from the device flow.
        "denied_errors": ["access_denied", "authorization_declined"],
    },
    derive=_derive,
    validate=_validate,
    authorization_params=_authorization_params,
    token_request=_token_request,
    metadata=_metadata,
    issuer_matches=_issuer_matches,
    scope_granted=_scope_granted,
    logout_note=LOGOUT_NOTE,
    init_settings=("tenant", "client_id", "scope"),
    init_help=(
        "Microsoft Entra ID: Microsoft Entra admin center > App registrations > New registration\n"
        "(its supported account types must suit `tenant`). Under Authentication, add the platform\n"
        "'Mobile and desktop applications' with the redirect URI http://localhost (any port\n"
        "matches); for `login --device` set 'Allow public client flows' to Yes. No secret needed."
    ),
)


@loopauth.hookimpl
def register_provider_types(register: Callable[[ProviderType], None]) -> None:
    """Register `microsoft`."""
    register(MICROSOFT)


@loopauth.hookimpl
def register_emulators(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the Microsoft Entra ID emulator."""
    from .emulator import MicrosoftEmulator

    register(PLUGIN, MicrosoftEmulator)
