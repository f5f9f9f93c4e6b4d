"""A local GitHub for tests and demos: the OAuth web flow, the device flow and `GET /user`.

It is the standard emulator with GitHub's paths and habits, as GitHub's docs describe them:

- `/login/oauth/authorize` takes no `response_type` (none is documented) and no scope means
  no scope; the redirect carries no `iss`; there is no discovery document and no id_token;
- `/login/oauth/access_token` needs no `grant_type` for a code, answers form-encoded unless the
  request's Accept asks for JSON, writes the granted scopes comma-separated and normalized
  (`user` covers `user:email`), and answers errors with HTTP 200 and GitHub's codes
  (`bad_verification_code`, `incorrect_client_credentials`, `bad_refresh_token`...);
- tokens (`gho_...`) never expire and come without a refresh token, unless `expiring_tokens`
  (or the `offline_access` scope) asks for GitHub's expiring ones: 8 hours, with a `ghr_...`
  refresh token good for six months and for one use, which also ends the old access token;
- `/login/device/code` and `/login/device`: the device flow, polled without the client
  secret, `slow_down` answers carrying the new `interval`, no `verification_uri_complete`;
- `/user` (and GHES's `/api/v3/user`): `{"login", "id", ...}` for a valid token, 401 otherwise.

What GitHub does not document (the HTTP status of web-flow errors, the code for a failed PKCE
check, what a disabled device flow answers, `bad_refresh_token`'s text) is this emulator's
choice, the one most often seen. Facts and sources: docs/github.md.
"""

from __future__ import annotations

import secrets
import string
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from loopauth.emulator import EmulatorClient, EmulatorUser, OAuthEmulator, Request, Response
from loopauth.emulator.oauth import DEVICE_GRANT
from loopauth.emulator.registry import Grant

from . import INCLUDED_SCOPES

__all__ = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "EXPIRES_IN",
    "REFRESH_EXPIRES_IN",
    "SCOPES",
    "USERS",
    "GitHubEmulator",
    "GitHubUser",
    "github_clients",
    "normalized_scopes",
]

CLIENT_ID = "github-demo"
CLIENT_SECRET = "github-demo-secret"
# GitHub's expiring user tokens: "always 28800 (8 hours)" and "always 15897600 (6 months)".
EXPIRES_IN = 28800
REFRESH_EXPIRES_IN = 15897600
DEVICE_CODE_LIFETIME = 900  # GitHub's default
SCOPES = (
    "repo",
    "repo:status",
    "repo_deployment",
    "public_repo",
    "repo:invite",
    "security_events",
    "admin:repo_hook",
    "write:repo_hook",
    "read:repo_hook",
    "admin:org",
    "write:org",
    "read:org",
    "admin:public_key",
    "write:public_key",
    "read:public_key",
    "admin:org_hook",
    "gist",
    "notifications",
    "user",
    "read:user",
    "user:email",
    "user:follow",
    "project",
    "read:project",
    "delete_repo",
    "write:packages",
    "read:packages",
    "delete:packages",
    "admin:gpg_key",
    "write:gpg_key",
    "read:gpg_key",
    "codespace",
    "workflow",
    "read:audit_log",
    "offline_access",  # not a scope a token lists: it asks for an expiring token
)
# GitHub's descriptions where its troubleshooting pages give them; the others are ours.
DESCRIPTIONS = {
    "incorrect_client_credentials": "The client_id and/or client_secret passed are incorrect.",
    "redirect_uri_mismatch": "The redirect_uri MUST match the registered callback URL for this "
    "application.",
    "bad_verification_code": "The code passed is incorrect or expired.",
    "bad_refresh_token": "The refresh token passed is incorrect or expired.",
    "incorrect_device_code": "The device_code provided is not valid.",
    "device_flow_disabled": "Device Flow must be explicitly enabled for this App",
}
_TOKEN_LETTERS = string.ascii_letters + string.digits


@dataclass(frozen=True)
class GitHubUser(EmulatorUser):
    """A GitHub user: a numeric id (also the consent page's `sub`) and a login."""

    login: str = ""
    id: int = 0


def github_user(user_id: int, login: str, name: str) -> GitHubUser:
    """Return a user whose consent-page value (`sub`) is its numeric id."""
    return GitHubUser(str(user_id), name, f"{login}@example.test", login=login, id=user_id)


USERS = (
    github_user(583231, "octocat", "The Octocat"),
    github_user(7654321, "hubot", "Hubot"),
)


def github_clients() -> dict[str, EmulatorClient]:
    """A fresh copy of the demo OAuth app: a client secret, the loopback callback URL."""
    # The secret goes in the form (client_secret_post), as GitHub's docs show it.
    return {
        CLIENT_ID: EmulatorClient(
            CLIENT_ID, CLIENT_SECRET, ["http://127.0.0.1/callback"], "client_secret_post"
        )
    }


def normalized_scopes(scopes: Iterable[str]) -> list[str]:
    """Return the scopes a token is saved with: those covered by another one dropped."""
    asked = [s for s in dict.fromkeys(scopes) if s and s != "offline_access"]
    return [s for s in asked if not any(s in INCLUDED_SCOPES.get(o, ()) for o in asked)]


