"""A local Microsoft Entra ID (identity platform v2.0) that behaves as the sources say.

One loopback server stands in for login.microsoftonline.com, every path under a tenant:
`/{tenant}/oauth2/v2.0/authorize`, `/token`, `/devicecode` and
`/{tenant}/v2.0/.well-known/openid-configuration`, where the tenant is `common`,
`organizations`, `consumers`, a tenant ID or a tenant's domain name; `/devicelogin` is the page
where a device code is entered (microsoft.com/devicelogin). Who may sign in depends on the
tenant in the path: `common` everyone, `organizations` work and school accounts, `consumers`
personal accounts, a tenant its own users.

As Entra does: id_tokens name the user's tenant (`iss` {url}/{tid}/v2.0, `tid`, `oid`,
`preferred_username`), a refresh token comes only when `offline_access` is asked for and a new
one with every refresh (the old one stays valid), the answer's `scope` leaves `offline_access`
out, the device flow says `authorization_declined` and gives a `message` but no
`verification_uri_complete`, redirects carry no `iss`, and there is no revocation endpoint.
Facts and sources: docs/microsoft.md. What the sources do not say (unknown-tenant answers, the
`scope` written for a full Graph URI, HS256 signatures) is this emulator's choice, marked "ours".
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from loopauth.emulator import EmulatorClient, EmulatorUser, OAuthEmulator, Request, Response, page
from loopauth.emulator.oauth import token_error

from . import CONSUMERS_TENANT, GRAPH, TENANT_TEMPLATE

__all__ = [
    "CONTOSO",
    "DEMO_CLIENT",
    "DEMO_CONFIDENTIAL",
    "FABRIKAM",
    "GRAPH_SCOPES",
    "MicrosoftEmulator",
    "MicrosoftUser",
    "Tenant",
    "default_users",
]

# The OpenID scopes Entra knows ("address and phone ... aren't supported") and some of Graph's.
OIDC_SCOPES = ("openid", "profile", "email", "offline_access")
GRAPH_SCOPES = ("User.Read", "User.ReadBasic.All", "Mail.Read", "Calendars.Read", "Files.Read")
DEMO_CLIENT = "loopauth-demo"
DEMO_CONFIDENTIAL = "demo-confidential"
_PATH_RE = re.compile(
    r"/([^/]+)/(?:oauth2/v2\.0/(authorize|token|devicecode)|v2\.0/\.well-known/"
    r"(openid-configuration))"
)


@dataclass(frozen=True)
class Tenant:
    """A directory: its tenant ID and, for a work tenant, its domain name."""

    id: str
    domain: str | None = None

    @property
    def personal(self) -> bool:
        """Whether this is the tenant of personal Microsoft accounts."""
        return self.id == CONSUMERS_TENANT


# The example tenant of Microsoft's docs (v2-protocols-oidc), a second work tenant (ours), and
# the personal-accounts tenant.
CONTOSO = Tenant("8eaef023-2b34-4da1-9baa-8bc8c9d6a490", "contoso.onmicrosoft.com")
FABRIKAM = Tenant("3f2d6c1a-94b7-4e0f-8c55-1b2a7d9e6f40", "fabrikam.onmicrosoft.com")
CONSUMERS = Tenant(CONSUMERS_TENANT)


@dataclass(frozen=True)
class MicrosoftUser(EmulatorUser):
    """A user of one tenant: `tid`, the object id `oid` and the sign-in name."""

    tid: str = CONTOSO.id
    oid: str = ""
    username: str = ""  # preferred_username


def _user(name: str, username: str, tenant: Tenant) -> MicrosoftUser:
    # Entra's sub is an opaque base64url string and oid a GUID; these are fixed per user (a
    # real sub is also pairwise per application, which tests here do not need).
    digest = hashlib.sha256(f"loopauth-entra:{username}".encode()).digest()
    sub = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    oid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"loopauth-entra:{username}"))
    return MicrosoftUser(sub, name, username, tid=tenant.id, oid=oid, username=username)


def default_users() -> list[MicrosoftUser]:
    """Two work accounts (Contoso, Fabrikam) and a personal Microsoft account."""
    return [
        _user("Ada Lovelace", "ada@contoso.onmicrosoft.com", CONTOSO),
        _user("Grace Hopper", "grace@fabrikam.onmicrosoft.com", FABRIKAM),
        _user("Pat Personal", "pat@outlook.example", CONSUMERS),
    ]


def _default_clients() -> dict[str, EmulatorClient]:
    # "http://localhost" is what Microsoft says to register, and Entra ignores a loopback port;
    # loopauth sends it as MSAL does (http://localhost:PORT, no slash).
    uris = ["http://localhost"]
    return {
        DEMO_CLIENT: EmulatorClient(DEMO_CLIENT, None, list(uris), "none"),
        DEMO_CONFIDENTIAL: EmulatorClient(
            DEMO_CONFIDENTIAL, "demo-secret", list(uris), "client_secret_post"
        ),
    }


def _tid(user: EmulatorUser) -> str:
    """Return a user's tenant (a plain EmulatorUser counts as Contoso's)."""
    return str(getattr(user, "tid", CONTOSO.id))


class MicrosoftEmulator(OAuthEmulator):
    """Entra ID's tenant-prefixed authorize, token and devicecode endpoints and discovery.

    Options besides OAuthEmulator's: `tenants`; `default_permissions` (what `.default` grants);
    `echo_offline_access` (list offline_access in the answer's scope; Entra's examples never
    do); `id_token_tenant` (id_tokens name this tenant instead of the user's: a token from the
    wrong tenant) and `id_token_issuer` (id_tokens carry exactly this iss: a forged issuer).
    `rotate_refresh_tokens=True` makes a used refresh token invalid; Entra keeps it valid (a
    new one comes with every refresh either way).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clients: dict[str, EmulatorClient] | None = None,
        users: list[EmulatorUser] | None = None,
        tenants: list[Tenant] | None = None,
        access_token_lifetime: int = 3599,
        refresh_token_lifetime: int | None = 90 * 86400,
        device_code_lifetime: int = 900,
        default_permissions: tuple[str, ...] = ("User.Read",),
        echo_offline_access: bool = False,
        id_token_tenant: str | None = None,
        id_token_issuer: str | None = None,
        **options: Any,
    ) -> None:
        # Entra publishes no revocation endpoint and sends no iss in its redirects.
        options.setdefault("revocation", False)
        options.setdefault("send_iss", False)
        # Every refresh brings a new refresh token; the old one stays valid (Entra's way):
        # rotate_refresh_tokens=True is the strict variant, where a used one is spent.
        options.setdefault("reissue_refresh_tokens", True)
        self._context = threading.local()  # the tenant (and scope) of the request at hand
        super().__init__(
            host,
            port,
            clients=clients if clients is not None else _default_clients(),
            users=list(users) if users is not None else list(default_users()),
            access_token_lifetime=access_token_lifetime,
            refresh_token_lifetime=refresh_token_lifetime,
            device_code_lifetime=device_code_lifetime,
            **options,
        )
        self.paths = {**self.paths, "device": "/devicelogin"}
        self.scopes_supported = OIDC_SCOPES + GRAPH_SCOPES
        self.tenants = list(tenants if tenants is not None else [CONTOSO, FABRIKAM, CONSUMERS])
        self.default_permissions = default_permissions
        self.echo_offline_access = echo_offline_access
        self.id_token_tenant = id_token_tenant
        self.id_token_issuer = id_token_issuer
        self._device_tenants: dict[str, str] = {}  # device code -> tenant in its path

    def __repr__(self) -> str:
        return f"MicrosoftEmulator(url={self.url if self._httpd else None!r})"

    # -- tenants ----------------------------------------------------------------------------

    @property
    def users(self) -> list[EmulatorUser]:
        """The users who may sign in to the tenant of the request at hand (all outside one)."""
        tenant = getattr(self._context, "tenant", None)
        if tenant is None:
            return list(self._all_users)
        return [u for u in self._all_users if self._admits(tenant, _tid(u))]

    @users.setter
    def users(self, value: list[EmulatorUser]) -> None:
        self._all_users = list(value)

    def _find(self, segment: str) -> Tenant | None:
        low = segment.lower()
        return next((t for t in self.tenants if low in (t.id, t.domain)), None)

    def _known(self, segment: str) -> bool:
        return segment.lower() in ("common", "organizations", "consumers") or bool(
            self._find(segment)
        )

    def _admits(self, segment: str, tid: str) -> bool:
        """Whether a user of tenant `tid` may sign in through the path's tenant `segment`."""
        low = segment.lower()
        if low == "common":
            return True
        if low == "organizations":
            return tid != CONSUMERS_TENANT
        if low == "consumers":
            return tid == CONSUMERS_TENANT
        found = self._find(low)
        return found is not None and found.id == tid

    def issuer_of(self, segment: str) -> str:
        """The issuer a tenant path's discovery document names (the template for many)."""
        low = segment.lower()
        if low == "consumers":
            return f"{self.url}/{CONSUMERS_TENANT}/v2.0"
        found = self._find(low)
        if found is not None:  # a domain name stands for its tenant (inferred, not documented)
            return f"{self.url}/{found.id}/v2.0"
        return f"{self.url}/{TENANT_TEMPLATE}/v2.0"

    @property
    def issuer(self) -> str:
        """The issuer of the tenant in the request's path (the template outside one)."""
        return self.issuer_of(getattr(self._context, "tenant", None) or "common")

    # -- routing ------------------------------------------------------------------------------

    def route(self, req: Request) -> Response:
        """Dispatch tenant-prefixed paths with that tenant in force, and the device page."""
        if req.path == self.paths["device"]:
            if req.method not in ("GET", "POST"):
                return self._not_allowed("GET, POST")
            form = req.form if req.method == "POST" else req.query
            self._context.tenant = self._device_tenant(form.get("user_code", ""))
            try:
                return self._device_page(req)
            finally:
                self._context.tenant = None
        found = _PATH_RE.fullmatch(req.path)
        if found is None:
            return Response(404, {"error": "not_found", "error_description": f"no {req.path}"})
        segment, endpoint = found.group(1), found.group(2) or found.group(3)
        if not self._known(segment):
            # The answer to an unknown tenant is ours; Entra's is not in the sources.
            if endpoint == "authorize":
                text = f"<p>Tenant {segment!r} not found.</p>"
                return Response.html(400, page("Sign in", text))
            return token_error("invalid_request", f"tenant {segment!r} not found")
        allowed = {"authorize": "GET, POST", "openid-configuration": "GET"}.get(endpoint, "POST")
        if req.method not in allowed.split(", "):
            return self._not_allowed(allowed)
        self._context.tenant = segment
        try:
            if endpoint == "authorize":
                return self._authorize(self._canonical_request(req))
            if endpoint == "token":
                return self._token(req)
            if endpoint == "devicecode":
                return self._devicecode(self._canonical_request(req))
            return self._tenant_discovery(segment)
        finally:
            self._context.tenant = None
            self._context.scope = None

    @staticmethod
    def _not_allowed(allow: str) -> Response:
        resp = token_error("invalid_request", f"use {allow}", 405)
        resp.headers["Allow"] = allow
        return resp

    def _tenant_discovery(self, segment: str) -> Response:
        """The tenant's discovery document, as Entra's (endpoints here, HS256: ours)."""
        base = f"{self.url}/{segment}"
        doc = {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "response_modes_supported": ["query"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["HS256"],
            "response_types_supported": ["code"],
            "scopes_supported": list(OIDC_SCOPES),
            "issuer": self.issuer_of(segment),
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        }
        return Response(200, doc)

    # -- scopes -------------------------------------------------------------------------------

    def canonical_scope(self, scope: str) -> str:
        """Entra's spelling of a scope: its own case, Graph's bare, `.default` as permissions."""
        known = {s.lower(): s for s in self.scopes_supported}
        prefix = GRAPH.lower() + "/"
        out: list[str] = []
        for word in scope.split():
            low = word.lower()
            if low.startswith(prefix):  # Graph's full URI: answered bare (ours)
                low = low[len(prefix) :]
            names = list(self.default_permissions) if low == ".default" else [known.get(low, word)]
            out += [name for name in names if name not in out]
        return " ".join(out)

    def _canonical_request(self, req: Request) -> Request:
        """The request with its scope in Entra's spelling (what the answers echo)."""

        def fix(multi: dict[str, list[str]]) -> dict[str, list[str]]:
            if "scope" not in multi:
                return multi
            return {**multi, "scope": [self.canonical_scope(s) for s in multi["scope"]]}

        query = fix(req.query_multi)
        return dataclasses.replace(
            req,
            query_multi=query,
            query={k: v[0] for k, v in query.items()},
            form_multi=fix(req.form_multi),
        )

    # -- tokens -------------------------------------------------------------------------------

    def _issue(
        self, client_id: str, user: EmulatorUser, scope: str, origin: str, refresh: bool
    ) -> dict[str, Any]:
        """A refresh token only with offline_access; the answer's scope without it."""
        self._context.scope = scope  # the id_token that may follow has claims by scope
        granted = scope.split()
        refresh = refresh and self.issue_refresh_tokens and "offline_access" in granted
        body = super()._issue(client_id, user, scope, origin, refresh)
        if not self.echo_offline_access:
            body["scope"] = " ".join(s for s in granted if s != "offline_access")
        body["ext_expires_in"] = body["expires_in"]  # MSAL reads it; live answers carry it
        return body

    def _id_token_claims(
        self, client_id: str, user: EmulatorUser, nonce: str | None
    ) -> dict[str, Any]:
        """Entra's v2.0 claims: the user's tenant in iss and tid; profile and email by scope."""
        claims = super()._id_token_claims(client_id, user, nonce)
        scope = str(getattr(self._context, "scope", None) or "").split()
        tid = self.id_token_tenant or _tid(user)
        claims["iss"] = self.id_token_issuer or f"{self.url}/{tid}/v2.0"
        claims["tid"] = tid
        claims["ver"] = "2.0"
        if "profile" in scope:  # name, oid and preferred_username need the profile scope
            claims["oid"] = getattr(user, "oid", "") or str(
                uuid.uuid5(uuid.NAMESPACE_URL, user.sub)
            )
            claims["preferred_username"] = getattr(user, "username", "") or user.email
        else:
            claims.pop("name", None)
        if "email" not in scope:  # by default only guests' tokens carry email
            claims.pop("email", None)
        return claims

    # -- device code flow ---------------------------------------------------------------------

    def _devicecode(self, req: Request) -> Response:
        """Entra's device code answer: a `message`, no verification_uri_complete."""
        resp = self._device_authorization(req)
        body = resp.body
        if resp.status != 200 or not isinstance(body, dict):
            return resp
        body.pop("verification_uri_complete", None)  # "not included or supported at this time"
        body["message"] = (
            f"To sign in, use a web browser to open the page {body['verification_uri']} and "
            f"enter the code {body['user_code']} to authenticate."
        )
        with self._lock:
            self._device_tenants[body["device_code"]] = str(self._context.tenant)
        return resp

    def _device_tenant(self, user_code: str) -> str | None:
        """The tenant whose path issued the device code a user code names (None: unknown)."""
        key = "".join(c for c in user_code.upper() if c.isalnum())
        with self._lock:
            device_code = self._user_codes.get(key)
            return self._device_tenants.get(device_code or "")

    def _device_answer(
        self, client: EmulatorClient, device_code: str, now: float
    ) -> tuple[str, str]:
        """Entra's names: authorization_declined for a denial, bad_verification_code."""
        rec = self._device_codes.get(device_code)
        if rec is None or rec.client_id != client.client_id:
            return "bad_verification_code", "the device_code was not recognized"
        answer, description = super()._device_answer(client, device_code, now)
        if answer == "access_denied":
            return "authorization_declined", "the end user denied the authorization request"
        return answer, description
