"""No request carrying a secret follows a redirect: real servers on loopback, nothing mocked."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from tiktok_app import KEY, SECRET, SERVICE

from loopauth.emulator import EmulatorServer, OAuthEmulator, RecordingServer, Request, Response
from loopauth.plugins.tiktok_shop import SHOPS_PATH, TikTokShopAuth, shop_session
from loopauth.plugins.tiktok_shop.emulator import TikTokShopEmulator, tiktok_config
from loopauth.store import TokenStore
from loopauth.testing import cli, login, write_config

ENV = {"TIKTOK_APP_SECRET": SECRET}
EXPIRED = {"code": 105002, "message": "Expired credentials", "data": {}, "request_id": "r1"}


Attacker = RecordingServer  # records every request it gets, answering with one answer


class Redirector(EmulatorServer):
    """Plays the Shop API: answers each request with the next of `answers`, then 307 for good."""

    def __init__(self, target: str, answers: list[Response] | None = None) -> None:
        super().__init__()
        self.target, self.answers = target, list(answers or [])
        self.seen: list[Request] = []
        self._seen_lock = threading.Lock()

    def route(self, req: Request) -> Response:
        with self._seen_lock:
            self.seen.append(req)
            if self.answers:
                return self.answers.pop(0)
        return Response.redirect(self.target, 307)


@pytest.fixture
def attacker() -> Iterator[Attacker]:
    shops = {"code": 0, "message": "Success", "data": {"shops": []}, "request_id": "a1"}
    with Attacker(Response(200, shops)) as server:
        yield server


def logged_in(tmp_path: Path, tiktok: TikTokShopEmulator, port: int, api: EmulatorServer) -> Path:
    """Log in to the TikTok emulator for real; the config's api_base_url is `api`."""
    cfg = tiktok_config(
        tmp_path / "providers.yaml", tiktok.url, port, client_id=KEY, service_id=SERVICE
    )
    cfg.write_text(
        cfg.read_text().replace(f"api_base_url: {tiktok.url}", f"api_base_url: {api.url}")
    )
    result = login("--config", str(cfg), "login", env=ENV)
    assert result.returncode == 0, result.stderr
    return cfg


def leaked(server: Attacker | Redirector, *secrets: str) -> list[str]:
    """Every secret found in a header or query value the server received."""
    values = [v for r in server.seen for v in (*r.headers.values(), *r.query.values())]
    return [s for s in secrets if any(s in v for v in values)]


def test_shops_refuses_a_redirect_and_sends_nothing_there(
    tmp_path: Path, tiktok: TikTokShopEmulator, port: int, attacker: Attacker
) -> None:
    with Redirector(f"{attacker.url}/steal") as api:
        cfg = logged_in(tmp_path, tiktok, port, api)
        out = cli("--config", str(cfg), "shops", env=ENV)
        assert out.returncode == 5, out.stderr
        assert "answered with a redirect (HTTP 307)" in out.stderr
        assert f"{attacker.url}/steal" in out.stderr and "does not follow" in out.stderr
        assert "Traceback" not in out.stderr
        assert attacker.log == [] and attacker.seen == []
        token = TokenStore().find("tiktok-shop").access_token
        assert [r.headers.get("x-tts-access-token") for r in api.seen] == [token]


@pytest.mark.parametrize("follow", [None, True])
def test_shop_session_never_follows_a_redirect(
    tmp_path: Path,
    tiktok: TikTokShopEmulator,
    port: int,
    attacker: Attacker,
    monkeypatch: pytest.MonkeyPatch,
    follow: bool | None,
) -> None:
    """Session.get() passes allow_redirects=True itself; an explicit True is refused as well."""
    with Redirector(f"{attacker.url}/steal") as api:
        cfg = logged_in(tmp_path, tiktok, port, api)
        monkeypatch.setenv("TIKTOK_APP_SECRET", SECRET)
        extra = {} if follow is None else {"allow_redirects": follow}
        with shop_session(config=str(cfg)) as session:
            resp = session.get(SHOPS_PATH, **extra)
            assert (resp.status_code, resp.history) == (307, [])
            assert resp.headers["location"] == f"{attacker.url}/steal"
            prepared = session.prepare_request(requests.Request("GET", f"{api.url}{SHOPS_PATH}"))
            assert session.send(prepared).status_code == 307
        assert attacker.log == [] and len(api.seen) == 2


