"""RFC 7009 revocation: the emulator's /revoke endpoint and loopauth.revocation.revoke()."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import loopauth
from loopauth import oauth
from loopauth.emulator import EmulatorServer, OAuthEmulator, Request, Response, browse
from loopauth.errors import NoTokenError, ProviderError
from loopauth.provider import Provider
from loopauth.revocation import revocation_endpoint, revoke
from loopauth.testing import write_config
from loopauth.token import Token

SECRET = "demo-secret"  # the emulator's confidential demo client


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # loopback must never go through a proxy from the environment
        yield session


def provider_for(tmp_path: Path, emu: EmulatorServer, extra: str = "") -> Provider:
    """The emulator as provider `emu` (public client unless `extra` says otherwise)."""
    cfg = write_config(
        tmp_path / "p.yaml",
        f"""
        providers:
          emu:
            plugin: oauth2
            issuer: {emu.url}
            client_id: loopauth-demo
            scope: openid email
            http_timeout: 5
            {extra}
    """,
    )
    return loopauth.load_config(str(cfg)).select("emu")


def log_in(provider: Provider) -> Token:
    """Log in in-process, the emulator's consent page answered by `browse`."""
    flow = loopauth.Flow(provider)
    url = flow.start()
    threading.Thread(target=browse, args=(url,), daemon=True).start()
    flow.wait(10)
    return flow.result()


def with_settings(provider: Provider, **changes: object) -> Provider:
    """The same provider with some settings changed (a providers.yaml edited since login)."""
    return Provider(provider.name, provider.type, {**provider.settings, **changes})


def userinfo_status(http: requests.Session, emu: OAuthEmulator, access_token: str) -> int:
    headers = {"Authorization": f"Bearer {access_token}"}
    return http.get(f"{emu.url}/userinfo", headers=headers).status_code


def revoke_posts(emu: EmulatorServer) -> list[tuple[str, str]]:
    return [entry for entry in emu.log if entry[1] == "/revoke"]


# -- the emulator's endpoint -----------------------------------------------------------------


def test_discovery_advertises_the_revocation_endpoint(
    http: requests.Session, emulator: OAuthEmulator, tmp_path: Path
) -> None:
    for name in ("openid-configuration", "oauth-authorization-server"):
        doc = http.get(f"{emulator.url}/.well-known/{name}").json()
        assert doc["revocation_endpoint"] == f"{emulator.url}/revoke"
        assert "none" in doc["revocation_endpoint_auth_methods_supported"]
    assert revocation_endpoint(provider_for(tmp_path, emulator)) == f"{emulator.url}/revoke"


def test_without_revocation_nothing_is_advertised_and_revoke_is_404(
    http: requests.Session, tmp_path: Path
) -> None:
    with OAuthEmulator(revocation=False) as emu:
        doc = http.get(f"{emu.url}/.well-known/openid-configuration").json()
        assert "revocation_endpoint" not in doc
        resp = http.post(f"{emu.url}/revoke", data={"token": "x", "client_id": "loopauth-demo"})
        assert resp.status_code == 404
        assert revocation_endpoint(provider_for(tmp_path, emu)) is None


def test_unknown_token_is_a_success_with_an_empty_body(emulator: OAuthEmulator) -> None:
    resp = requests.post(
        f"{emulator.url}/revoke",
        data={
            "token": "never-issued",
            "token_type_hint": "refresh_token",
            "client_id": "loopauth-demo",
        },
        timeout=5,
    )
    assert resp.status_code == 200 and resp.content == b""
    assert resp.headers["Cache-Control"] == "no-store"
    assert emulator.revoked == [] and emulator.revocation_count == 0
    assert emulator.revocation_calls == [
        {"client_id": "loopauth-demo", "token_type_hint": "refresh_token"}
    ]