def _token(prefix: str) -> str:
    # GitHub's tokens: a prefix naming the kind, then 36 letters and digits.
    return prefix + "".join(secrets.choice(_TOKEN_LETTERS) for _ in range(36))


def _profile(user: EmulatorUser) -> tuple[str, int]:
    """Return a user's login and numeric id (a plain EmulatorUser gets stable stand-ins)."""
    if isinstance(user, GitHubUser):
        return user.login, user.id
    return user.sub, int(user.sub) if user.sub.isdigit() else zlib.crc32(user.sub.encode())


class GitHubEmulator(OAuthEmulator):
    """GitHub's OAuth endpoints, device flow and `GET /user` on loopback."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        expiring_tokens: bool = False,
        ignore_accept: bool = False,
        clients: dict[str, EmulatorClient] | None = None,
        users: Iterable[EmulatorUser] | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("send_iss", False)  # GitHub sends no RFC 9207 iss
        options.setdefault("revocation", False)  # nor has an RFC 7009 endpoint
        options.setdefault("access_token_lifetime", EXPIRES_IN)
        options.setdefault("refresh_token_lifetime", REFRESH_EXPIRES_IN)
        options.setdefault("rotate_refresh_tokens", True)  # a refresh token works once
        options.setdefault("issue_refresh_tokens", expiring_tokens)
        options.setdefault("device_code_lifetime", DEVICE_CODE_LIFETIME)
        super().__init__(
            host,
            port,
            clients=clients if clients is not None else github_clients(),
            users=list(users if users is not None else USERS),
            **options,
        )
        self.paths.update(
            authorize="/login/oauth/authorize",
            token="/login/oauth/access_token",
            device_authorization="/login/device/code",
            device="/login/device",
            userinfo="/user",
        )
        self.scopes_supported = SCOPES
        self.expiring_tokens = expiring_tokens
        # True: form-encoded answers whatever the Accept header asks (GitHub's default format).
        self.ignore_accept = ignore_accept
        # Each GET /user: the Accept and X-GitHub-Api-Version it came with (never the token).
        self.user_calls: list[dict[str, str]] = []
        self._calls_lock = threading.Lock()

    # -- routing ---------------------------------------------------------------------------

    def route(self, req: Request) -> Response:
        """Route GitHub's paths; token and device answers in the format GitHub would use."""
        path = req.path
        if path.startswith("/.well-known/"):  # GitHub publishes no discovery document
            return Response(404, {"message": "Not Found"})
        if path in (self.paths["userinfo"], "/api/v3/user"):  # github.com's and GHES's path
            if req.method != "GET":
                return Response(404, {"message": "Not Found"})
            return self._user(req)
        if path == self.paths["authorize"]:
            self._github_authorization(req)
            return super().route(req)
        if path == self.paths["token"] and req.method == "POST":
            return self._encoded(req, self._github_token(req))
        if path == self.paths["device_authorization"] and req.method == "POST":
            return self._encoded(req, self._github_device_code(req))
        return super().route(req)

    def _github_authorization(self, req: Request) -> None:
        """Make GitHub's authorization request one the standard checks take."""
        multi = req.form_multi if req.method == "POST" else req.query_multi
        # GitHub documents no response_type: it has only the code flow.
        multi.setdefault("response_type", ["code"])
        # No scope asks for none (public data only), not for the standard default.
        scope = multi.setdefault("scope", [""])
        # GitHub's docs separate scopes with spaces; commas appear in its examples too.
        multi["scope"] = [" ".join(s.replace(",", " ").split()) for s in scope]

    def _github_token(self, req: Request) -> Response:
        form = req.form_multi
        if "grant_type" not in form and "code" in form:
            form["grant_type"] = ["authorization_code"]  # GitHub's code exchange names none
        grant_type = req.form.get("grant_type", "")
        origin = None
        if grant_type == "refresh_token":
            with self._lock:
                old = self._refresh.get(req.form.get("refresh_token", ""))
                origin = old.origin if old is not None else None
        resp = super().route(req)
        if resp.status == 200 and isinstance(resp.body, dict) and "access_token" in resp.body:
            if origin is not None:
                # "Once you use a refresh token, that refresh token and the old user access
                # token will no longer work."
                new = resp.body["access_token"]
                with self._lock:
                    for token in [t for t, g in self._access.items() if g.origin == origin]:
                        if token != new:
                            del self._access[token]
            return resp
        return self._github_error(resp, grant_type, req)

    def _github_device_code(self, req: Request) -> Response:
        if not self.device:
            return self._error("device_flow_disabled")
        req.form_multi.setdefault("scope", [""])  # none asked: none granted
        resp = super().route(req)
        if resp.status == 200 and isinstance(resp.body, dict) and "device_code" in resp.body:
            resp.body.pop("verification_uri_complete", None)  # GitHub sends none
            return resp
        return self._github_error(resp, "", req)

    def _github_error(self, resp: Response, grant_type: str, req: Request) -> Response:
        """Answer an error as GitHub does: its own codes, with HTTP 200."""
        body = resp.body
        if not isinstance(body, dict) or "error" not in body:
            return resp
        error, description = str(body["error"]), str(body.get("error_description") or "")
        if error == "invalid_client":
            error = "incorrect_client_credentials"
        elif error == "invalid_grant":
            error = {
                "authorization_code": "bad_verification_code",
                "refresh_token": "bad_refresh_token",
                DEVICE_GRANT: "incorrect_device_code",
            }.get(grant_type, error)
            if grant_type == "authorization_code" and "redirect_uri" in description:
                error = "redirect_uri_mismatch"
        answer = self._error(error, description)
        if error == "slow_down":  # GitHub says the new interval in the answer
            with self._lock:
                rec = self._device_codes.get(req.form.get("device_code", ""))
                if rec is not None:
                    assert isinstance(answer.body, dict)
                    answer.body["interval"] = rec.interval
        return answer

    @staticmethod
    def _error(error: str, description: str = "") -> Response:
        body = {"error": error, "error_description": DESCRIPTIONS.get(error, description)}
        return Response(200, body, {"Cache-Control": "no-store"})

    def _encoded(self, req: Request, resp: Response) -> Response:
        """Form-encode an answer unless the request asked for JSON (GitHub's default)."""
        if not isinstance(resp.body, dict):
            return resp
        if "application/json" in req.headers.get("accept", "").lower() and not self.ignore_accept:
            return resp
        pairs = [(k, str(v)) for k, v in resp.body.items() if v is not None]
        return Response(
            resp.status,
            urlencode(pairs).encode(),
            resp.headers,
            "application/x-www-form-urlencoded; charset=utf-8",
        )

    # -- clients and tokens ----------------------------------------------------------------

    def _authenticate(
        self, req: Request, basic: tuple[str, str] | None
    ) -> EmulatorClient | Response:
        """The client secret is not needed for the device flow, nor to refresh its tokens."""
        if basic is None and "client_secret" not in req.form and self._secret_optional(req):
            client = self.clients.get(req.form.get("client_id", ""))
            return client if client is not None else self._invalid_client(False)
        return super()._authenticate(req, basic)

    def _secret_optional(self, req: Request) -> bool:
        if req.path == self.paths["device_authorization"]:
            return True
        grant_type = req.form.get("grant_type")
        if grant_type == DEVICE_GRANT:
            return True
        if grant_type == "refresh_token":
            # "Required unless the user access token was generated using the device flow."
            with self._lock:
                grant = self._refresh.get(req.form.get("refresh_token", ""))
                return grant is not None and grant.origin in self._device_codes
        return False

    def _issue(
        self, client_id: str, user: EmulatorUser, scope: str, origin: str, refresh: bool
    ) -> dict[str, Any]:
        """Mint GitHub's tokens; the caller holds the lock.

        `refresh` (the standard emulator's choice) is not used: GitHub hands out a refresh
        token exactly when the access token expires.
        """
        now = time.time()
        asked = scope.split()
        expiring = self.expiring_tokens or "offline_access" in asked
        granted = normalized_scopes(asked)
        access = _token("gho_")
        expires = now + self.access_token_lifetime if expiring else None
        self._access[access] = Grant(client_id, user, " ".join(granted), expires, origin)
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "bearer",
            "scope": ",".join(granted),
        }
        if expiring:
            refresh_token = _token("ghr_")
            lifetime = self.refresh_token_lifetime
            until = None if lifetime is None else now + lifetime
            # The refresh grant keeps offline_access, so that its tokens expire too.
            self._refresh[refresh_token] = Grant(client_id, user, scope, until, origin)
            body.update(
                expires_in=self.access_token_lifetime,
                refresh_token=refresh_token,
                refresh_token_expires_in=lifetime,
            )
        return body

    # -- the REST API ----------------------------------------------------------------------

    def _user(self, req: Request) -> Response:
        """`GET /user`: the token's user, or 401 Bad credentials."""
        scheme, _, value = req.headers.get("authorization", "").partition(" ")
        # GitHub takes `Authorization: Bearer` and `Authorization: token`.
        token = value.strip() if scheme.lower() in ("bearer", "token") else ""
        with self._calls_lock:
            self.user_calls.append(
                {
                    "accept": req.headers.get("accept", ""),
                    "x-github-api-version": req.headers.get("x-github-api-version", ""),
                }
            )
        with self._lock:
            grant = self._access.get(token)
            valid = grant is not None and not grant.expired()
        if grant is None or not valid:
            body = {
                "message": "Bad credentials",
                "documentation_url": "https://docs.github.com/rest",
            }
            return Response(401, body, content_type="application/json; charset=utf-8")
        login, user_id = _profile(grant.user)
        profile: dict[str, Any] = {
            "login": login,
            "id": user_id,
            "node_id": f"U_emulated{user_id}",
            "type": "User",
            "site_admin": False,
            "name": grant.user.name,
            "email": grant.user.email,
        }
        headers = {"X-OAuth-Scopes": ", ".join(grant.scope.split()), "Cache-Control": "no-store"}
        return Response(200, profile, headers, "application/json; charset=utf-8")
