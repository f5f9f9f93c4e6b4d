"""A local Google on loopback: Google's paths, answers and quirks, for tests and demos.

One server stands in for accounts.google.com (`/o/oauth2/v2/auth`), oauth2.googleapis.com
(`/token`, `/device/code`, `/revoke`), openidconnect.googleapis.com (`/v1/userinfo`) and
www.google.com/device (`/device`); its discovery document is Google's published one pointed at
this server. What it does as Google does (sources: docs/google.md):

- every client has a secret and must send it at the token endpoint, in the form body or with
  HTTP Basic (both are in Google's document); `/device/code` takes the client_id alone;
- a refresh token comes with a code exchange only when `access_type=offline` was asked for, and
  only the first time the user consents to the client, unless `prompt=consent` asked again
  (the stricter of Google's two guides); a refresh answers without a new refresh token; at most
  `refresh_token_limit` (100) live refresh tokens per user and client, the oldest dropped;
- `email` and `profile` are granted as `.../auth/userinfo.email` and `.../userinfo.profile`;
- an id_token's iss is the issuer with or without its scheme (`id_token_iss`);
- the device grant needs a "TVs and Limited Input devices" client, answers with
  `verification_url` (not RFC 8628's `verification_uri`) and polls with HTTP 428 for
  authorization_pending and 403 for slow_down and access_denied;
- a revocation takes the token in the body or the query, needs no client authentication, and
  ends the user's whole grant; an unknown or revoked token gets HTTP 400 `invalid_token`.

Choices of this emulator where Google documents nothing are marked "ours".
"""

from __future__ import annotations

import hmac
import itertools
import threading
from dataclasses import dataclass
from typing import Any

from loopauth.emulator import EmulatorClient, EmulatorUser, OAuthEmulator, Request, Response
from loopauth.emulator.oauth import NO_STORE, token_error
from loopauth.emulator.registry import Code, basic_credentials

from . import google_scope, published_metadata

__all__ = [
    "DESKTOP_CLIENT_ID",
    "DESKTOP_CLIENT_SECRET",
    "DEVICE_SCOPES",
    "GOOGLE_PATHS",
    "GOOGLE_USERS",
    "TV_CLIENT_ID",
    "TV_CLIENT_SECRET",
    "GoogleClient",
    "GoogleEmulator",
    "GoogleUser",
    "google_clients",
]

GOOGLE_PATHS = {
    "authorize": "/o/oauth2/v2/auth",
    "token": "/token",
    "userinfo": "/v1/userinfo",
    "revoke": "/revoke",
    "device_authorization": "/device/code",
    "device": "/device",
}
# The emulator's own clients (made-up values in Google's client id shape).
DESKTOP_CLIENT_ID = "100000000001-loopauthdesktop.apps.googleusercontent.com"
DESKTOP_CLIENT_SECRET = "emulator-desktop-secret"
TV_CLIENT_ID = "100000000001-loopauthtv.apps.googleusercontent.com"
TV_CLIENT_SECRET = "emulator-tv-secret"
# Google's loopback redirect is http://127.0.0.1:port (or [::1], or localhost); its samples and
# libraries use the root path, which is all this emulator accepts (any port).
_LOOPBACK_ROOTS = ["http://127.0.0.1/", "http://[::1]/", "http://localhost/"]
_API = "https://www.googleapis.com/auth/"
# "The OAuth 2.0 flow for devices is supported only for the following scopes" (Google's list).
DEVICE_SCOPES = frozenset(
    {
        "openid",
        "email",
        "profile",
        f"{_API}drive.appdata",
        f"{_API}drive.file",
        f"{_API}youtube",
        f"{_API}youtube.readonly",
    }
)
# What a login may ask for here: the OpenID scopes, their URL names and a few API scopes.
SCOPES = (
    "openid",
    "email",
    "profile",
    f"{_API}userinfo.email",
    f"{_API}userinfo.profile",
    f"{_API}drive.readonly",
    f"{_API}drive.file",
    f"{_API}drive.appdata",
    f"{_API}calendar.readonly",
    f"{_API}youtube",
    f"{_API}youtube.readonly",
)
ID_TOKEN_ISS = ("url", "bare", "alternate")
# Google's device-flow polling statuses (its limited-input device guide).
_POLL_STATUS = {"authorization_pending": 428, "slow_down": 403, "access_denied": 403}


