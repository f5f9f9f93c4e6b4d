"""Tests for loopauth.emulator against the real server on loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterator

import pytest
import requests

from loopauth.emulator import (
    EmulatorClient,
    EmulatorServer,
    OAuthEmulator,
    Request,
    Response,
    browse,
    run,
)

REDIRECT = "http://127.0.0.1:53682/callback"  # nothing listens: browse(stop_at=...) stops here


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # loopback must never go through a proxy from the environment
        yield session


@pytest.fixture
def emu() -> Iterator[OAuthEmulator]:
    with OAuthEmulator() as server:
        yield server


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_url(emu: OAuthEmulator, **params: str) -> str:
    query = {
        "response_type": "code",
        "client_id": "loopauth-demo",
        "redirect_uri": REDIRECT,
        "state": "st-1",
        "scope": "openid profile email",
        **params,
    }
    return f"{emu.url}/authorize?{urllib.parse.urlencode(query)}"


def query_of(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def get_code(
    emu: OAuthEmulator, client_id: str = "loopauth-demo", **params: str
) -> tuple[str, str]:
    verifier, challenge = pkce()
    url = authorize_url(
        emu, client_id=client_id, code_challenge=challenge, code_challenge_method="S256", **params
    )
    result = browse(url, stop_at=REDIRECT)
    return query_of(result.url)["code"], verifier


def exchange(
    http: requests.Session, emu: OAuthEmulator, code: str, verifier: str, **extra: object
) -> requests.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        "client_id": "loopauth-demo",
    }
    return http.post(f"{emu.url}/token", data=data, timeout=5, **extra)  # type: ignore[arg-type]


def refresh(http: requests.Session, emu: OAuthEmulator, token: str) -> requests.Response:
    data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": "loopauth-demo"}
    return http.post(f"{emu.url}/token", data=data, timeout=5)


def userinfo(http: requests.Session, emu: OAuthEmulator, token: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return http.get(f"{emu.url}/userinfo", headers=headers, timeout=5)


class CallbackCatcher(EmulatorServer):
    """A stand-in for the CLI's loopback listener."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[dict[str, str]] = []

    def route(self, req: Request) -> Response:
        if req.path != "/callback":
            return super().route(req)
        self.queries.append(req.query)
        return Response.html(200, "<p>You can close this window.</p>")


def test_discovery_documents(http: requests.Session, emu: OAuthEmulator) -> None:
    for name in ("openid-configuration", "oauth-authorization-server"):
        doc = http.get(f"{emu.url}/.well-known/{name}", timeout=5).json()
        assert doc["issuer"] == emu.url == emu.issuer
        assert doc["authorization_endpoint"] == f"{emu.url}/authorize"
        assert doc["token_endpoint"] == f"{emu.url}/token"
        assert doc["userinfo_endpoint"] == f"{emu.url}/userinfo"
        assert doc["code_challenge_methods_supported"] == ["S256"]
        assert doc["grant_types_supported"] == [
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code",
        ]
        assert set(doc["token_endpoint_auth_methods_supported"]) == {
            "client_secret_basic",
            "client_secret_post",
            "none",
        }
        assert doc["authorization_response_iss_parameter_supported"] is True


def test_consent_page_carries_parameters(http: requests.Session, emu: OAuthEmulator) -> None:
    _, challenge = pkce()
    url = authorize_url(
        emu, code_challenge=challenge, code_challenge_method="S256", state='<"x">', nonce="n1"
    )
    r = http.get(url, timeout=5, allow_redirects=False)
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store"
    assert 'name="state" value="&lt;&quot;x&quot;&gt;"' in r.text
    assert '<form method="post" action="/authorize">' in r.text
    assert '<option value="user-2">' in r.text
    assert '<button type="submit" name="decision" value="allow">Allow</button>' in r.text
    assert ("POST", "/token") not in emu.log


