"""`loopauth logout` revokes the token at the provider (RFC 7009) where it can, through the CLI."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tiktok_app import KEY, SECRET, SERVICE

from loopauth.emulator import OAuthEmulator
from loopauth.plugins.tiktok_shop.emulator import SELLER_OPEN_ID, TikTokShopEmulator, tiktok_config
from loopauth.store import TokenStore
from loopauth.testing import cli, free_port, login, write_config
from loopauth.token import Token


def provider_config(path: Path, emulator: OAuthEmulator, extra: str = "") -> Path:
    return write_config(
        path,
        f"""
        providers:
          emu:
            plugin: oauth2
            issuer: {emulator.url}
            client_id: loopauth-demo
            scope: openid email
            {extra}
        """,
    )


def run(cfg: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return cli("--config", str(cfg), *args, **kwargs)


def logged_in(cfg: Path, provider: str = "emu", account: str = "user-1") -> Token:
    result = login("--config", str(cfg), "login", provider)
    assert result.returncode == 0, result.stderr
    return TokenStore().read(provider, account)


def is_stored(provider: str = "emu", account: str = "user-1") -> bool:
    return (
        account in TokenStore().accounts(provider)
        and Path(TokenStore().path_for(provider, account)).exists()
    )


def no_secrets(result: subprocess.CompletedProcess[str], token: Token) -> None:
    output = result.stdout + result.stderr
    assert token.access_token not in output
    assert token.refresh_token and token.refresh_token not in output
    assert SECRET not in output


def refresh_with(emulator: OAuthEmulator, refresh_token: str) -> tuple[int, dict[str, Any]]:
    """Use a refresh token at the emulator directly, as anyone holding it could."""
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": "loopauth-demo",
    }
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{emulator.url}/token", urllib.parse.urlencode(form).encode()) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_logout_revokes_the_refresh_token(
    config: Path, emulator: OAuthEmulator, isolated: Path
) -> None:
    token = logged_in(config)
    assert refresh_with(emulator, token.refresh_token or "")[0] == 200  # it works before
    result = run(config, "logout")
    assert result.returncode == 0, result.stderr
    assert (
        "Logged out of emu (ada@example.test): revoked the token at the provider" in result.stderr
    )
    assert emulator.revoked == ["refresh_token"]
    assert emulator.revocation_calls == [
        {"client_id": "loopauth-demo", "token_type_hint": "refresh_token"}
    ]
    status, body = refresh_with(emulator, token.refresh_token or "")
    assert (status, body["error"]) == (400, "invalid_grant")
    assert not is_stored()
    assert list((isolated / "tokens" / "emu").glob("*.json")) == []
    no_secrets(result, token)


def test_local_sends_nothing(config: Path, emulator: OAuthEmulator) -> None:
    token = logged_in(config)
    requests_before = len(emulator.log)
    result = run(config, "logout", "--local")
    assert result.returncode == 0, result.stderr
    assert "removed the token locally (--local: not revoked at the provider)" in result.stderr
    assert len(emulator.log) == requests_before  # not even discovery
    assert emulator.revocation_calls == [] and not is_stored()
    assert refresh_with(emulator, token.refresh_token or "")[0] == 200  # still valid there
    no_secrets(result, token)


def test_a_failing_revocation_keeps_the_token_unless_forced(tmp_path: Path) -> None:
    with OAuthEmulator(fail_revocation=503) as emulator:
        cfg = provider_config(tmp_path / "p.yaml", emulator)
        token = logged_in(cfg)
        result = run(cfg, "logout")
        assert result.returncode == 5, result.stderr
        assert "HTTP 503" in result.stderr and "the token is still stored" in result.stderr
        assert "loopauth logout emu --account user-1 --force" in result.stderr
        assert "--local" in result.stderr
        assert len(emulator.revocation_calls) == 1
        assert is_stored()
        assert run(cfg, "token").stdout.strip() == token.access_token  # still usable
        no_secrets(result, token)

        forced = run(cfg, "logout", "--force")
        assert forced.returncode == 0, forced.stderr
        assert "could not revoke the token" in forced.stderr  # the warning
        assert "removed the token locally only (--force: revocation failed)" in forced.stderr
        assert len(emulator.revocation_calls) == 2
        assert not is_stored()
        no_secrets(forced, token)


def test_a_provider_without_revocation(tmp_path: Path) -> None:
    with OAuthEmulator(revocation=False) as emulator:
        cfg = provider_config(tmp_path / "p.yaml", emulator)
        token = logged_in(cfg)
        result = run(cfg, "logout")
        assert result.returncode == 0, result.stderr
        assert "removed the token locally only (emu offers no revocation endpoint)" in result.stderr
        assert [path for _, path in emulator.log if path == "/revoke"] == []
        assert not is_stored()
        no_secrets(result, token)


def test_tiktok_shop_has_no_revocation_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIKTOK_APP_SECRET", SECRET)
    port = free_port()
    with TikTokShopEmulator(
        app_key=KEY, app_secret=SECRET, service_id=SERVICE, redirect_url=f"http://localhost:{port}/"
    ) as tiktok:
        cfg = tiktok_config(
            tmp_path / "p.yaml", tiktok.url, port, client_id=KEY, service_id=SERVICE
        )
        token = logged_in(cfg, "tiktok-shop", SELLER_OPEN_ID)
        requests_before = len(tiktok.log)
        result = run(cfg, "logout")
        assert result.returncode == 0, result.stderr
        assert "Logged out of tiktok-shop (Jjj test shop)" in result.stderr
        assert "removed the token locally only" in result.stderr
        assert "offers no revocation endpoint" in result.stderr
        assert len(tiktok.log) == requests_before  # nothing sent to TikTok Shop
        assert not is_stored("tiktok-shop", SELLER_OPEN_ID)
        no_secrets(result, token)


@pytest.fixture
def elsewhere() -> Iterator[OAuthEmulator]:
    with OAuthEmulator() as other:
        yield other


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_a_revocation_endpoint_on_another_server_gets_nothing(
    tmp_path: Path, emulator: OAuthEmulator, elsewhere: OAuthEmulator, host: str
) -> None:
    # A providers.yaml (edited, or planted) that sends revocations to a server that did not
    # issue the token: by host name, or on the same address but another port (another origin).
    endpoint = f"http://{host}:{elsewhere.port}/revoke"
    cfg = provider_config(tmp_path / "p.yaml", emulator, f"revocation_endpoint: {endpoint}")
    token = logged_in(cfg)
    result = run(cfg, "logout")
    assert result.returncode == 5, result.stderr
    assert "not on the server that issued the token" in result.stderr
    assert "loopauth sent nothing" in result.stderr
    assert elsewhere.log == [] and emulator.revocation_calls == []
    assert is_stored()
    no_secrets(result, token)

    forced = run(cfg, "logout", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "removed the token locally only (--force: revocation failed)" in forced.stderr
    assert elsewhere.log == [] and emulator.revocation_calls == []
    assert not is_stored()
    no_secrets(forced, token)


def test_logout_of_one_account_among_several(config: Path, emulator: OAuthEmulator) -> None:
    ada = logged_in(config)
    emulator.users = [emulator.users[1]]
    grace = logged_in(config, account="user-2")
    ambiguous = run(config, "logout")
    assert ambiguous.returncode == 2 and "emu has 2 accounts" in ambiguous.stderr
    assert emulator.revocation_calls == []
    result = run(config, "logout", "--account", "GRACE@example.test")
    assert result.returncode == 0, result.stderr
    assert "Logged out of emu (grace@example.test): revoked" in result.stderr
    assert not is_stored(account="user-2") and is_stored(account="user-1")
    assert refresh_with(emulator, grace.refresh_token or "")[0] == 400
    assert refresh_with(emulator, ada.refresh_token or "")[0] == 200
    assert run(config, "token").stdout.strip() == ada.access_token
    no_secrets(result, grace)