def test_endpoint_errors(http: requests.Session, emulator: OAuthEmulator) -> None:
    url = f"{emulator.url}/revoke"
    missing = http.post(url, data={"client_id": "loopauth-demo"})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    not_form = http.post(url, json={"token": "x", "client_id": "loopauth-demo"})
    assert not_form.status_code == 400 and not_form.json()["error"] == "invalid_request"
    wrong = http.post(url, data={"token": "x"}, auth=("demo-confidential", "wrong-secret"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.headers["WWW-Authenticate"].startswith("Basic ")
    unknown_client = http.post(url, data={"token": "x", "client_id": "nobody"})
    assert unknown_client.status_code == 401
    get = http.get(url)
    assert get.status_code == 405 and get.headers["Allow"] == "POST"
    assert emulator.revoked == []


def test_refresh_token_revocation_takes_the_grants_access_tokens_along(
    http: requests.Session, emulator: OAuthEmulator, tmp_path: Path
) -> None:
    token = log_in(provider_for(tmp_path, emulator))
    assert token.refresh_token and userinfo_status(http, emulator, token.access_token) == 200
    data = {"token": token.refresh_token, "token_type_hint": "refresh_token"}
    resp = http.post(f"{emulator.url}/revoke", data={**data, "client_id": "loopauth-demo"})
    assert resp.status_code == 200 and resp.content == b""
    assert emulator.revoked == ["refresh_token"]
    assert userinfo_status(http, emulator, token.access_token) == 401
    again = http.post(
        f"{emulator.url}/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token.refresh_token,
            "client_id": "loopauth-demo",
        },
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # Already revoked: still 200 (RFC 7009 §2.2), and nothing more is revoked.
    resp = http.post(f"{emulator.url}/revoke", data={**data, "client_id": "loopauth-demo"})
    assert resp.status_code == 200 and emulator.revocation_count == 1


def test_an_unsupported_hint_is_ignored(
    http: requests.Session, emulator: OAuthEmulator, tmp_path: Path
) -> None:
    provider = provider_for(tmp_path, emulator)
    token = log_in(provider)
    data = {
        "token": token.access_token,
        "token_type_hint": "id_token",
        "client_id": "loopauth-demo",
    }
    resp = http.post(f"{emulator.url}/revoke", data=data)
    assert resp.status_code == 200 and emulator.revoked == ["access_token"]
    assert userinfo_status(http, emulator, token.access_token) == 401
    # An access token's revocation leaves the refresh token alone.
    assert oauth.refresh(provider, token).access_token


def test_another_clients_token_is_refused_and_kept(
    http: requests.Session, emulator: OAuthEmulator, tmp_path: Path
) -> None:
    token = log_in(provider_for(tmp_path, emulator))
    resp = http.post(
        f"{emulator.url}/revoke",
        data={"token": token.refresh_token},
        auth=("demo-confidential", SECRET),
    )
    assert resp.status_code == 400 and resp.json()["error"] == "unauthorized_client"
    assert emulator.revoked == [] and userinfo_status(http, emulator, token.access_token) == 200


# -- revoke() ------------------------------------------------------------------------------


def test_revoke_a_logged_in_token(
    http: requests.Session, emulator: OAuthEmulator, tmp_path: Path
) -> None:
    provider = provider_for(tmp_path, emulator)
    token = log_in(provider)
    assert revoke(provider, token) is True
    assert emulator.revoked == ["refresh_token"]
    assert emulator.revocation_calls == [
        {"client_id": "loopauth-demo", "token_type_hint": "refresh_token"}
    ]
    assert userinfo_status(http, emulator, token.access_token) == 401
    with pytest.raises(ProviderError) as info:
        oauth.refresh(provider, token)  # only what the provider says, not the store's view
    assert info.value.error == "invalid_grant"
    assert revoke(provider, token) is True  # already revoked: still a success
    assert emulator.revocation_count == 1


def test_revoke_an_access_token_without_refresh_token(
    http: requests.Session, tmp_path: Path
) -> None:
    with OAuthEmulator(issue_refresh_tokens=False) as emu:
        provider = provider_for(tmp_path, emu)
        token = log_in(provider)
        assert token.refresh_token is None
        assert revoke(provider, token) is True
        assert emu.revoked == ["access_token"]
        assert emu.revocation_calls[-1]["token_type_hint"] == "access_token"
        assert userinfo_status(http, emu, token.access_token) == 401


def test_revoke_with_a_confidential_client(
    emulator: OAuthEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for method in ("client_secret_basic", "client_secret_post"):
        emulator.clients["demo-confidential"].auth_method = method
        monkeypatch.setenv("EMU_SECRET", SECRET)
        provider = provider_for(
            tmp_path,
            emulator,
            f"token_endpoint_auth_method: {method}\n            client_secret: ${{EMU_SECRET}}",
        )
        provider = with_settings(provider, client_id="demo-confidential")
        token = log_in(provider)
        assert revoke(provider, token) is True
    assert emulator.revoked == ["refresh_token", "refresh_token"]


def test_no_revocation_endpoint_returns_false_and_sends_nothing(tmp_path: Path) -> None:
    with OAuthEmulator(revocation=False) as emu:
        provider = provider_for(tmp_path, emu)
        token = log_in(provider)
        assert revoke(provider, token) is False
        assert revoke_posts(emu) == [] and emu.revocation_calls == []
        assert oauth.refresh(provider, token).access_token


def test_a_failing_endpoint_is_a_provider_error_that_quotes_no_secret(
    emulator: OAuthEmulator, tmp_path: Path
) -> None:
    provider = with_settings(
        provider_for(tmp_path, emulator), client_id="demo-confidential", client_secret=SECRET
    )
    token = log_in(provider)
    emulator.fail_revocation = 503
    with pytest.raises(ProviderError) as info:
        revoke(provider, token)
    message = str(info.value)
    assert "emu" in message and f"{emulator.url}/revoke" in message and "503" in message
    assert info.value.error == "temporarily_unavailable"
    assert token.refresh_token and token.refresh_token not in message
    assert token.access_token not in message and SECRET not in message
    assert emulator.revoked == [] and len(emulator.revocation_calls) == 1


def test_an_unreachable_endpoint_is_a_provider_error(tmp_path: Path) -> None:
    with OAuthEmulator() as emu:
        provider = provider_for(tmp_path, emu)
        token = log_in(provider)  # discovery is remembered on the provider
        down = f"{emu.url}/revoke?key=query-secret"
    # The server that issued the token is gone: same origin, nobody listening.
    provider.settings["revocation_endpoint"] = down  # same object: its discovery is kept
    with pytest.raises(ProviderError) as info:
        revoke(provider, token)
    message = str(info.value)
    assert message.startswith("emu: could not revoke the token: cannot connect to")
    assert down.split("?")[0] in message and "query-secret" not in message
    assert token.refresh_token and token.refresh_token not in message


def test_an_endpoint_on_another_host_gets_nothing(emulator: OAuthEmulator, tmp_path: Path) -> None:
    provider = provider_for(tmp_path, emulator)
    token = log_in(provider)
    # A providers.yaml edited since login (or planted) must not collect the refresh token.
    elsewhere = f"http://localhost:{emulator.port}/revoke"
    with pytest.raises(ProviderError) as info:
        revoke(with_settings(provider, revocation_endpoint=elsewhere), token)
    assert "is not on the server that issued the token" in str(info.value)
    assert "loopauth sent nothing" in str(info.value)
    assert revoke_posts(emulator) == [] and emulator.revocation_calls == []


def test_wrong_client_secret_is_a_provider_error(emulator: OAuthEmulator, tmp_path: Path) -> None:
    provider = with_settings(
        provider_for(tmp_path, emulator), client_id="demo-confidential", client_secret=SECRET
    )
    token = log_in(provider)
    with pytest.raises(ProviderError) as info:
        revoke(with_settings(provider, client_secret="wrong-secret-value"), token)
    message = str(info.value)
    assert info.value.error == "invalid_client" and "401" in message
    assert "wrong-secret-value" not in message and SECRET not in message
    assert emulator.revoked == []


@pytest.mark.parametrize(
    "change",
    [
        {"client_id": "demo-confidential"},
        {"token_endpoint": "https://elsewhere.example/token"},
        {"issuer": "https://elsewhere.example"},
    ],
    ids=["client_id", "token_endpoint", "issuer"],
)
def test_a_token_from_another_configuration_is_not_sent(
    change: dict[str, str], emulator: OAuthEmulator, tmp_path: Path
) -> None:
    provider = provider_for(tmp_path, emulator)
    token = log_in(provider)
    assert token.bound_to
    seen = len(emulator.log)
    with pytest.raises(NoTokenError) as info:
        revoke(with_settings(provider, **change), token)
    assert "loopauth sent nothing" in str(info.value)
    assert emulator.revocation_calls == [] and revoke_posts(emulator) == []
    assert len(emulator.log) == seen  # not even a discovery request


class Hostile(EmulatorServer):
    """A provider whose discovery document and /revoke say what the test sets."""

    revocation = "/revoke"
    answer: Response = Response(200, b"")

    def route(self, req: Request) -> Response:
        if req.path == "/.well-known/openid-configuration":
            return Response(
                200,
                {
                    "issuer": self.url,
                    "authorization_endpoint": f"{self.url}/authorize",
                    "token_endpoint": f"{self.url}/token",
                    "revocation_endpoint": self.revocation,
                },
            )
        if req.path == "/revoke":
            return self.answer
        return super().route(req)


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    with Hostile() as server:
        server.revocation = f"{server.url}/revoke"
        yield server


def stored_token() -> Token:
    return Token("access-token-value", provider="emu", refresh_token="refresh-token-value")


def test_a_discovered_http_endpoint_is_refused(hostile: Hostile, tmp_path: Path) -> None:
    hostile.revocation = "http://revoke.example/revoke"
    with pytest.raises(ProviderError) as info:
        revoke(provider_for(tmp_path, hostile), stored_token())
    assert "discovered revocation_endpoint must use https" in str(info.value)
    assert revoke_posts(hostile) == []


def test_a_redirect_is_not_followed(hostile: Hostile, tmp_path: Path) -> None:
    hostile.answer = Response.redirect(f"{hostile.url}/elsewhere?token=x")
    with pytest.raises(ProviderError) as info:
        revoke(provider_for(tmp_path, hostile), stored_token())
    assert "redirect (HTTP 302)" in str(info.value) and "token=x" not in str(info.value)
    assert ("POST", "/elsewhere") not in hostile.log and ("GET", "/elsewhere") not in hostile.log


@pytest.mark.parametrize(
    "answer",
    [
        Response(400, {"error": "refresh-token-value"}),
        Response(400, {"error": "invalid\x1b]0;x\x07"}),
        Response(500, "<html>oops</html>", {}, "text/html"),
        Response(400, b"{" + b" " * (2 << 20) + b"}"),
    ],
    ids=["echoed token", "escapes", "html", "huge"],
)
def test_an_error_answer_quotes_no_token_and_no_garbage(
    answer: Response, hostile: Hostile, tmp_path: Path
) -> None:
    hostile.answer = answer
    with pytest.raises(ProviderError) as info:
        revoke(provider_for(tmp_path, hostile), stored_token())
    message = str(info.value)
    assert "refresh-token-value" not in message and "\x1b" not in message
    assert info.value.error is None and f"{hostile.url}/revoke" in message


def test_a_200_with_any_body_is_a_success(hostile: Hostile, tmp_path: Path) -> None:
    hostile.answer = Response(200, "<html>revoked</html>", {}, "text/html")
    assert revoke(provider_for(tmp_path, hostile), stored_token()) is True


def test_a_token_the_provider_calls_invalid_is_as_good_as_revoked(
    hostile: Hostile, tmp_path: Path
) -> None:
    # Google answers 400 invalid_token for a token already revoked or expired (RFC 7009 says
    # 200): logging out must not then insist on --force.
    hostile.answer = Response(400, {"error": "invalid_token"})
    assert revoke(provider_for(tmp_path, hostile), stored_token()) is True
    hostile.answer = Response(400, {"error": "invalid_request"})  # anything else still fails
    with pytest.raises(ProviderError, match="invalid_request"):
        revoke(provider_for(tmp_path, hostile), stored_token())
