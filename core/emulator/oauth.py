"""A local OAuth2 / OpenID Connect authorization server: consent page, tokens and userinfo.

Also the device authorization grant (RFC 8628): a device endpoint, a page where the user enters
the code and allows or denies, and the token endpoint's polling answers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..pages import page
from .registry import (
    DEFAULT_USERS,
    Code,
    EmulatorClient,
    EmulatorUser,
    Grant,
    basic_credentials,
    default_clients,
    redirect_uri_ok,
)
from .server import EmulatorServer, Request, Response

__all__ = [
    "AUTH_METHODS",
    "DEFAULT_SCOPE",
    "DEVICE_GRANT",
    "NO_STORE",
    "PATHS",
    "SCOPES",
    "OAuthEmulator",
    "token_error",
]

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
SCOPES = ("openid", "profile", "email", "offline_access")
DEFAULT_SCOPE = "openid"
_AUTH_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
)
# RFC 7636 §4.1/§4.2: verifiers are 43-128 unreserved chars; S256 challenges 43 base64url chars.
_CONSENT_FIELDS = ("decision", "account")  # what the consent form itself adds
_VERIFIER_RE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_S256_CHALLENGE_RE = re.compile(r"[A-Za-z0-9_-]{43}")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_REALM = 'realm="loopauth-emulator"'
_TOKEN_KINDS = ("refresh_token", "access_token")
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# RFC 8628 §6.1: consonants only (no words, no look-alikes), shown as XXXX-XXXX.
_USER_CODE_LETTERS = "BCDFGHJKLMNPQRSTVWXZ"
_SLOW_DOWN_STEP = 5  # RFC 8628 §3.5
# Where each endpoint is served; an emulator of a real provider moves them to its own paths.
PATHS = {
    "authorize": "/authorize",
    "token": "/token",
    "userinfo": "/userinfo",
    "revoke": "/revoke",
    "device_authorization": "/device_authorization",
    "device": "/device",
}


@dataclass
class _DeviceCode:
    """A device code: for whom, until when, how often it may be polled, and what the user said."""

    client_id: str
    scope: str
    user_code: str
    expires_at: float
    interval: int
    forced_slow_downs: int
    last_poll: float | None = None  # time.monotonic() of the last poll
    decision: str = "pending"  # then "allowed" or "denied"
    user: EmulatorUser | None = None
    used: bool = False


def _user_code_key(text: str) -> str:
    """RFC 8628 §6.1: what the user typed, without case, dashes or spaces."""
    return "".join(c for c in text.upper() if c.isalnum())


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _same(given: str | None, expected: str | None) -> bool:
    """Constant-time equality that treats a missing side as a mismatch."""
    if given is None or expected is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def token_error(error: str, description: str, status: int = 400) -> Response:
    """An RFC 6749 §5.2 error answer (never cached)."""
    return Response(status, {"error": error, "error_description": description}, dict(NO_STORE))


class OAuthEmulator(EmulatorServer):
    """An OAuth2 authorization-code + PKCE server with a consent page, tokens and userinfo."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clients: dict[str, EmulatorClient] | None = None,
        users: list[EmulatorUser] | None = None,
        access_token_lifetime: int = 3600,
        refresh_token_lifetime: int | None = None,
        rotate_refresh_tokens: bool = False,
        send_iss: bool = True,
        issue_refresh_tokens: bool = True,
        code_lifetime: int = 600,
        revocation: bool = True,
        fail_revocation: int | None = None,
        device: bool = True,
        device_interval: int = 5,
        device_code_lifetime: int = 600,
        slow_down_polls: int = 0,
        withheld_scopes: frozenset[str] = frozenset(),
        reissue_refresh_tokens: bool = False,
    ) -> None:
        super().__init__(host, port)
        self.paths = dict(PATHS)
        self.scopes_supported: tuple[str, ...] = SCOPES
        # Scopes the user "unticks" on the consent page: asked for, but never granted.
        self.withheld_scopes = withheld_scopes
        self.clients = clients if clients is not None else default_clients()
        for client in self.clients.values():
            if client.auth_method not in AUTH_METHODS:
                raise ValueError(f"unknown auth_method {client.auth_method!r}")
        self.users = list(users if users is not None else DEFAULT_USERS)
        self.access_token_lifetime = access_token_lifetime
        self.refresh_token_lifetime = refresh_token_lifetime
        self.rotate_refresh_tokens = rotate_refresh_tokens  # a used refresh token is spent
        # Every refresh answers with a new refresh token, even when the old one stays valid
        # (Entra's way); rotation implies it.
        self.reissue_refresh_tokens = reissue_refresh_tokens
        self.send_iss = send_iss
        self.issue_refresh_tokens = issue_refresh_tokens
        self.code_lifetime = code_lifetime
        self.revocation = revocation  # False: a provider without RFC 7009 revocation
        self.fail_revocation = fail_revocation  # an HTTP status /revoke answers instead
        self.device = device  # False: a provider without the device authorization grant
        self.device_interval = device_interval  # the `interval` device codes come with
        self.device_code_lifetime = device_code_lifetime
        self.slow_down_polls = slow_down_polls  # answer slow_down to each code's first N polls
        # Every poll with a device code: (time.monotonic(), the answer's error or "token").
        self.device_polls: list[tuple[float, str]] = []
        self.signing_key = secrets.token_bytes(32)  # HS256 key for id_tokens
        self.token_calls: list[dict[str, str]] = []  # grant_type and client_id only, no secrets
        # Requests to /revoke (client_id and token_type_hint only) and the kinds they revoked.
        self.revocation_calls: list[dict[str, str]] = []
        self.revoked: list[str] = []
        self._lock = threading.Lock()
        self._codes: dict[str, Code] = {}
        self._access: dict[str, Grant] = {}
        self._refresh: dict[str, Grant] = {}
        self._device_codes: dict[str, _DeviceCode] = {}
        self._user_codes: dict[str, str] = {}  # _user_code_key(user code) -> device code

    @property
    def issuer(self) -> str:
        """The issuer identifier (the base URL)."""
        return self.url

    def issued_access_tokens(self) -> set[str]:
        """Every access token issued so far (expired or not)."""
        with self._lock:
            return set(self._access)

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expired."""
        with self._lock:
            for grant in self._access.values():
                grant.expires_at = time.time() - 1

    def expire_device_codes(self) -> None:
        """Make every device code issued so far expired."""
        with self._lock:
            for rec in self._device_codes.values():
                rec.expires_at = time.time() - 1

    def issued_device_codes(self) -> set[str]:
        """Every device code issued so far (to check that none leaks)."""
        with self._lock:
            return set(self._device_codes)

    def pending_user_codes(self) -> list[str]:
        """The user codes still waiting for the user's decision, oldest first."""
        with self._lock:
            return [r.user_code for r in self._device_codes.values() if r.decision == "pending"]

    def revoke_refresh_tokens(self) -> None:
        """Forget every refresh token issued so far."""
        with self._lock:
            self._refresh.clear()

    @property
    def revocation_count(self) -> int:
        """How many tokens /revoke has invalidated (a refresh token's access tokens not counted)."""
        with self._lock:
            return len(self.revoked)

    def route(self, req: Request) -> Response:
        """Dispatch to the discovery, authorize, token, revocation and userinfo endpoints."""
        paths = self.paths
        routes: dict[str, tuple[str, Callable[[Request], Response]]] = {
            "/.well-known/openid-configuration": ("GET", self._discovery),
            "/.well-known/oauth-authorization-server": ("GET", self._discovery),
            paths["authorize"]: ("GET, POST", self._authorize),
            paths["token"]: ("POST", self._token),
            paths["userinfo"]: ("GET, POST", self._userinfo),
        }
        if self.revocation:
            routes[paths["revoke"]] = ("POST", self._revoke)
        if self.device:
            routes[paths["device_authorization"]] = ("POST", self._device_authorization)
            routes[paths["device"]] = ("GET, POST", self._device_page)
        if req.path not in routes:
            return super().route(req)
        allow, handler = routes[req.path]
        if req.method not in allow.split(", "):
            body = {"error": "invalid_request", "error_description": f"use {allow}"}
            return Response(405, body, {"Allow": allow, **NO_STORE})
        return handler(req)

    def _discovery(self, req: Request) -> Response:
        base, paths = self.issuer, self.paths
        doc: dict[str, Any] = {
            "issuer": base,
            "authorization_endpoint": f"{self.url}{paths['authorize']}",
            "token_endpoint": f"{self.url}{paths['token']}",
            "userinfo_endpoint": f"{self.url}{paths['userinfo']}",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "authorization_response_iss_parameter_supported": self.send_iss,
            "scopes_supported": list(self.scopes_supported),
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["HS256"],
        }
        if self.revocation:
            doc["revocation_endpoint"] = f"{self.url}{paths['revoke']}"
            doc["revocation_endpoint_auth_methods_supported"] = list(AUTH_METHODS)
        if self.device:
            doc["device_authorization_endpoint"] = f"{self.url}{paths['device_authorization']}"
            doc["grant_types_supported"].append(DEVICE_GRANT)
        return Response(200, doc)

    # -- authorization endpoint ------------------------------------------------------------

    def _error_page(self, message: str) -> Response:
        # RFC 6749 §4.1.2.1: untrusted client or redirect_uri: tell the user, never redirect.
        body = f"<p>{html.escape(message)}</p><p>The application was not sent anywhere.</p>"
        return Response.html(400, page("Authorization error", body))

    def _redirect(self, redirect_uri: str, params: dict[str, str | None]) -> Response:
        values = [(k, v) for k, v in params.items() if v is not None]
        if self.send_iss:
            values.append(("iss", self.issuer))  # RFC 9207 mix-up defence, on errors too
        parts = urllib.parse.urlsplit(redirect_uri)
        existing = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        query = urllib.parse.urlencode(existing + values)
        return Response.redirect(urllib.parse.urlunsplit(parts._replace(query=query)))

    def _validate(
        self, multi: dict[str, list[str]]
    ) -> tuple[EmulatorClient, dict[str, str]] | Response:
        """Check authorization parameters; return the client and parameters, or an error."""
        # Every parameter is kept (a provider's own, like Google's access_type, ride along
        # through the consent form); only the standard ones are checked here.
        p = {k: v[0] for k, v in multi.items() if k not in _CONSENT_FIELDS}
        ids = multi.get("client_id", [])
        client = self.clients.get(ids[0]) if len(ids) == 1 else None
        if client is None:
            return self._error_page("Unknown or missing client_id.")
        uris = multi.get("redirect_uri", [])
        if len(uris) != 1 or not redirect_uri_ok(client, uris[0]):
            return self._error_page("Missing or unregistered redirect_uri.")

        def fail(error: str, description: str) -> Response:
            return self._redirect(
                uris[0], {"error": error, "error_description": description, "state": p.get("state")}
            )

        repeated = [k for k in _AUTH_PARAMS if len(multi.get(k, [])) > 1]
        if repeated:  # RFC 6749 §3.1: parameters MUST NOT be repeated
            return fail("invalid_request", f"repeated parameter {repeated[0]}")
        if "response_type" not in p:
            return fail("invalid_request", "response_type is required")
        if p["response_type"] != "code":
            return fail("unsupported_response_type", "only response_type=code is supported")
        challenge, method = p.get("code_challenge"), p.get("code_challenge_method")
        if challenge is None:
            if method is not None:
                return fail("invalid_request", "code_challenge_method without code_challenge")
            if client.auth_method == "none":
                return fail("invalid_request", "public clients must send a PKCE code_challenge")
        elif method != "S256":  # RFC 7636 §4.3: an absent method means plain
            return fail("invalid_request", "code_challenge_method must be S256")
        elif not _S256_CHALLENGE_RE.fullmatch(challenge):
            return fail("invalid_request", "malformed code_challenge")
        unknown = sorted(set(p.get("scope", DEFAULT_SCOPE).split()) - set(self.scopes_supported))
        if unknown:
            return fail("invalid_scope", f"unsupported scope {unknown[0]}")
        return client, p

    def _authorize(self, req: Request) -> Response:
        if req.method == "POST":
            return self._decide(req)
        checked = self._validate(req.query_multi)
        if isinstance(checked, Response):
            return checked
        client, p = checked
        esc = html.escape
        hidden = "".join(
            f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in p.items()
        )
        options = "".join(
            f'<option value="{esc(u.sub)}">{esc(u.name)} &lt;{esc(u.email)}&gt;</option>'
            for u in self.users
        )
        body = (
            f"<p><strong>{esc(client.client_id)}</strong> asks for access with scope "
            f"<code>{esc(p.get('scope', DEFAULT_SCOPE))}</code>.</p>"
            f"<p>You will be sent back to <code>{esc(p['redirect_uri'])}</code>.</p>"
            f'<form method="post" action="{esc(req.path)}">{hidden}'
            f'<p><label>Account <select name="account">{options}</select></label></p>'
            '<p><button type="submit" name="decision" value="allow">Allow</button>'
            '<button type="submit" name="decision" value="deny">Deny</button></p></form>'
        )
        return Response.html(200, page("Authorize access", body))

    def _decide(self, req: Request) -> Response:
        checked = self._validate(req.form_multi)
        if isinstance(checked, Response):
            return checked
        client, p = checked
        state = p.get("state")
        if req.form.get("decision") != "allow":
            return self._redirect(
                p["redirect_uri"],
                {
                    "error": "access_denied",
                    "error_description": "the user denied access",
                    "state": state,
                },
            )
        sub = req.form.get("account") or (self.users[0].sub if self.users else "")
        user = next((u for u in self.users if u.sub == sub), None)
        if user is None:
            return self._error_page("Unknown account.")
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._codes[code] = Code(
                client.client_id,
                p["redirect_uri"],
                p.get("code_challenge"),
                " ".join(
                    s
                    for s in p.get("scope", DEFAULT_SCOPE).split()
                    if s not in self.withheld_scopes
                ),
                user,
                p.get("nonce"),
                time.time() + self.code_lifetime,
                params=dict(p),
            )
        return self._redirect(p["redirect_uri"], {"code": code, "state": state})

    # -- token endpoint --------------------------------------------------------------------

    def _token(self, req: Request) -> Response:
        if (error := self._form_error(req)) is not None:
            return error
        form = req.form
        creds = basic_credentials(req.headers.get("authorization", ""))
        with self._lock:
            claimed = creds[0] if creds else form.get("client_id", "")
            self.token_calls.append(
                {"grant_type": form.get("grant_type", ""), "client_id": claimed}
            )
        client = self._authenticate(req, creds)
        if isinstance(client, Response):
            return client
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return self._grant_code(client, form)
        if grant_type == "refresh_token":
            return self._grant_refresh(client, form)
        if grant_type == DEVICE_GRANT and self.device:
            return self._grant_device(client, form)
        if not grant_type:
            return token_error("invalid_request", "grant_type is required")
        return token_error("unsupported_grant_type", f"grant_type {grant_type} is not supported")

    @staticmethod
    def _form_error(req: Request) -> Response | None:
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return token_error("invalid_request", "body must be application/x-www-form-urlencoded")
        return None

    def _identify(self, req: Request, basic: tuple[str, str] | None) -> EmulatorClient | Response:
        """Return the client a request names (one authentication method at most), or an error."""
        form = req.form
        if basic is not None and "client_secret" in form:
            # RFC 6749 §2.3: a client MUST NOT use more than one authentication method.
            return token_error("invalid_request", "more than one client authentication method")
        if basic is not None and form.get("client_id") not in (None, basic[0]):
            return self._invalid_client(True)
        client = self.clients.get(basic[0] if basic is not None else form.get("client_id", ""))
        return self._invalid_client(basic is not None) if client is None else client

    def _authenticate(
        self, req: Request, basic: tuple[str, str] | None
    ) -> EmulatorClient | Response:
        """Return the client, authenticated by its registered method, or an error answer."""
        client = self._identify(req, basic)
        if isinstance(client, Response):
            return client
        form = req.form
        if client.auth_method == "client_secret_basic":
            ok = basic is not None and _same(basic[1], client.client_secret)
        elif client.auth_method == "client_secret_post":
            ok = basic is None and _same(form.get("client_secret"), client.client_secret)
        else:
            ok = basic is None and "client_secret" not in form
        if not ok:
            return self._invalid_client(
                basic is not None or client.auth_method == "client_secret_basic"
            )
        return client

    @staticmethod
    def _invalid_client(basic: bool) -> Response:
        resp = token_error("invalid_client", "client authentication failed", 401)
        if basic:
            resp.headers["WWW-Authenticate"] = f"Basic {_REALM}"
        return resp

    def _grant_code(self, client: EmulatorClient, form: dict[str, str]) -> Response:
        code = form.get("code")
        if not code:
            return token_error("invalid_request", "code is required")
        verifier = form.get("code_verifier")
        with self._lock:
            rec = self._codes.get(code)
            if rec is None:
                return token_error("invalid_grant", "unknown authorization code")
            if rec.used:
                # RFC 6749 §4.1.2: a replayed code suggests theft; revoke what it produced.
                for table in (self._access, self._refresh):
                    for token in [t for t, g in table.items() if g.origin == code]:
                        del table[token]
                return token_error("invalid_grant", "authorization code already used")
            rec.used = True  # single use: the first presentation consumes it, good or bad
            if rec.client_id != client.client_id:
                return token_error("invalid_grant", "code was issued to another client")
            if time.time() >= rec.expires_at:
                return token_error("invalid_grant", "authorization code expired")
            if form.get("redirect_uri") != rec.redirect_uri:
                return token_error("invalid_grant", "redirect_uri does not match")
            if rec.code_challenge is None:
                if verifier is not None:
                    return token_error("invalid_grant", "code_verifier without code_challenge")
            elif verifier is None or not _VERIFIER_RE.fullmatch(verifier):
                return token_error("invalid_grant", "missing or malformed code_verifier")
            elif not hmac.compare_digest(
                _b64url(hashlib.sha256(verifier.encode()).digest()), rec.code_challenge
            ):
                return token_error("invalid_grant", "PKCE verification failed")
            body = self._issue(rec.client_id, rec.user, rec.scope, code, self._refresh_for(rec))
        if "openid" in rec.scope.split():
            body["id_token"] = self._id_token(client.client_id, rec.user, rec.nonce)
        return Response(200, body, dict(NO_STORE))

    def _refresh_for(self, code: Code) -> bool:
        """Return whether this code's exchange hands out a refresh token too."""
        return self.issue_refresh_tokens

    def _grant_refresh(self, client: EmulatorClient, form: dict[str, str]) -> Response:
        token = form.get("refresh_token")
        if not token:
            return token_error("invalid_request", "refresh_token is required")
        with self._lock:
            grant = self._refresh.get(token)
            if grant is None or grant.client_id != client.client_id or grant.expired():
                return token_error("invalid_grant", "refresh token is unknown, expired or used")
            if self.rotate_refresh_tokens:
                del self._refresh[token]
            again = self.rotate_refresh_tokens or self.reissue_refresh_tokens
            body = self._issue(client.client_id, grant.user, grant.scope, grant.origin, again)
        return Response(200, body, dict(NO_STORE))

    def _issue(
        self, client_id: str, user: EmulatorUser, scope: str, origin: str, refresh: bool
    ) -> dict[str, Any]:
        """Mint an access token (and maybe a refresh token); the caller holds the lock."""
        now = time.time()
        access = secrets.token_urlsafe(32)
        self._access[access] = Grant(
            client_id, user, scope, now + self.access_token_lifetime, origin
        )
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_token_lifetime,
            "scope": scope,
        }
        if refresh:
            token = secrets.token_urlsafe(32)
            lifetime = self.refresh_token_lifetime
            expires = None if lifetime is None else now + lifetime
            self._refresh[token] = Grant(client_id, user, scope, expires, origin)
            body["refresh_token"] = token
        return body

    def _id_token(self, client_id: str, user: EmulatorUser, nonce: str | None) -> str:
        claims = self._id_token_claims(client_id, user, nonce)
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        signing_input = f"{header}.{_b64url(json.dumps(claims).encode())}"
        sig = hmac.new(self.signing_key, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64url(sig)}"

    def _id_token_claims(
        self, client_id: str, user: EmulatorUser, nonce: str | None
    ) -> dict[str, Any]:
        """Return the claims of an id_token for `user` (an emulated provider adds its own)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user.sub,
            "aud": client_id,
            "exp": now + self.access_token_lifetime,
            "iat": now,
            "name": user.name,
            "email": user.email,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        return claims

    # -- device authorization grant (RFC 8628) ---------------------------------------------

    def _device_authorization(self, req: Request) -> Response:
        """RFC 8628 §3.1-3.2: authenticate the client, hand out a device code and a user code."""
        if (error := self._form_error(req)) is not None:
            return error
        client = self._authenticate(req, basic_credentials(req.headers.get("authorization", "")))
        if isinstance(client, Response):
            return client
        if len(req.form_multi.get("scope", [])) > 1:
            return token_error("invalid_request", "repeated parameter scope")
        scope = req.form.get("scope", DEFAULT_SCOPE)
        unknown = sorted(set(scope.split()) - set(self.scopes_supported))
        if unknown:
            return token_error("invalid_scope", f"unsupported scope {unknown[0]}")
        device_code = secrets.token_urlsafe(32)
        with self._lock:
            while True:  # unique among the codes issued: the user's code names one device
                letters = "".join(secrets.choice(_USER_CODE_LETTERS) for _ in range(8))
                if letters not in self._user_codes:
                    break
            user_code = f"{letters[:4]}-{letters[4:]}"
            self._device_codes[device_code] = _DeviceCode(
                client.client_id,
                scope,
                user_code,
                time.time() + self.device_code_lifetime,
                self.device_interval,
                self.slow_down_polls,
            )
            self._user_codes[letters] = device_code
        page_url = f"{self.url}{self.paths['device']}"
        query = urllib.parse.urlencode({"user_code": user_code})
        body = {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": page_url,
            "verification_uri_complete": f"{page_url}?{query}",
            "expires_in": self.device_code_lifetime,
            "interval": self.device_interval,
        }
        return Response(200, body, dict(NO_STORE))

    def _live_device_code(self, user_code: str) -> _DeviceCode | None:
        """Return the device code a user code names, if it still awaits a decision."""
        device_code = self._user_codes.get(_user_code_key(user_code))
        rec = self._device_codes.get(device_code or "")
        if rec is None or rec.decision != "pending" or time.time() >= rec.expires_at:
            return None
        return rec

    def _device_page(self, req: Request) -> Response:
        """RFC 8628 §3.3: the verification page, where the user enters the code and decides."""
        if req.method == "POST":
            return self._device_decide(req)
        esc = html.escape
        typed = req.query.get("user_code", "")
        with self._lock:
            rec = self._live_device_code(typed) if typed else None
        about = ""
        if rec is not None:  # the code came in the address: say what it would allow
            about = (
                f"<p><strong>{esc(rec.client_id)}</strong> asks for access with scope "
                f"<code>{esc(rec.scope)}</code>.</p>"
            )
        options = "".join(
            f'<option value="{esc(u.sub)}">{esc(u.name)} &lt;{esc(u.email)}&gt;</option>'
            for u in self.users
        )
        body = (
            f"<p>Enter the code your device shows.</p>{about}"
            f'<form method="post" action="{esc(req.path)}">'
            f'<p><label>Code <input name="user_code" value="{esc(typed)}" autocomplete="off" '
            'autocapitalize="characters" spellcheck="false"></label></p>'
            f'<p><label>Account <select name="account">{options}</select></label></p>'
            '<p><button type="submit" name="decision" value="allow">Allow</button>'
            '<button type="submit" name="decision" value="deny">Deny</button></p></form>'
        )
        return Response.html(200, page("Connect a device", body))

    def _device_decide(self, req: Request) -> Response:
        form = req.form
        allow = form.get("decision") == "allow"
        sub = form.get("account") or (self.users[0].sub if self.users else "")
        user = next((u for u in self.users if u.sub == sub), None)
        with self._lock:
            rec = self._live_device_code(form.get("user_code", ""))
            if rec is None:
                body = (
                    "<p>That code is unknown, has expired or was already used. Check the code "
                    "your device shows, or start the login on the device again.</p>"
                )
                return Response.html(400, page("Unknown code", body))
            if allow and user is None:
                return self._error_page("Unknown account.")
            rec.decision, rec.user = ("allowed", user) if allow else ("denied", None)
        if allow:
            text = "<p>The device is being logged in. You can close this page.</p>"
            return Response.html(200, page("Device connected", text))
        text = "<p>The device was not given access. You can close this page.</p>"
        return Response.html(200, page("Access denied", text))

    def _grant_device(self, client: EmulatorClient, form: dict[str, str]) -> Response:
        """RFC 8628 §3.4-3.5: answer a poll with a token or why there is none yet."""
        device_code = form.get("device_code")
        if not device_code:
            return token_error("invalid_request", "device_code is required")
        now = time.monotonic()
        with self._lock:
            answer, description = self._device_answer(client, device_code, now)
            self.device_polls.append((now, answer))
            if answer != "token":
                return token_error(answer, description)
            rec = self._device_codes[device_code]
            assert rec.user is not None
            rec.used = True  # single use: the token goes out once
            granted = " ".join(s for s in rec.scope.split() if s not in self.withheld_scopes)
            body = self._issue(
                client.client_id, rec.user, granted, device_code, self.issue_refresh_tokens
            )
        if "openid" in rec.scope.split():
            body["id_token"] = self._id_token(client.client_id, rec.user, None)
        return Response(200, body, dict(NO_STORE))

    def _device_answer(
        self, client: EmulatorClient, device_code: str, now: float
    ) -> tuple[str, str]:
        """Return the error a poll gets (or "token"); the caller holds the lock."""
        rec = self._device_codes.get(device_code)
        if rec is None or rec.client_id != client.client_id:
            return "invalid_grant", "unknown device code, or issued to another client"
        if rec.used:
            return "invalid_grant", "device code already used"
        if time.time() >= rec.expires_at:
            return "expired_token", "the device code has expired"
        too_soon = rec.last_poll is not None and now - rec.last_poll < rec.interval
        rec.last_poll = now
        if too_soon or rec.forced_slow_downs > 0:
            rec.forced_slow_downs = max(rec.forced_slow_downs - 1, 0)
            rec.interval += _SLOW_DOWN_STEP  # for this and every later poll of this code
            return "slow_down", f"poll at most every {rec.interval} s"
        if rec.decision == "pending":
            return "authorization_pending", "the user has not decided yet"
        if rec.decision == "denied":
            return "access_denied", "the user denied access"
        return "token", ""

    # -- revocation endpoint (RFC 7009) -----------------------------------------------------

    def _revoke(self, req: Request) -> Response:
        form = req.form
        creds = basic_credentials(req.headers.get("authorization", ""))
        with self._lock:
            claimed = creds[0] if creds else form.get("client_id", "")
            self.revocation_calls.append(
                {"client_id": claimed, "token_type_hint": form.get("token_type_hint", "")}
            )
        if self.fail_revocation is not None:
            status = self.fail_revocation
            return token_error("temporarily_unavailable", "revocation is unavailable", status)
        if (error := self._form_error(req)) is not None:
            return error
        client = self._authenticate(req, creds)
        if isinstance(client, Response):
            return client
        token = form.get("token")
        if not token:
            return token_error("invalid_request", "token is required")
        hint = form.get("token_type_hint")
        # RFC 7009 §2.2.1: the hint only orders the search; an unknown hint searches all types.
        kinds = sorted(_TOKEN_KINDS, key=lambda kind: kind != hint)
        with self._lock:
            for kind in kinds:
                table = self._refresh if kind == "refresh_token" else self._access
                grant = table.get(token)
                if grant is None:
                    continue
                if grant.client_id != client.client_id:
                    # RFC 7009 §2.1: a token issued to another client is refused, and kept.
                    return token_error("unauthorized_client", "token was issued to another client")
                del table[token]
                if kind == "refresh_token":
                    # RFC 7009 §2.1: the access tokens of the same grant go with it.
                    for access in [t for t, g in self._access.items() if g.origin == grant.origin]:
                        del self._access[access]
                self.revoked.append(kind)
                break
        # RFC 7009 §2.2: unknown, expired or already revoked tokens are a success too.
        return Response(200, b"", dict(NO_STORE))

    # -- userinfo --------------------------------------------------------------------------

    def _userinfo(self, req: Request) -> Response:
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        with self._lock:
            grant = self._access.get(token.strip()) if scheme.lower() == "bearer" else None
            valid = grant is not None and not grant.expired()
        if grant is None or not valid:
            challenge = f'Bearer {_REALM}, error="invalid_token"'
            return Response(401, {"error": "invalid_token"}, {"WWW-Authenticate": challenge})
        user = grant.user
        return Response(
            200, {"sub": user.sub, "name": user.name, "email": user.email}, dict(NO_STORE)
        )
