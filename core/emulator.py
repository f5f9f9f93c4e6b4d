"""A local OAuth2 / OpenID Connect authorization server on loopback, for offline tests and demos."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import html
import json
import re
import secrets
import socket
import socketserver
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TextIO, cast

__all__ = [
    "BrowseResult",
    "EmulatorClient",
    "EmulatorServer",
    "EmulatorUser",
    "OAuthEmulator",
    "Request",
    "Response",
    "browse",
    "page",
    "run",
]

MAX_BODY = 1024 * 1024
MAX_HOPS = 10
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
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
_VERIFIER_RE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_S256_CHALLENGE_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_REALM = 'realm="loopauth-emulator"'


@dataclass
class Request:
    """One parsed HTTP request, as handed to `EmulatorServer.route`."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased
    body: bytes = b""
    query_multi: dict[str, list[str]] = field(default_factory=dict)
    form_multi: dict[str, list[str]] = field(default_factory=dict)

    @property
    def form(self) -> dict[str, str]:
        """First value of each form-encoded body field."""
        return {k: v[0] for k, v in self.form_multi.items()}


@dataclass
class Response:
    """An HTTP response; a dict body is sent as JSON."""

    status: int
    body: bytes | str | dict[str, Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = ""

    def encode(self) -> tuple[bytes, str]:
        """Return the body bytes and the Content-Type to send."""
        if isinstance(self.body, dict):
            return json.dumps(self.body).encode(), self.content_type or "application/json"
        if isinstance(self.body, str):
            return self.body.encode(), self.content_type or "text/plain; charset=utf-8"
        return self.body, self.content_type or "application/octet-stream"

    @classmethod
    def html(cls, status: int, page: str, headers: dict[str, str] | None = None) -> Response:
        """An HTML page that is never cached or framed (it carries per-request parameters)."""
        csp = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
        base = {"Cache-Control": "no-store", "Content-Security-Policy": csp}
        return cls(status, page, {**base, **(headers or {})}, "text/html; charset=utf-8")

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Response:
        """A bare redirect to `location`."""
        return cls(status, "", {"Location": location, "Cache-Control": "no-store"})


def page(title: str, body_html: str) -> str:
    """Wrap already-escaped HTML in a small self-contained page."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;"
        "max-width:32rem;margin:3rem auto;padding:0 1rem}button{margin-right:.5rem}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{body_html}</body></html>"
    )


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False
    block_on_close = False
    emulator: EmulatorServer

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse-DNS lookup, which can stall offline machines."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # a stalled client must not pin a thread forever
    server_version = "loopauth-emulator"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests and the demo own the terminal."""

    def do_GET(self) -> None:
        """Dispatch a GET."""
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        emulator = cast(_HTTPServer, self.server).emulator
        split = urllib.parse.urlsplit(self.path)
        emulator._record(self.command, split.path)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY or self.headers.get("Transfer-Encoding"):
            # The body stays unread (chunked is unsupported), so the connection cannot be reused.
            status, error = (
                (413, "payload_too_large") if length > MAX_BODY else (400, "bad_request")
            )
            self._send(Response(status, {"error": error}, {"Connection": "close"}))
            return
        body = self.rfile.read(length) if length else b""
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        form: dict[str, list[str]] = {}
        if ctype == "application/x-www-form-urlencoded":
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        req = Request(
            method=self.command,
            path=split.path,
            query={k: v[0] for k, v in query.items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            query_multi=query,
            form_multi=form,
        )
        try:
            resp = emulator.route(req)
        except Exception:  # a bug in one route must not take the server down
            resp = Response(500, {"error": "server_error"})
        self._send(resp)

    def _send(self, resp: Response) -> None:
        body, ctype = resp.encode()
        try:
            self.send_response(resp.status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for name, value in resp.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class EmulatorServer:
    """A threaded HTTP server on loopback whose subclasses answer requests in `route`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self._requested_port = host, port
        self.log: list[tuple[str, str]] = []
        self._log_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Bind the socket and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        cls = _HTTPServer6 if ":" in self.host else _HTTPServer
        httpd = cls((self.host, self._requested_port), _Handler)
        httpd.emulator = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def wait(self) -> None:
        """Block until the server is stopped (from another thread)."""
        while (thread := self._thread) is not None and thread.is_alive():
            thread.join(0.5)  # short joins keep KeyboardInterrupt responsive

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        if self._httpd is None:
            raise RuntimeError("emulator is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def route(self, req: Request) -> Response:
        """Answer one request; subclasses override and fall back to this 404."""
        return Response(404, {"error": "not_found", "error_description": f"no route {req.path}"})

    def _record(self, method: str, path: str) -> None:
        with self._log_lock:
            self.log.append((method, path))


@dataclass
class EmulatorClient:
    """A registered OAuth client."""

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    redirect_uris: list[str] = field(default_factory=list)
    auth_method: str = "none"


@dataclass(frozen=True)
class EmulatorUser:
    """A user who can be picked on the consent page."""

    sub: str
    name: str
    email: str


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    code_challenge: str | None
    scope: str
    user: EmulatorUser
    nonce: str | None
    expires_at: float
    used: bool = False


@dataclass
class _Grant:
    client_id: str
    user: EmulatorUser
    scope: str
    expires_at: float | None
    origin: str  # the authorization code this descends from, so code reuse can revoke it

    def expired(self) -> bool:
        """Whether the grant is past its lifetime."""
        return self.expires_at is not None and time.time() >= self.expires_at


_DEFAULT_USERS = (
    EmulatorUser("user-1", "Ada Lovelace", "ada@example.test"),
    EmulatorUser("user-2", "Grace Hopper", "grace@example.test"),
)
_LOOPBACK_URIS = ["http://127.0.0.1/callback", "http://localhost/callback", "http://[::1]/callback"]


def _default_clients() -> dict[str, EmulatorClient]:
    return {
        "loopauth-demo": EmulatorClient("loopauth-demo", None, list(_LOOPBACK_URIS), "none"),
        "demo-confidential": EmulatorClient(
            "demo-confidential", "demo-secret", list(_LOOPBACK_URIS), "client_secret_basic"
        ),
    }


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _same(given: str | None, expected: str | None) -> bool:
    """Constant-time equality that treats a missing side as a mismatch."""
    if given is None or expected is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def _redirect_uri_ok(client: EmulatorClient, uri: str) -> bool:
    """Exact match, except that loopback redirect URIs may use any port (RFC 8252 §7.3)."""
    if uri in client.redirect_uris:
        return True
    got = urllib.parse.urlsplit(uri)
    try:
        got.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    if got.hostname not in LOOPBACK_HOSTS or got.username or got.password or got.fragment:
        return False
    key = (got.scheme, got.hostname, got.path, got.query)
    regs = map(urllib.parse.urlsplit, client.redirect_uris)
    return any((r.scheme, r.hostname, r.path, r.query) == key for r in regs)


def _token_error(error: str, description: str, status: int = 400) -> Response:
    return Response(status, {"error": error, "error_description": description}, dict(_NO_STORE))


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
    ) -> None:
        super().__init__(host, port)
        self.clients = clients if clients is not None else _default_clients()
        for client in self.clients.values():
            if client.auth_method not in AUTH_METHODS:
                raise ValueError(f"unknown auth_method {client.auth_method!r}")
        self.users = list(users if users is not None else _DEFAULT_USERS)
        self.access_token_lifetime = access_token_lifetime
        self.refresh_token_lifetime = refresh_token_lifetime
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.send_iss = send_iss
        self.issue_refresh_tokens = issue_refresh_tokens
        self.code_lifetime = code_lifetime
        self.signing_key = secrets.token_bytes(32)  # HS256 key for id_tokens
        self.token_calls: list[dict[str, str]] = []  # grant_type and client_id only, no secrets
        self._lock = threading.Lock()
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, _Grant] = {}
        self._refresh: dict[str, _Grant] = {}

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

    def revoke_refresh_tokens(self) -> None:
        """Forget every refresh token issued so far."""
        with self._lock:
            self._refresh.clear()

    def route(self, req: Request) -> Response:
        """Dispatch to the discovery, authorize, token and userinfo endpoints."""
        routes: dict[str, tuple[str, Callable[[Request], Response]]] = {
            "/.well-known/openid-configuration": ("GET", self._discovery),
            "/.well-known/oauth-authorization-server": ("GET", self._discovery),
            "/authorize": ("GET, POST", self._authorize),
            "/token": ("POST", self._token),
            "/userinfo": ("GET, POST", self._userinfo),
        }
        if req.path not in routes:
            return super().route(req)
        allow, handler = routes[req.path]
        if req.method not in allow.split(", "):
            body = {"error": "invalid_request", "error_description": f"use {allow}"}
            return Response(405, body, {"Allow": allow, **_NO_STORE})
        return handler(req)

    def _discovery(self, req: Request) -> Response:
        base = self.issuer
        return Response(
            200,
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "userinfo_endpoint": f"{base}/userinfo",
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
                "authorization_response_iss_parameter_supported": self.send_iss,
                "scopes_supported": list(SCOPES),
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["HS256"],
            },
        )

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
        p = {k: v[0] for k, v in multi.items() if k in _AUTH_PARAMS}
        ids = multi.get("client_id", [])
        client = self.clients.get(ids[0]) if len(ids) == 1 else None
        if client is None:
            return self._error_page("Unknown or missing client_id.")
        uris = multi.get("redirect_uri", [])
        if len(uris) != 1 or not _redirect_uri_ok(client, uris[0]):
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
        unknown = sorted(set(p.get("scope", DEFAULT_SCOPE).split()) - set(SCOPES))
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
            f'<input type="hidden" name="{k}" value="{esc(p[k])}">' for k in _AUTH_PARAMS if k in p
        )
        options = "".join(
            f'<option value="{esc(u.sub)}">{esc(u.name)} &lt;{esc(u.email)}&gt;</option>'
            for u in self.users
        )
        body = (
            f"<p><strong>{esc(client.client_id)}</strong> asks for access with scope "
            f"<code>{esc(p.get('scope', DEFAULT_SCOPE))}</code>.</p>"
            f"<p>You will be sent back to <code>{esc(p['redirect_uri'])}</code>.</p>"
            f'<form method="post" action="/authorize">{hidden}'
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
            self._codes[code] = _Code(
                client.client_id,
                p["redirect_uri"],
                p.get("code_challenge"),
                p.get("scope", DEFAULT_SCOPE),
                user,
                p.get("nonce"),
                time.time() + self.code_lifetime,
            )
        return self._redirect(p["redirect_uri"], {"code": code, "state": state})

    # -- token endpoint --------------------------------------------------------------------

    def _token(self, req: Request) -> Response:
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return _token_error("invalid_request", "body must be application/x-www-form-urlencoded")
        form = req.form
        creds = self._client_credentials(req)
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
        if not grant_type:
            return _token_error("invalid_request", "grant_type is required")
        return _token_error("unsupported_grant_type", f"grant_type {grant_type} is not supported")

    @staticmethod
    def _client_credentials(req: Request) -> tuple[str, str] | None:
        """Decode HTTP Basic client credentials; ("", "") if the header is malformed."""
        header = req.headers.get("authorization", "")
        if header[:6].lower() != "basic ":
            return None
        try:
            raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except ValueError:  # covers binascii.Error and UnicodeDecodeError
            return "", ""
        cid, sep, secret = raw.partition(":")
        if not sep:
            return "", ""
        # RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
        return urllib.parse.unquote_plus(cid), urllib.parse.unquote_plus(secret)

    def _authenticate(
        self, req: Request, basic: tuple[str, str] | None
    ) -> EmulatorClient | Response:
        form = req.form
        if basic is not None and "client_secret" in form:
            # RFC 6749 §2.3: a client MUST NOT use more than one authentication method.
            return _token_error("invalid_request", "more than one client authentication method")
        if basic is not None and form.get("client_id") not in (None, basic[0]):
            return self._invalid_client(True)
        client = self.clients.get(basic[0] if basic is not None else form.get("client_id", ""))
        if client is None:
            return self._invalid_client(basic is not None)
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
        resp = _token_error("invalid_client", "client authentication failed", 401)
        if basic:
            resp.headers["WWW-Authenticate"] = f"Basic {_REALM}"
        return resp

    def _grant_code(self, client: EmulatorClient, form: dict[str, str]) -> Response:
        code = form.get("code")
        if not code:
            return _token_error("invalid_request", "code is required")
        verifier = form.get("code_verifier")
        with self._lock:
            rec = self._codes.get(code)
            if rec is None:
                return _token_error("invalid_grant", "unknown authorization code")
            if rec.used:
                # RFC 6749 §4.1.2: a replayed code suggests theft; revoke what it produced.
                for table in (self._access, self._refresh):
                    for token in [t for t, g in table.items() if g.origin == code]:
                        del table[token]
                return _token_error("invalid_grant", "authorization code already used")
            rec.used = True  # single use: the first presentation consumes it, good or bad
            if rec.client_id != client.client_id:
                return _token_error("invalid_grant", "code was issued to another client")
            if time.time() >= rec.expires_at:
                return _token_error("invalid_grant", "authorization code expired")
            if form.get("redirect_uri") != rec.redirect_uri:
                return _token_error("invalid_grant", "redirect_uri does not match")
            if rec.code_challenge is None:
                if verifier is not None:
                    return _token_error("invalid_grant", "code_verifier without code_challenge")
            elif verifier is None or not _VERIFIER_RE.fullmatch(verifier):
                return _token_error("invalid_grant", "missing or malformed code_verifier")
            elif not hmac.compare_digest(
                _b64url(hashlib.sha256(verifier.encode()).digest()), rec.code_challenge
            ):
                return _token_error("invalid_grant", "PKCE verification failed")
            body = self._issue(rec.client_id, rec.user, rec.scope, code, self.issue_refresh_tokens)
        if "openid" in rec.scope.split():
            body["id_token"] = self._id_token(client.client_id, rec.user, rec.nonce)
        return Response(200, body, dict(_NO_STORE))

    def _grant_refresh(self, client: EmulatorClient, form: dict[str, str]) -> Response:
        token = form.get("refresh_token")
        if not token:
            return _token_error("invalid_request", "refresh_token is required")
        with self._lock:
            grant = self._refresh.get(token)
            if grant is None or grant.client_id != client.client_id or grant.expired():
                return _token_error("invalid_grant", "refresh token is unknown, expired or used")
            if self.rotate_refresh_tokens:
                del self._refresh[token]
            body = self._issue(
                client.client_id, grant.user, grant.scope, grant.origin, self.rotate_refresh_tokens
            )
        return Response(200, body, dict(_NO_STORE))

    def _issue(
        self, client_id: str, user: EmulatorUser, scope: str, origin: str, refresh: bool
    ) -> dict[str, Any]:
        """Mint an access token (and maybe a refresh token); the caller holds the lock."""
        now = time.time()
        access = secrets.token_urlsafe(32)
        self._access[access] = _Grant(
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
            self._refresh[token] = _Grant(client_id, user, scope, expires, origin)
            body["refresh_token"] = token
        return body

    def _id_token(self, client_id: str, user: EmulatorUser, nonce: str | None) -> str:
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
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        signing_input = f"{header}.{_b64url(json.dumps(claims).encode())}"
        sig = hmac.new(self.signing_key, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64url(sig)}"

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
            200, {"sub": user.sub, "name": user.name, "email": user.email}, dict(_NO_STORE)
        )


# -- scripted browser ----------------------------------------------------------------------


@dataclass
class BrowseResult:
    """The final response `browse` saw, plus every redirect target it followed."""

    status: int
    url: str
    body: str
    headers: dict[str, str]
    hops: list[str]


@dataclass
class _Form:
    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    selects: list[tuple[str, list[tuple[str, str, bool]]]] = field(default_factory=list)
    buttons: list[tuple[str, str, str]] = field(default_factory=list)  # name, value, label


class _FormParser(HTMLParser):
    """Collect the first <form> of a page: fields, selects and submit buttons."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.form: _Form | None = None
        self._in_form = False
        self._select: tuple[str, list[tuple[str, str, bool]]] | None = None
        self._open: tuple[str, dict[str, str]] | None = None  # element whose text is collected
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Track form elements inside the first form."""
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.form is None:
            self.form = _Form(a.get("action", ""), a.get("method", "get").lower())
            self._in_form = True
        if not self._in_form or self.form is None or "disabled" in a:
            return
        if tag == "option":
            self._close()  # </option> is optional
        if tag == "input":
            kind, name, value = a.get("type", "text").lower(), a.get("name", ""), a.get("value", "")
            if kind in ("submit", "image"):
                self.form.buttons.append((name, value, value))
            elif kind in ("checkbox", "radio"):
                if name and "checked" in a:
                    self.form.fields.append((name, value or "on"))
            elif name and kind not in ("button", "reset", "file"):
                self.form.fields.append((name, value))
        elif tag in ("option", "button", "textarea"):
            self._open, self._text = (tag, a), []
        elif tag == "select":
            self._select = (a.get("name", ""), [])

    def handle_data(self, data: str) -> None:
        """Collect text of the open option, button or textarea."""
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        """Finish open elements."""
        if self._open is not None and tag in (self._open[0], "select"):
            self._close()
        if tag == "select" and self._select is not None and self.form is not None:
            self.form.selects.append(self._select)
            self._select = None
        elif tag == "form":
            self._in_form = False

    def _close(self) -> None:
        if self._open is None or self.form is None:
            return
        (tag, a), raw = self._open, "".join(self._text)
        self._open, text = None, " ".join(raw.split())
        if tag == "option" and self._select is not None:
            self._select[1].append((a.get("value", text), text, "selected" in a))
        elif tag == "button" and a.get("type", "submit").lower() == "submit":
            self.form.buttons.append((a.get("name", ""), a.get("value", ""), text))
        elif tag == "textarea" and a.get("name"):
            self.form.fields.append((a["name"], raw))


_DECISION_WORDS = {
    "allow": {"allow", "authorize", "authorise", "approve", "accept", "grant", "consent", "yes"},
    "deny": {"deny", "cancel", "reject", "decline", "refuse", "no"},
}


def _pick_button(form: _Form, decision: str) -> tuple[str, str, str]:
    wanted = {decision.lower()} | _DECISION_WORDS.get(decision.lower(), set())
    for button in form.buttons:
        name, value, label = (s.strip().lower() for s in button)
        texts = {name, value, label} - {""}
        if (texts | {t.split()[0] for t in texts}) & wanted:
            return button
    raise ValueError(f"no submit button matches decision {decision!r}")


def _submission(
    url: str, form: _Form, decision: str, account: str | None
) -> tuple[str, bytes | None]:
    """Fill in the form the way a user would; return the target URL and POST body."""
    fields = list(form.fields)
    for name, options in form.selects:
        if not name or not options:
            continue
        chosen = next((o for o in options if account is not None and account in (o[0], o[1])), None)
        chosen = chosen or next((o for o in options if o[2]), options[0])
        fields.append((name, chosen[0]))
    name, value, _ = _pick_button(form, decision)
    if name:
        fields.append((name, value))
    target = urllib.parse.urljoin(url, form.action or url)
    encoded = urllib.parse.urlencode(fields)
    if form.method == "post":
        return target, encoded.encode()
    parts = urllib.parse.urlsplit(target)
    return urllib.parse.urlunsplit(parts._replace(query=encoded)), None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        """Refuse, so every 3xx surfaces as an HTTPError we follow (and record) ourselves."""
        return None


def _fetch(
    opener: urllib.request.OpenerDirector, url: str, data: bytes | None, timeout: float
) -> tuple[int, Message, bytes]:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"refusing to browse non-HTTP URL {url!r}")
    headers = {"User-Agent": "loopauth-browse", "Accept": "text/html,*/*"}
    if data is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 - scheme checked
    try:
        resp = opener.open(req, timeout=timeout)
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()
    with resp:
        return int(resp.status), resp.headers, resp.read()


def _follow_launch_page(url: str) -> str:
    """Read a local page (loopauth's launch page) and return where its meta refresh leads."""
    from urllib.request import url2pathname

    with open(url2pathname(urllib.parse.urlsplit(url).path), encoding="utf-8") as f:
        text = f.read()
    found = re.search(r'http-equiv="refresh" content="\d+;url=([^"]+)"', text)
    if found is None:
        raise ValueError(f"{url} does not forward anywhere")
    return html.unescape(found.group(1))


def browse(
    url: str,
    *,
    decision: str = "allow",
    account: str | None = None,
    timeout: float = 10.0,
    stop_at: str | None = None,
) -> BrowseResult:
    """Act as a user: open `url`, answer its form with `decision`, follow redirects.

    A redirect whose target starts with `stop_at` is recorded but not fetched; the result then
    is that 3xx response with `url` set to the target (handy when nothing listens there).
    """
    # An explicit empty ProxyHandler: loopback traffic must not go through *_proxy settings.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    if urllib.parse.urlsplit(url).scheme == "file":
        url = _follow_launch_page(url)
    hops: list[str] = []
    data: bytes | None = None
    submitted = False
    while True:
        status, msg, raw = _fetch(opener, url, data, timeout)
        data = None
        try:
            body = raw.decode(msg.get_content_charset() or "utf-8", "replace")
        except LookupError:
            body = raw.decode("utf-8", "replace")
        headers = dict(msg.items())
        location = msg.get("Location")
        if 300 <= status < 400 and location:
            if len(hops) >= MAX_HOPS:
                raise RuntimeError(f"more than {MAX_HOPS} redirects, last {url}")
            url = urllib.parse.urljoin(url, location)
            hops.append(url)
            if stop_at is not None and url.startswith(stop_at):
                return BrowseResult(status, url, body, headers, hops)
            continue
        form = None
        if not submitted and "html" in msg.get_content_type():
            parser = _FormParser()
            parser.feed(body)
            parser.close()
            form = parser.form
        if form is None:
            return BrowseResult(status, url, body, headers, hops)
        submitted = True
        url, data = _submission(url, form, decision, account)


def run(emulator: EmulatorServer, *, out: TextIO | None = None) -> None:
    """Serve `emulator` until Ctrl-C (or until stopped elsewhere); `out` defaults to stderr."""
    stream = out if out is not None else sys.stderr  # resolved late so captured stderr works
    with emulator:
        print(f"emulator listening on {emulator.url}", file=stream, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            emulator.wait()