def test_full_flow_to_callback_listener(http: requests.Session, emu: OAuthEmulator) -> None:
    verifier, challenge = pkce()
    with CallbackCatcher() as catcher:
        redirect_uri = f"{catcher.url}/callback"  # port differs from registration: RFC 8252
        url = authorize_url(
            emu,
            redirect_uri=redirect_uri,
            code_challenge=challenge,
            code_challenge_method="S256",
            nonce="nonce-1",
        )
        result = browse(url, account="user-2")
    assert result.status == 200
    assert "close this window" in result.body
    assert result.hops[-1].startswith(redirect_uri)
    (params,) = catcher.queries
    assert params["state"] == "st-1"
    assert params["iss"] == emu.url
    data = {
        "grant_type": "authorization_code",
        "code": params["code"],
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
        "client_id": "loopauth-demo",
    }
    r = http.post(f"{emu.url}/token", data=data, timeout=5)
    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["Pragma"] == "no-cache"
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "openid profile email"
    assert body["refresh_token"]
    head, payload, sig = body["id_token"].split(".")
    expected = hmac.new(emu.signing_key, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(sig + "==") == expected
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    assert claims["iss"] == emu.url
    assert claims["aud"] == "loopauth-demo"
    assert claims["sub"] == "user-2"
    assert claims["nonce"] == "nonce-1"
    assert claims["exp"] > claims["iat"]
    info = userinfo(http, emu, body["access_token"]).json()
    assert info == {"sub": "user-2", "name": "Grace Hopper", "email": "grace@example.test"}
    assert emu.token_calls == [{"grant_type": "authorization_code", "client_id": "loopauth-demo"}]


def test_deny_gives_access_denied(emu: OAuthEmulator) -> None:
    _, challenge = pkce()
    url = authorize_url(emu, code_challenge=challenge, code_challenge_method="S256")
    result = browse(url, decision="deny", stop_at=REDIRECT)
    assert result.status == 302
    params = query_of(result.url)
    assert params["error"] == "access_denied"
    assert params["state"] == "st-1"
    assert params["iss"] == emu.url
    assert "code" not in params
    assert ("POST", "/token") not in emu.log


def test_send_iss_false_omits_iss() -> None:
    with OAuthEmulator(send_iss=False) as emu:
        _, challenge = pkce()
        url = authorize_url(emu, code_challenge=challenge, code_challenge_method="S256")
        params = query_of(browse(url, stop_at=REDIRECT).url)
    assert "code" in params
    assert "iss" not in params


def test_bad_pkce_verifier_is_invalid_grant(http: requests.Session, emu: OAuthEmulator) -> None:
    code, _ = get_code(emu)
    r = exchange(http, emu, code, pkce()[0])
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"


def test_code_reuse_is_rejected_and_revokes_tokens(
    http: requests.Session, emu: OAuthEmulator
) -> None:
    code, verifier = get_code(emu)
    first = exchange(http, emu, code, verifier)
    assert first.status_code == 200
    tokens = first.json()
    again = exchange(http, emu, code, verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert userinfo(http, emu, tokens["access_token"]).status_code == 401
    assert refresh(http, emu, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_refresh_without_rotation_keeps_token(http: requests.Session, emu: OAuthEmulator) -> None:
    code, verifier = get_code(emu)
    tokens = exchange(http, emu, code, verifier).json()
    for _ in range(2):
        r = refresh(http, emu, tokens["refresh_token"])
        assert r.status_code == 200, r.text
        assert "refresh_token" not in r.json()
        assert userinfo(http, emu, r.json()["access_token"]).status_code == 200
    emu.revoke_refresh_tokens()
    assert refresh(http, emu, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_refresh_with_rotation(http: requests.Session) -> None:
    with OAuthEmulator(rotate_refresh_tokens=True) as emu:
        code, verifier = get_code(emu)
        old = exchange(http, emu, code, verifier).json()["refresh_token"]
        r = refresh(http, emu, old)
        assert r.status_code == 200
        new = r.json()["refresh_token"]
        assert new != old
        stale = refresh(http, emu, old)
        assert stale.status_code == 400
        assert stale.json()["error"] == "invalid_grant"
        assert refresh(http, emu, new).status_code == 200


def test_refresh_token_expiry_and_no_refresh_tokens(http: requests.Session) -> None:
    with OAuthEmulator(refresh_token_lifetime=0) as emu:
        code, verifier = get_code(emu)
        token = exchange(http, emu, code, verifier).json()["refresh_token"]
        assert refresh(http, emu, token).json()["error"] == "invalid_grant"
    with OAuthEmulator(issue_refresh_tokens=False) as emu:
        code, verifier = get_code(emu)
        assert "refresh_token" not in exchange(http, emu, code, verifier).json()


def test_userinfo_valid_then_expired(http: requests.Session, emu: OAuthEmulator) -> None:
    code, verifier = get_code(emu)
    access = exchange(http, emu, code, verifier).json()["access_token"]
    ok = userinfo(http, emu, access)
    assert ok.status_code == 200
    assert ok.json()["sub"] == "user-1"
    emu.expire_access_tokens()
    expired = userinfo(http, emu, access)
    assert expired.status_code == 401
    assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
    assert userinfo(http, emu, "bogus").status_code == 401
    assert http.get(f"{emu.url}/userinfo", timeout=5).status_code == 401


@pytest.mark.parametrize(
    ("client_id", "redirect_uri"),
    [
        ("nobody", REDIRECT),
        ("loopauth-demo", "http://127.0.0.1:53682/elsewhere"),
        ("loopauth-demo", "http://evil.example/callback"),
        ("loopauth-demo", "https://127.0.0.1/callback"),
    ],
)
def test_bad_client_or_redirect_shows_error_page(
    http: requests.Session, emu: OAuthEmulator, client_id: str, redirect_uri: str
) -> None:
    _, challenge = pkce()
    url = authorize_url(
        emu,
        client_id=client_id,
        redirect_uri=redirect_uri,
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    r = http.get(url, timeout=5, allow_redirects=False)
    assert r.status_code == 400
    assert r.headers["Content-Type"].startswith("text/html")
    assert "Location" not in r.headers


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({}, "invalid_request"),  # public client without PKCE
        ({"code_challenge": "x" * 43, "code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "x" * 43}, "invalid_request"),  # absent method means plain
        ({"response_type": "token", "code_challenge": "x" * 43}, "unsupported_response_type"),
        ({"code_challenge": "x" * 43, "code_challenge_method": "S256", "scope": "admin"}, None),
    ],
)
def test_invalid_authorization_requests_redirect_with_error(
    http: requests.Session, emu: OAuthEmulator, params: dict[str, str], error: str | None
) -> None:
    r = http.get(authorize_url(emu, **params), timeout=5, allow_redirects=False)
    assert r.status_code == 302
    got = query_of(r.headers["Location"])
    assert got["error"] == (error or "invalid_scope")
    assert got["state"] == "st-1"
    assert got["iss"] == emu.url


def test_get_token_is_405(http: requests.Session, emu: OAuthEmulator) -> None:
    r = http.get(f"{emu.url}/token", timeout=5)
    assert r.status_code == 405
    assert r.json()["error"] == "invalid_request"


def test_unsupported_grant_type(http: requests.Session, emu: OAuthEmulator) -> None:
    data = {"grant_type": "password", "client_id": "loopauth-demo"}
    r = http.post(f"{emu.url}/token", data=data, timeout=5)
    assert r.status_code == 400
    assert r.json()["error"] == "unsupported_grant_type"


def test_client_secret_basic(http: requests.Session, emu: OAuthEmulator) -> None:
    code, verifier = get_code(emu, client_id="demo-confidential")
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    wrong = http.post(f"{emu.url}/token", data=data, auth=("demo-confidential", "nope"), timeout=5)
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert wrong.headers["WWW-Authenticate"].startswith("Basic")
    as_post = {**data, "client_id": "demo-confidential", "client_secret": "demo-secret"}
    assert http.post(f"{emu.url}/token", data=as_post, timeout=5).status_code == 401
    code, verifier = get_code(emu, client_id="demo-confidential")
    data.update(code=code, code_verifier=verifier)
    ok = http.post(
        f"{emu.url}/token", data=data, auth=("demo-confidential", "demo-secret"), timeout=5
    )
    assert ok.status_code == 200, ok.text
    assert "demo-secret" not in repr(emu.token_calls) + repr(emu.clients)


def test_client_secret_post(http: requests.Session) -> None:
    client = EmulatorClient("poster", "s3cret", ["http://127.0.0.1/callback"], "client_secret_post")
    with OAuthEmulator(clients={"poster": client}) as emu:
        code, verifier = get_code(emu, client_id="poster")
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            "client_id": "poster",
        }
        bad = http.post(f"{emu.url}/token", data={**data, "client_secret": "x"}, timeout=5)
        assert bad.status_code == 401
        assert bad.json()["error"] == "invalid_client"
        code, verifier = get_code(emu, client_id="poster")
        data.update(code=code, code_verifier=verifier, client_secret="s3cret")
        ok = http.post(f"{emu.url}/token", data=data, timeout=5)
        assert ok.status_code == 200, ok.text


def test_confidential_client_without_pkce(http: requests.Session, emu: OAuthEmulator) -> None:
    url = authorize_url(emu, client_id="demo-confidential")
    code = query_of(browse(url, stop_at=REDIRECT).url)["code"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    auth = ("demo-confidential", "demo-secret")
    r = http.post(f"{emu.url}/token", data=data, auth=auth, timeout=5)
    assert r.status_code == 200, r.text


def test_expired_code_is_invalid_grant(http: requests.Session) -> None:
    with OAuthEmulator(code_lifetime=0) as emu:
        code, verifier = get_code(emu)
        r = exchange(http, emu, code, verifier)
        assert r.json()["error"] == "invalid_grant"


class Broken(EmulatorServer):
    """Routes that misbehave, to check the base server survives them."""

    def route(self, req: Request) -> Response:
        if req.path == "/boom":
            raise RuntimeError("bug")
        if req.path == "/consent":
            return Response.html(
                200,
                '<form action="/done" method="post"><input type="hidden" name="k" value="v">'
                '<input type="submit" value="Cancel"><button name="go">Authorize app</button>'
                "</form>",
            )
        if req.path == "/done":
            return Response(200, {"form": req.form})
        return super().route(req)


def test_base_server_errors_and_generic_browse(http: requests.Session) -> None:
    with Broken() as server:
        assert http.get(f"{server.url}/boom", timeout=5).status_code == 500
        assert http.get(f"{server.url}/missing", timeout=5).status_code == 404
        big = http.post(f"{server.url}/done", data=b"x" * (1024 * 1024 + 1), timeout=5)
        assert big.status_code == 413
        result = browse(f"{server.url}/consent")
        assert json.loads(result.body) == {"form": {"k": "v", "go": ""}}
        cancelled = browse(f"{server.url}/consent", decision="deny")
        assert json.loads(cancelled.body) == {"form": {"k": "v"}}
        assert ("GET", "/boom") in server.log
    server.stop()  # idempotent


def test_run_prints_url_and_returns_when_stopped() -> None:
    emu = OAuthEmulator()
    out = io.StringIO()
    thread = threading.Thread(target=run, args=(emu,), kwargs={"out": out}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while "listening" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert out.getvalue() == f"emulator listening on {emu.url}\n"
    emu.stop()
    thread.join(5)
    assert not thread.is_alive()