@pytest.mark.parametrize("caller", ["requests.get", "requests.Session"])
def test_auth_on_a_following_session_sends_no_token_to_the_redirect_target(
    tmp_path: Path,
    tiktok: TikTokShopEmulator,
    port: int,
    attacker: Attacker,
    monkeypatch: pytest.MonkeyPatch,
    caller: str,
) -> None:
    with Redirector(f"{attacker.url}/steal") as api:
        cfg = logged_in(tmp_path, tiktok, port, api)
        monkeypatch.setenv("TIKTOK_APP_SECRET", SECRET)
        auth = TikTokShopAuth("tiktok-shop", config=str(cfg))
        url = f"{api.url}{SHOPS_PATH}"
        if caller == "requests.get":
            resp = requests.get(url, auth=auth, timeout=10)
        else:
            with requests.Session() as session:
                resp = session.get(url, auth=auth, timeout=10)
        token = TokenStore().find("tiktok-shop").access_token
        assert [r.status_code for r in resp.history] == [307]  # the caller did follow it
        assert resp.status_code == 200 and len(attacker.seen) == 1
        assert "x-tts-access-token" not in attacker.seen[0].headers
        assert leaked(attacker, token, SECRET) == []
        assert leaked(api, token) == [token]  # the configured host did get it


def test_a_redirect_target_answering_105002_gets_no_fresh_token(
    tmp_path: Path, tiktok: TikTokShopEmulator, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The auth's retry hook is shared with requests' redirect hops: it must not re-sign them."""
    with Attacker(Response(401, EXPIRED)) as attacker, Redirector(f"{attacker.url}/s") as api:
        cfg = logged_in(tmp_path, tiktok, port, api)
        monkeypatch.setenv("TIKTOK_APP_SECRET", SECRET)
        before = TokenStore().find("tiktok-shop").access_token
        requests.get(f"{api.url}{SHOPS_PATH}", auth=TikTokShopAuth(config=str(cfg)), timeout=10)
        after = TokenStore().find("tiktok-shop").access_token
        assert tiktok.token_calls == ["/api/v2/token/get"]  # no refresh for the attacker
        assert len(attacker.seen) == 1 and leaked(attacker, before, after, SECRET) == []


@pytest.mark.parametrize("via", ["requests.get", "shop_session", "loopauth shops"])
def test_the_105002_retry_does_not_follow_a_redirect_either(
    tmp_path: Path,
    tiktok: TikTokShopEmulator,
    port: int,
    attacker: Attacker,
    monkeypatch: pytest.MonkeyPatch,
    via: str,
) -> None:
    """TikTok says 105002, the auth refreshes and retries, and the retry is answered 307."""
    with Redirector(f"{attacker.url}/steal", [Response(401, EXPIRED)]) as api:
        cfg = logged_in(tmp_path, tiktok, port, api)
        monkeypatch.setenv("TIKTOK_APP_SECRET", SECRET)
        old = TokenStore().find("tiktok-shop").access_token
        if via == "loopauth shops":
            out = cli("--config", str(cfg), "shops", env=ENV)
            assert out.returncode == 5 and "answered with a redirect (HTTP 307)" in out.stderr
        elif via == "shop_session":
            with shop_session(config=str(cfg)) as session:
                assert session.get(SHOPS_PATH).status_code == 307
        else:
            resp = requests.get(
                f"{api.url}{SHOPS_PATH}", auth=TikTokShopAuth(config=str(cfg)), timeout=10
            )
            assert [r.status_code for r in resp.history] == [307]  # requests drops the 401
            assert len(attacker.seen) == 1  # followed by requests, without any token
        new = TokenStore().find("tiktok-shop").access_token
        assert tiktok.token_calls == ["/api/v2/token/get", "/api/v2/token/refresh"] and new != old
        assert [r.headers.get("x-tts-access-token") for r in api.seen] == [old, new]
        assert leaked(attacker, old, new, SECRET) == []
        if via != "requests.get":
            assert attacker.log == []


def test_userinfo_does_not_follow_a_redirect_with_the_bearer_token(
    tmp_path: Path, emulator: OAuthEmulator, attacker: Attacker
) -> None:
    """No id_token (no openid scope), so the account is named from userinfo, which redirects."""
    with Redirector(f"{attacker.url}/steal") as userinfo:
        cfg = write_config(
            tmp_path / "providers.yaml",
            f"""
            providers:
              emu:
                authorization_endpoint: {emulator.url}/authorize
                token_endpoint: {emulator.url}/token
                userinfo_endpoint: {userinfo.url}/userinfo
                client_id: loopauth-demo
                scope: profile email
        """,
        )
        result = login("--config", str(cfg), "login")
        assert result.returncode == 0, result.stderr
        assert "could not name the account from userinfo" in result.stderr
        assert "answered with a redirect (HTTP 307)" in result.stderr
        [token] = emulator.issued_access_tokens()
        assert [r.headers.get("authorization") for r in userinfo.seen] == [f"Bearer {token}"]
        assert attacker.log == [] and attacker.seen == []
        assert TokenStore().find("emu").account_id == "default"