@dataclass
class GoogleClient(EmulatorClient):
    """A Google OAuth client: a Desktop app ("desktop") or a TVs and Limited Input one ("tv")."""

    kind: str = "desktop"


@dataclass(frozen=True)
class GoogleUser(EmulatorUser):
    """A Google account: a numeric `sub`; `hd` for a Google Workspace account's domain."""

    hd: str | None = None


GOOGLE_USERS = (
    GoogleUser("109876543210987654321", "Ada Lovelace", "ada@example.test"),
    GoogleUser(
        "117654321098765432109", "Grace Hopper", "grace@hopper.example.test", "hopper.example.test"
    ),
)


def google_clients() -> dict[str, EmulatorClient]:
    """Fresh copies of the emulator's clients: a Desktop app and a TV (device flow) one."""
    return {
        DESKTOP_CLIENT_ID: GoogleClient(
            DESKTOP_CLIENT_ID, DESKTOP_CLIENT_SECRET, list(_LOOPBACK_ROOTS), "client_secret_post"
        ),
        TV_CLIENT_ID: GoogleClient(TV_CLIENT_ID, TV_CLIENT_SECRET, [], "client_secret_post", "tv"),
    }


class GoogleEmulator(OAuthEmulator):
    """Google's authorization server as its guides describe it (see the module docstring).

    Options besides OAuthEmulator's: `id_token_iss` "url" (the issuer), "bare" (without its
    scheme, as in `accounts.google.com`) or "alternate" (bare first, then by turns);
    `device_id_token` False leaves the id_token out of device-flow answers (Google's device
    guide does not list it), so the account is named from userinfo; `refresh_token_limit`.
    `client_auth` records how each token request authenticated ("post" or "basic").
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clients: dict[str, EmulatorClient] | None = None,
        users: list[EmulatorUser] | None = None,
        id_token_iss: str = "alternate",
        device_id_token: bool = True,
        refresh_token_limit: int = 100,
        **options: Any,
    ) -> None:
        if id_token_iss not in ID_TOKEN_ISS:
            raise ValueError(f"id_token_iss must be one of {', '.join(ID_TOKEN_ISS)}")
        super().__init__(
            host,
            port,
            clients=clients if clients is not None else google_clients(),
            users=list(users if users is not None else GOOGLE_USERS),
            **options,
        )
        self.paths.update(GOOGLE_PATHS)
        self.scopes_supported = SCOPES
        self.id_token_iss = id_token_iss
        self.device_id_token = device_id_token
        self.refresh_token_limit = refresh_token_limit
        self.client_auth: list[str] = []
        self._consented: set[tuple[str, str]] = set()  # (client_id, sub) that consented once
        self._iss_turns = itertools.count()
        self._turn_lock = threading.Lock()

    # -- discovery -------------------------------------------------------------------------

    def _discovery(self, req: Request) -> Response:
        """Google's published document, its endpoints moved to this server."""
        doc = dict(published_metadata())
        url, paths = self.url, self.paths
        doc.update(
            issuer=self.issuer,
            authorization_endpoint=f"{url}{paths['authorize']}",
            device_authorization_endpoint=f"{url}{paths['device_authorization']}",
            token_endpoint=f"{url}{paths['token']}",
            userinfo_endpoint=f"{url}{paths['userinfo']}",
            revocation_endpoint=f"{url}{paths['revoke']}",
            # This server signs id_tokens with HS256 and publishes no keys (loopauth takes an
            # id_token from the token endpoint over TLS and does not check signatures).
            id_token_signing_alg_values_supported=["HS256"],
            # Google also takes `plain`; this server checks S256 only.
            code_challenge_methods_supported=["S256"],
        )
        doc.pop("jwks_uri", None)
        if not self.revocation:
            doc.pop("revocation_endpoint")
        if not self.device:
            doc.pop("device_authorization_endpoint")
            doc["grant_types_supported"] = [
                g for g in doc["grant_types_supported"] if not g.endswith(":device_code")
            ]
        return Response(200, doc)

    # -- authorization ---------------------------------------------------------------------

    def _redirect(self, redirect_uri: str, params: dict[str, str | None]) -> Response:
        """Google's callback also carries the granted scope and `authuser` (seen in its logs)."""
        code = params.get("code")
        if code is not None:
            with self._lock:
                rec = self._codes.get(code)
            params = {**params, "scope": google_scope(rec.scope) if rec else None, "authuser": "0"}
        return super()._redirect(redirect_uri, params)

    # -- token endpoint --------------------------------------------------------------------

    def _authenticate(
        self, req: Request, basic: tuple[str, str] | None
    ) -> EmulatorClient | Response:
        """Google: a client secret, in the body or with HTTP Basic; /device/code needs none."""
        client = self._identify(req, basic)  # one method at a time, as RFC 6749 §2.3 says
        if isinstance(client, Response):
            return client
        secret = basic[1] if basic is not None else req.form.get("client_secret")
        if secret is None:
            if req.path == self.paths["device_authorization"]:
                return client  # Google lists client_id and scope only
            # What Desktop clients without a secret get (widely reported; Google's guide marks
            # the secret "Optional").
            return token_error("invalid_request", "client_secret is missing.")
        expected = (client.client_secret or "").encode()
        if not hmac.compare_digest(secret.encode(), expected) or not expected:
            return self._invalid_client(basic is not None)
        if req.path == self.paths["token"]:
            with self._lock:
                self.client_auth.append("basic" if basic is not None else "post")
        return client

    def _refresh_for(self, code: Code) -> bool:
        """access_type=offline, and the user's first consent to this client or prompt=consent."""
        key = (code.client_id, code.user.sub)
        first = key not in self._consented
        self._consented.add(key)  # the caller holds the lock
        offline = code.params.get("access_type") == "offline"
        again = "consent" in code.params.get("prompt", "").split()
        return self.issue_refresh_tokens and offline and (first or again)

    def _issue(
        self, client_id: str, user: EmulatorUser, scope: str, origin: str, refresh: bool
    ) -> dict[str, Any]:
        """Google writes `email` as its URL; a 101st refresh token drops the user's oldest."""
        body = super()._issue(client_id, user, scope, origin, refresh)
        body["scope"] = google_scope(scope)
        if "refresh_token" in body:  # "creating a new refresh token automatically invalidates
            # the oldest refresh token without warning" once there are 100 (the caller locks)
            mine = [
                t
                for t, g in self._refresh.items()
                if (g.client_id, g.user.sub) == (client_id, user.sub)
            ]
            for token in mine[: max(len(mine) - self.refresh_token_limit, 0)]:
                del self._refresh[token]
        return body

    def _id_token_claims(
        self, client_id: str, user: EmulatorUser, nonce: str | None
    ) -> dict[str, Any]:
        """Google's claims: iss with or without the scheme, azp, email_verified, hd."""
        claims = super()._id_token_claims(client_id, user, nonce)
        bare = self.issuer.partition("://")[2]
        if self.id_token_iss == "bare":
            claims["iss"] = bare
        elif self.id_token_iss == "alternate":
            with self._turn_lock:
                turn = next(self._iss_turns)
            claims["iss"] = bare if turn % 2 == 0 else self.issuer
        claims["azp"] = client_id
        claims["email_verified"] = True
        hd = getattr(user, "hd", None)
        if hd:
            claims["hd"] = hd
        return claims

    # -- device authorization grant --------------------------------------------------------

    def _device_authorization(self, req: Request) -> Response:
        """Google's /device/code: a TV client, allowed scopes, and `verification_url`."""
        if (error := self._form_error(req)) is not None:
            return error
        basic = basic_credentials(req.headers.get("authorization", ""))
        client = self.clients.get(basic[0] if basic is not None else req.form.get("client_id", ""))
        if client is not None and getattr(client, "kind", "desktop") != "tv":
            return token_error(
                "invalid_client",
                "The OAuth client type is incorrect: the application type of the client must "
                "be TVs and Limited Input devices",
                401,
            )
        scope = req.form.get("scope", "")
        if not scope.split():
            return token_error(
                "invalid_request", "scope is required"
            )  # Google: Required (code ours)
        outside = sorted(set(scope.split()) - DEVICE_SCOPES)
        if outside:  # the error code is ours: Google only lists the allowed scopes
            return token_error("invalid_scope", f"scope {outside[0]} is not allowed for devices")
        resp = super()._device_authorization(req)
        if resp.status == 200 and isinstance(resp.body, dict):
            # Google's name; whether it also sends verification_uri(_complete) is not documented.
            resp.body["verification_url"] = resp.body.pop("verification_uri")
            resp.body.pop("verification_uri_complete", None)
        return resp

    def _grant_device(self, client: EmulatorClient, form: dict[str, str]) -> Response:
        """Polling answers with Google's HTTP statuses: 428 pending, 403 slow_down and denied."""
        resp = super()._grant_device(client, form)
        if isinstance(resp.body, dict):
            resp.status = _POLL_STATUS.get(str(resp.body.get("error")), resp.status)
            if resp.status == 200 and not self.device_id_token:
                resp.body.pop("id_token", None)
        # Google does not list expired_token; the base answer (400 expired_token) is ours.
        return resp

    # -- revocation ------------------------------------------------------------------------

    def _revoke(self, req: Request) -> Response:
        """Google's /revoke: the token in the body or the query; the whole grant ends."""
        form = req.form
        basic = basic_credentials(req.headers.get("authorization", ""))
        with self._lock:
            self.revocation_calls.append(
                {
                    "client_id": basic[0] if basic is not None else form.get("client_id", ""),
                    "token_type_hint": form.get("token_type_hint", ""),
                }
            )
        if self.fail_revocation is not None:
            return token_error(
                "temporarily_unavailable", "revocation is unavailable", self.fail_revocation
            )
        token = form.get("token") or req.query.get("token")
        if not token:
            return token_error("invalid_request", "token is required")  # ours
        with self._lock:
            kind = "refresh_token" if token in self._refresh else "access_token"
            grant = self._refresh.get(token) or self._access.get(token)
            if grant is None or grant.expired():
                # Google's body for an unknown or revoked token, as third parties record it.
                return token_error("invalid_token", "Token expired or revoked")
            # "Revocation removes all OAuth 2.0 scopes previously granted to a project": every
            # token of this user, for every client (this server is one project).
            sub = grant.user.sub
            for table in (self._refresh, self._access):
                for gone in [t for t, g in table.items() if g.user.sub == sub]:
                    del table[gone]
            self._consented = {key for key in self._consented if key[1] != sub}
            self.revoked.append(kind)
        return Response(200, {}, dict(NO_STORE))

    # -- userinfo --------------------------------------------------------------------------

    def _userinfo(self, req: Request) -> Response:
        """Google's userinfo: email with the email scope, names with the profile scope."""
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        with self._lock:
            grant = self._access.get(token.strip()) if scheme.lower() == "bearer" else None
            valid = grant is not None and not grant.expired()
        if grant is None or not valid:
            challenge = 'Bearer error="invalid_token"'
            return Response(401, {"error": "invalid_token"}, {"WWW-Authenticate": challenge})
        user, granted = grant.user, set(google_scope(grant.scope).split())
        body: dict[str, Any] = {"sub": user.sub}
        if f"{_API}userinfo.profile" in granted:
            given, _, family = user.name.partition(" ")
            body.update(name=user.name, given_name=given, family_name=family)
        if f"{_API}userinfo.email" in granted:
            body.update(email=user.email, email_verified=True)
        hd = getattr(user, "hd", None)
        if hd:
            body["hd"] = hd
        return Response(200, body, dict(NO_STORE))
