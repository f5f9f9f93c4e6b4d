"""TikTok Shop: the plugin and its emulator, end to end through the CLI."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from tiktok_app import KEY, SECRET, SERVICE, make_emulator

from loopauth.emulator import browse
from loopauth.plugins.tiktok_shop import TikTokShopAuth, get_authorized_shops, sign
from loopauth.plugins.tiktok_shop.emulator import (
    CREATOR_AUTHORIZE_PATH,
    CREATOR_OPEN_ID,
    SELLER_OPEN_ID,
    TikTokShopEmulator,
    tiktok_config,
)
from loopauth.store import TokenStore
from loopauth.testing import cli, login, write_config
from loopauth.token import Token


def shop_config(path: Path, emu: TikTokShopEmulator, port: int, extra: str = "") -> Path:
    """Write a providers.yaml whose tiktok-shop provider points at the emulator."""
    return tiktok_config(path, emu.url, port, client_id=KEY, service_id=SERVICE, extra=extra)


ENV = {"TIKTOK_APP_SECRET": SECRET}


@pytest.fixture
def cfg(tmp_path: Path, tiktok: TikTokShopEmulator, port: int) -> Path:
    return shop_config(tmp_path / "providers.yaml", tiktok, port)


def shop_login(cfg: Path, *args: str, decision: str = "allow") -> object:
    return login("--config", str(cfg), "login", *args, decision=decision, env=ENV)


# -- signing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "path", "params", "body", "expected"),
    [
        (
            "e59af819cc",
            "/authorization/202309/shops",
            {"app_key": "29a39d", "timestamp": "1623812664"},
            None,
            "b596b73e0cc6de07ac26f036364178ab16b0a907af13d43f0a0cd2345f582dc8",
        ),
        (
            "e59af819cc",
            "/event/202309/webhooks",
            {
                "app_key": "68xu9ks5p4i8",
                "shop_cipher": "ROW_xkMbgAAAeVAQra0eZWebFQq5aIK",
                "timestamp": "1696909648",
            },
            None,
            "ed58e1b5e59865c22a7b828c1cab65007441f43cc91a6cb2f2cdc638e0995a37",
        ),
        (
            "e59af819cc",
            "/event/202309/webhooks",
            {
                "app_key": "68xu9ks5p4i8",
                "shop_cipher": "ROW_xkMbgAAAeVAQra0eZWebFQq5aIK",
                "timestamp": "1696909648",
            },
            b'{"event_type":"PACKAGE_UPDATE","address":"https://partner.tiktokshop.com"}',
            "701dd6deb2389fe4c469b89bd37fc56f96a6da6afeb4d01c9077a65169752fa7",
        ),
        (
            "app_secret",
            "/test-api",
            {"foo": "bar"},
            None,
            "d3cb7fe11ecae942802ceeca67e7cf10120cc12f1517d45fbc1c8cfe5413c80f",
        ),
    ],
)
def test_published_signing_vectors(
    secret: str, path: str, params: dict[str, str], body: bytes | None, expected: str
) -> None:
    assert sign(secret, path, params, body) == expected
    assert sign(secret, path, {**params, "sign": "x", "access_token": "y"}, body) == expected


# -- login ---------------------------------------------------------------------------------


def test_login_stores_the_seller_token_and_writes_the_seed_file(
    cfg: Path, tiktok: TikTokShopEmulator, tmp_path: Path, isolated: Path
) -> None:
    out_file = tmp_path / "qa_data" / "tokens" / "tiktok-shops.json"
    result = shop_login(cfg, "--output", str(out_file))
    assert result.returncode == 0, result.stderr
    query = parse_qs(urlsplit(result.url).query)
    assert set(query) == {"service_id", "state"} and query["service_id"] == [SERVICE]
    assert tiktok.token_calls == ["/api/v2/token/get"]
    [sent] = tiktok.responses
    assert json.loads(out_file.read_text()) == sent  # same keys and values as received
    assert out_file.read_text().startswith('{\n  "code": 0,')
    token = TokenStore().find("tiktok-shop")
    data = sent["data"]
    assert token.access_token == data["access_token"]
    assert token.expires_at == data["access_token_expire_in"]  # absolute, not a duration
    assert token.refresh_expires_at == data["refresh_token_expire_in"]
    assert (token.account_id, token.account_label) == (data["open_id"], "Jjj test shop")
    assert token.scopes == data["granted_scopes"]
    assert token.extra["shop_region"] == "GB" and token.extra["locale"] == "en-GB"
    assert token.extra["user_type"] == 0 and token.extra["seller_base_region"] == "GB"
    assert f"Logged in to tiktok-shop as Jjj test shop ({SELLER_OPEN_ID})" in result.stderr
    assert "Jjj test shop" in result.page.body
    printed = cli("--config", str(cfg), "token", env=ENV)
    assert printed.stdout.strip() == data["access_token"]


def test_a_creator_has_no_seller_name(
    tmp_path: Path, tiktok: TikTokShopEmulator, port: int
) -> None:
    # Creators authorize on their own page, which names the app by its key.
    creator_cfg = tiktok_config(
        tmp_path / "c.yaml",
        tiktok.url,
        port,
        client_id=KEY,
        service_id=SERVICE,
        extra="    user_type: creator\n",
        authorize_path=CREATOR_AUTHORIZE_PATH,
    )
    result = login(
        "--config",
        str(creator_cfg),
        "login",
        "--no-browser",
        decision=None,
        env=ENV,
        before=lambda url: (
            __import__("threading")
            .Thread(target=browse, args=(url,), kwargs={"account": CREATOR_OPEN_ID})
            .start()
        ),
    )
    assert result.returncode == 0, result.stderr
    token = TokenStore().find("tiktok-shop")
    assert token.account_id == CREATOR_OPEN_ID
    assert token.account_label == f"creator {CREATOR_OPEN_ID[-6:]}"
    assert token.extra["user_type"] == 1


def test_deny_is_exit_3(cfg: Path, tiktok: TikTokShopEmulator) -> None:
    result = shop_login(cfg, decision="deny")
    assert result.returncode == 3, result.stderr
    assert "access denied (auth_denied)" in result.stderr
    assert tiktok.token_calls == []


def test_stale_code_is_36004004(tmp_path: Path, port: int) -> None:
    with make_emulator(port, code_lifetime=-1) as emu:
        cfg = shop_config(tmp_path / "p.yaml", emu, port)
        result = shop_login(cfg)
    assert result.returncode == 5
    assert "TikTok Shop error 36004004: invalid auth code" in result.stderr
    assert "already used or has expired" in result.stderr
    assert "run loopauth login tiktok-shop" in result.stderr
    assert "request_id" in result.stderr and SECRET not in result.stderr


# -- refresh -------------------------------------------------------------------------------


def expiring() -> Token:
    """Make the stored 30 s token have 5 s left: inside the leeway (capped at half of 30 s)."""
    token = TokenStore().find("tiktok-shop")
    token.expires_at, token.obtained_at = time.time() + 5, time.time() - 25
    TokenStore().save(token)
    return token


def test_token_refreshes_by_itself_and_keeps_a_rotated_refresh_token(
    tmp_path: Path, port: int
) -> None:
    with make_emulator(port, access_token_lifetime=30, rotate_refresh_tokens=True) as emu:
        cfg = shop_config(tmp_path / "p.yaml", emu, port)
        assert shop_login(cfg).returncode == 0
        first = expiring()
        out = cli("--config", str(cfg), "token", env=ENV)  # 5 s left: inside the leeway
        assert out.returncode == 0, out.stderr
        second = TokenStore().find("tiktok-shop")
        assert out.stdout.strip() == second.access_token != first.access_token
        assert second.refresh_token != first.refresh_token  # the rotated one was stored
        expiring()
        assert cli("--config", str(cfg), "token", env=ENV).returncode == 0  # and it works
        third = TokenStore().find("tiktok-shop")
        assert emu.token_calls == [
            "/api/v2/token/get",
            "/api/v2/token/refresh",
            "/api/v2/token/refresh",
        ]
        assert third.refresh_token not in (first.refresh_token, second.refresh_token)
        assert third.account_label == "Jjj test shop" and third.extra["shop_region"] == "GB"
        assert third.raw == emu.responses[-1]


def test_refresh_and_token_output_keep_the_seed_file_fresh(
    cfg: Path, tiktok: TikTokShopEmulator, tmp_path: Path
) -> None:
    assert shop_login(cfg).returncode == 0
    seed = tmp_path / "tiktok-shops.json"
    out = cli("--config", str(cfg), "refresh", "--output", str(seed), env=ENV)
    assert out.returncode == 0, out.stderr
    assert json.loads(seed.read_text()) == tiktok.responses[-1]
    assert (
        tiktok.responses[-1]["data"]["refresh_token"]
        == tiktok.responses[0]["data"]["refresh_token"]
    )  # without rotation the same refresh token comes back
    seed.unlink()
    out = cli("--config", str(cfg), "token", "--output", str(seed), env=ENV)
    assert out.stdout.strip() == tiktok.responses[-1]["data"]["access_token"]
    assert json.loads(seed.read_text()) == tiktok.responses[-1]


@pytest.mark.parametrize(
    ("break_it", "code", "hint"),
    [
        ("revoke_refresh_tokens", 36004005, "does not know this refresh token"),
        ("expire_refresh_tokens", 36004001, "the refresh token has expired"),
    ],
)
def test_dead_refresh_token_errors_are_remembered_and_keep_the_tokens(
    cfg: Path, tiktok: TikTokShopEmulator, break_it: str, code: int, hint: str
) -> None:
    assert shop_login(cfg).returncode == 0
    path = Path(TokenStore().path_for("tiktok-shop", SELLER_OPEN_ID))
    getattr(tiktok, break_it)()
    original = json.loads(path.read_text())
    for command in ("refresh", "shops"):
        tiktok.expire_access_tokens()
        data = dict(original)
        if command == "shops":  # make the stored token look expired too, so shops must refresh
            data["expires_at"] = time.time() - 5
        path.write_text(json.dumps(data))
        calls = len(tiktok.token_calls)
        out = cli("--config", str(cfg), command, env=ENV)
        assert out.returncode == 6, out.stderr
        assert f"({code}: " in out.stderr and hint in out.stderr
        assert f"run: loopauth login tiktok-shop --account {SELLER_OPEN_ID}" in out.stderr
        assert "Traceback" not in out.stderr
        stored = TokenStore().find("tiktok-shop")
        assert (stored.access_token, stored.refresh_token) == (
            original["access_token"],
            original["refresh_token"],
        )
        assert stored.dead is not None and stored.dead.startswith(str(code))
        assert len(tiktok.token_calls) == calls + 1
        # Remembered: the next caller is told to log in without asking TikTok again.
        again = cli("--config", str(cfg), command, env=ENV)
        assert again.returncode == 6 and "run: loopauth login tiktok-shop" in again.stderr
        assert len(tiktok.token_calls) == calls + 1
    status = cli("--config", str(cfg), "status", env=ENV)
    assert "dead: log in again" in status.stdout


def test_token_endpoints_are_get_only(tiktok: TikTokShopEmulator) -> None:
    for path in ("/api/v2/token/get", "/api/v2/token/refresh"):
        resp = requests.post(f"{tiktok.url}{path}", data={"app_key": KEY, "app_secret": SECRET})
        assert (resp.status_code, resp.text) == (404, "404 page not found")


def test_unknown_service_id_page(tiktok: TikTokShopEmulator) -> None:
    page = browse(f"{tiktok.url}/open/authorize?service_id={KEY}&state=s")
    assert "This service does not exist" in page.body


def test_service_id_that_looks_like_the_app_key_warns(
    tmp_path: Path, tiktok: TikTokShopEmulator, port: int
) -> None:
    cfg = shop_config(tmp_path / "p.yaml", tiktok, port)
    cfg.write_text(cfg.read_text().replace(f'service_id: "{SERVICE}"', f"service_id: {KEY}"))
    out = cli("--config", str(cfg), "providers", env=ENV)
    assert "does not look like a Service ID" in out.stderr
    assert "not the App Key" in out.stderr


def test_region_chooses_the_authorization_host(tmp_path: Path) -> None:
    from loopauth.config import parse

    text = (
        "providers:\n  s:\n    plugin: tiktok_shop\n    client_id: k\n    client_secret: s\n"
        "    service_id: '7301'\n"
    )
    assert (
        parse(text).select("s").get("authorization_endpoint")
        == "https://services.tiktokshop.com/open/authorize"
    )
    us = parse(text + "    region: us\n").select("s")
    assert us.get("authorization_endpoint") == "https://services.tiktokshops.us/open/authorize"
    assert us.get("token_endpoint") == "https://auth.tiktok-shops.com/api/v2/token/get"
    assert us.get("redirect_uri") == "http://localhost:3017/" and us.get("pkce") is False
    bad = parse(text.replace("    client_secret: s\n", "")).errors["s"]
    assert "client_secret: is required (the app's App Secret in Partner Center)" in str(bad)


def test_pkce_can_be_switched_on(tmp_path: Path, tiktok: TikTokShopEmulator, port: int) -> None:
    cfg = shop_config(tmp_path / "p.yaml", tiktok, port, "    pkce: true\n")
    result = shop_login(cfg)
    assert result.returncode == 0
    assert set(parse_qs(urlsplit(result.url).query)) == {
        "service_id",
        "state",
        "code_challenge",
        "code_challenge_method",
    }


# -- the Shop API --------------------------------------------------------------------------


def test_shops_lists_the_authorized_shops(cfg: Path) -> None:
    assert shop_login(cfg).returncode == 0
    out = cli("--config", str(cfg), "shops", env=ENV)
    assert out.returncode == 0, out.stderr
    assert (
        "Maomao beauty shop  region=GB  seller_type=CROSS_BORDER  "
        "cipher=GCP_XF90igAAAABh00qsWgtvOiGFNqyubMt3"
    ) in out.stdout
    shops = json.loads(cli("--config", str(cfg), "shops", "--json", env=ENV).stdout)
    assert [s["name"] for s in shops] == ["Maomao beauty shop", "Maomao home"]


def test_shops_with_an_expired_token_refreshes_first(cfg: Path, tiktok: TikTokShopEmulator) -> None:
    assert shop_login(cfg).returncode == 0
    path = Path(TokenStore().path_for("tiktok-shop", SELLER_OPEN_ID))
    data = json.loads(path.read_text())
    data["expires_at"] = time.time() - 10  # expired on our side
    path.write_text(json.dumps(data))
    tiktok.expire_access_tokens()
    out = cli("--config", str(cfg), "shops", env=ENV)
    assert out.returncode == 0, out.stderr
    assert tiktok.token_calls == ["/api/v2/token/get", "/api/v2/token/refresh"]


def test_shops_retries_once_when_tiktok_says_105002(cfg: Path, tiktok: TikTokShopEmulator) -> None:
    assert shop_login(cfg).returncode == 0
    tiktok.expire_access_tokens()  # expired on TikTok's side only
    out = cli("--config", str(cfg), "shops", env=ENV)
    assert out.returncode == 0, out.stderr
    assert tiktok.token_calls[-1] == "/api/v2/token/refresh"


def test_shops_needs_a_tiktok_provider(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "p.yaml", "providers:\n  g:\n    issuer: https://a.example\n    client_id: c\n"
    )
    out = cli("--config", str(cfg), "shops")
    assert out.returncode == 2 and "uses plugin oauth2, not tiktok_shop" in out.stderr


def test_python_auth_signs_any_call(cfg: Path, tiktok: TikTokShopEmulator) -> None:
    assert shop_login(cfg).returncode == 0
    import os

    os.environ["TIKTOK_APP_SECRET"] = SECRET
    try:
        auth = TikTokShopAuth("tiktok-shop", config=str(cfg))
        resp = requests.get(f"{tiktok.url}/authorization/202309/shops", auth=auth)
        assert resp.json()["code"] == 0
        assert SECRET not in repr(auth)
        assert get_authorized_shops(config=str(cfg))[0]["cipher"].startswith("GCP_")
    finally:
        del os.environ["TIKTOK_APP_SECRET"]


def _api(tiktok: TikTokShopEmulator, **override: str) -> tuple[int, dict]:
    token = TokenStore().find("tiktok-shop").access_token
    params = {"app_key": KEY, "timestamp": str(int(time.time()))}
    params.update({k: v for k, v in override.items() if k != "secret"})
    params["sign"] = sign(override.get("secret", SECRET), "/authorization/202309/shops", params)
    req = urllib.request.Request(
        f"{tiktok.url}/authorization/202309/shops?{urlencode(params)}",
        headers={"x-tts-access-token": token},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_emulator_checks_signature_and_timestamp(cfg: Path, tiktok: TikTokShopEmulator) -> None:
    assert shop_login(cfg).returncode == 0
    assert _api(tiktok)[1]["code"] == 0
    status, body = _api(tiktok, secret="wrong-secret")
    assert (status, body["code"]) == (401, 106001)
    status, body = _api(tiktok, timestamp=str(int(time.time()) - 600))
    assert (status, body["code"]) == (400, 36009004) and "timestamp" in body["message"]
    status, body = _api(tiktok, timestamp=str(int(time.time() * 1000)))  # milliseconds
    assert body["code"] == 36009004 and "timestamp" in body["message"]
    tiktok.expire_access_tokens()
    status, body = _api(tiktok)
    assert body["code"] == 105002


def test_envelope_garbage_is_a_provider_error(tmp_path: Path, port: int) -> None:
    from loopauth.config import parse
    from loopauth.plugins.tiktok_shop.auth import check_envelope, parse_token_response

    provider = parse(
        "providers:\n  s:\n    plugin: tiktok_shop\n    client_id: k\n"
        "    client_secret: s\n    service_id: '7301'\n"
    ).select("s")
    for response, message in [
        ({"message": "x"}, "without a numeric `code`"),
        ({"code": "zero"}, "without a numeric `code`"),
        ({"code": "0"}, "without a `data` object"),
        ({"code": 0}, "without a `data` object"),
        ({"code": 0, "data": {"access_token": "a"}}, "malformed refresh_token"),
        *[
            (
                {
                    "code": 0,
                    "data": {
                        "access_token": "a",
                        "refresh_token": "r",
                        "access_token_expire_in": bad,
                        "refresh_token_expire_in": 4841467787,
                    },
                },
                "access_token_expire_in is not a sensible Unix time",
            )
            for bad in (
                "soon",
                1722342011000,
                604800,
                -5,
                float("nan"),
                float("inf"),
                1e300,
                10**400,
                True,
                None,
            )
        ],
        (
            {
                "code": 0,
                "data": {
                    "access_token": "a",
                    "refresh_token": "r",
                    "access_token_expire_in": 1722342011,
                    "refresh_token_expire_in": 4841467787,
                    "granted_scopes": "x",
                },
            },
            "granted_scopes is not a list",
        ),
        ({"code": 99, "message": "odd", "request_id": 5}, "TikTok Shop error 99: odd"),
    ]:
        with pytest.raises(Exception) as info:
            parse_token_response(provider=provider, response=response, previous=None)
        assert message in str(info.value), response
        assert type(info.value).__name__ in ("ProviderError", "TikTokShopError")
    assert check_envelope(provider, {"code": 0, "data": {}}) == {}


def test_make_demo_job(tmp_path: Path) -> None:
    """`make demo`'s job: seed-shaped JSON saved and printed, then the shops."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "CI": "true"}
    proc = subprocess.run(
        [sys.executable, "-m", "loopauth.demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((tmp_path / "qa_data" / "tokens" / "tiktok-shops.json").read_text())
    assert saved["code"] == 0 and saved["data"]["seller_name"] == "Jjj test shop"
    assert json.dumps(saved, indent=2) in proc.stdout
    assert "Maomao beauty shop  region=GB" in proc.stdout
    assert (tmp_path / ".loopauth-demo" / "providers.yaml").exists()
    # What the demo says to run from a shell works, with none of the test's own settings.
    exports = [line.strip() for line in proc.stdout.splitlines() if line.startswith("  export ")]
    assert len(exports) == 2, proc.stdout
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPAUTH_", "TIKTOK_"))}
    bindir = os.path.dirname(sys.executable)
    shell = subprocess.run(
        ["bash", "-c", "; ".join([*exports, "loopauth token"])],
        cwd=tmp_path,
        env={**clean, "PATH": bindir + os.pathsep + clean.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.strip() == saved["data"]["access_token"]


def test_a_used_code_is_36004004(cfg: Path, tiktok: TikTokShopEmulator) -> None:
    result = shop_login(cfg)
    assert result.returncode == 0
    callback = next(h for h in result.page.hops if "code=" in h)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    again = requests.get(
        f"{tiktok.url}/api/v2/token/get",
        params={
            "app_key": KEY,
            "app_secret": SECRET,
            "auth_code": code,
            "grant_type": "authorized_code",
        },
    )
    assert again.json()["code"] == 36004004 and "data" not in again.json()


def test_emulator_command_serves_tiktok(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "loopauth", "emulator", "tiktok_shop"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("emulator listening on http://127.0.0.1:")
        url = line.split()[-1]
        page = browse(
            f"{url}/open/authorize?service_id=7301234567890123456&state=s",
            stop_at="http://localhost:3017/",
        )
        assert "code=" in page.url and "shop_region=GB" in page.url
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_used_code_through_the_cli_is_36004004(
    cfg: Path, tiktok: TikTokShopEmulator, port: int
) -> None:
    """Someone else spends the code first (a replayed redirect): exit 5 with the hint."""

    def steal_then_deliver(url: str) -> None:
        redirect = browse(url, stop_at=f"http://localhost:{port}/").url
        code = parse_qs(urlsplit(redirect).query)["code"][0]
        requests.get(
            f"{tiktok.url}/api/v2/token/get",
            params={
                "app_key": KEY,
                "app_secret": SECRET,
                "auth_code": code,
                "grant_type": "authorized_code",
            },
        )
        threading.Thread(target=deliver, args=(redirect,)).start()

    def deliver(redirect: str) -> None:
        with pytest.raises(urllib.error.HTTPError):  # the listener's failure page: 502
            urllib.request.urlopen(redirect, timeout=10)

    result = login("--config", str(cfg), "login", decision=None, before=steal_then_deliver, env=ENV)
    assert result.returncode == 5, result.stderr
    assert "TikTok Shop error 36004004" in result.stderr and "log in again" in result.stderr
    assert not list((Path(os.environ["LOOPAUTH_HOME"]) / "tokens").rglob("*.json"))


def test_wrong_app_secret_on_shops_is_106001(cfg: Path) -> None:
    assert shop_login(cfg).returncode == 0
    out = cli("--config", str(cfg), "shops", env={"TIKTOK_APP_SECRET": "not-the-secret"})
    assert out.returncode == 5
    assert "TikTok Shop error 106001" in out.stderr and "check the App Secret" in out.stderr
    assert "not-the-secret" not in out.stderr


def test_exact_token_and_refresh_requests(cfg: Path, tiktok: TikTokShopEmulator) -> None:
    assert shop_login(cfg).returncode == 0
    assert cli("--config", str(cfg), "refresh", env=ENV).returncode == 0
    assert tiktok.token_requests == [
        {
            "path": "/api/v2/token/get",
            "grant_type": "authorized_code",
            "params": ["app_key", "app_secret", "auth_code", "grant_type"],
        },
        {
            "path": "/api/v2/token/refresh",
            "grant_type": "refresh_token",
            "params": ["app_key", "app_secret", "grant_type", "refresh_token"],
        },
    ]


def test_python_debug_logging_never_shows_the_secret(
    cfg: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    import loopauth

    assert shop_login(cfg).returncode == 0
    monkeypatch.setenv("TIKTOK_APP_SECRET", SECRET)
    caplog.set_level(logging.DEBUG)  # everything, urllib3 included
    old = TokenStore().find("tiktok-shop")
    new = loopauth.refresh("tiktok-shop", config=str(cfg))
    get_authorized_shops(config=str(cfg))
    assert "api/v2/token/refresh" in caplog.text  # urllib3 did log the request
    for secret in (SECRET, old.refresh_token, new.refresh_token, new.access_token):
        assert secret not in caplog.text


def test_repeated_parameters_are_refused_not_guessed(cfg: Path) -> None:
    from loopauth.errors import ProviderError
    from loopauth.plugins.tiktok_shop import shop_session

    assert shop_login(cfg).returncode == 0
    os.environ["TIKTOK_APP_SECRET"] = SECRET
    try:
        api = shop_session(config=str(cfg))
        with pytest.raises(ProviderError, match="'ids' is repeated"):
            api.get("/authorization/202309/shops", params={"ids": ["1", "2"]})
        assert api.get("/authorization/202309/shops", params={"empty": ""}).json()["code"] == 0
    finally:
        del os.environ["TIKTOK_APP_SECRET"]


def test_auth_retries_once_on_105002_and_ignores_proxies_for_loopback(
    cfg: Path, tiktok: TikTokShopEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopauth.plugins.tiktok_shop import shop_session

    assert shop_login(cfg).returncode == 0
    monkeypatch.setenv("TIKTOK_APP_SECRET", SECRET)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    tiktok.expire_access_tokens()
    resp = shop_session(config=str(cfg)).get("/authorization/202309/shops")
    assert resp.json()["code"] == 0 and len(resp.history) == 1
    assert tiktok.token_calls[-1] == "/api/v2/token/refresh"


def test_a_refresh_for_another_account_is_refused(tmp_path: Path, port: int) -> None:
    from loopauth.config import parse
    from loopauth.plugins.tiktok_shop.auth import parse_token_response

    provider = parse(
        "providers:\n  s:\n    plugin: tiktok_shop\n    client_id: k\n"
        "    client_secret: s\n    service_id: '7301'\n"
    ).select("s")
    data = {
        "access_token": "a",
        "refresh_token": "r",
        "access_token_expire_in": 1722342011,
        "refresh_token_expire_in": 4841467787,
        "open_id": "one",
    }
    first = parse_token_response(
        provider=provider, response={"code": 0, "data": data}, previous=None
    )
    other = {**data, "open_id": "two"}
    with pytest.raises(Exception, match="answered for another account"):
        parse_token_response(provider=provider, response={"code": 0, "data": other}, previous=first)
    no_refresh = {k: v for k, v in data.items() if not k.startswith("refresh")}
    kept = parse_token_response(
        provider=provider, response={"code": 0, "data": no_refresh}, previous=first
    )
    assert kept.refresh_token == "r" and kept.refresh_expires_at == 4841467787


def test_token_output_keeps_tiktoks_key_order(cfg: Path, tmp_path: Path) -> None:
    assert shop_login(cfg).returncode == 0
    seed = tmp_path / "seed.json"
    assert cli("--config", str(cfg), "token", "--output", str(seed), env=ENV).returncode == 0
    assert list(json.loads(seed.read_text())) == ["code", "message", "data", "request_id"]
