"""Scopes actually granted: `required_scopes` refuses a grant without them; narrower warns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiktok_app import KEY, SECRET, SERVICE

from loopauth.emulator import OAuthEmulator
from loopauth.plugins.tiktok_shop.emulator import (
    CREATOR_AUTHORIZE_PATH,
    TikTokShopEmulator,
    tiktok_config,
)
from loopauth.testing import cli, login, write_config


@pytest.fixture
def stingy() -> OAuthEmulator:
    """An emulator whose user unticks `email` on the consent page."""
    with OAuthEmulator(withheld_scopes=frozenset({"email"})) as emu:
        yield emu


def provider_config(tmp_path: Path, emulator: OAuthEmulator, extra: str = "") -> Path:
    text = (
        "providers:\n  emu:\n"
        f"    issuer: {emulator.url}\n    client_id: loopauth-demo\n"
        "    scope: openid profile email\n"
    )
    return write_config(tmp_path / "providers.yaml", text + extra)


def stored(home: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted((home / "tokens").rglob("*.json"))]


def test_a_grant_without_a_required_scope_is_refused_and_nothing_is_stored(
    tmp_path: Path, stingy: OAuthEmulator, isolated: Path
) -> None:
    cfg = provider_config(tmp_path, stingy, "    required_scopes: [openid, email]\n")
    result = login("--config", str(cfg), "login")
    assert result.returncode == 3, result.stderr
    assert "not granted the required scope(s) email (required_scopes)" in result.stderr
    assert "nothing was stored" in result.stderr
    assert stored(isolated) == []
    assert result.page is not None and result.page.status == 403  # the browser is told too


def test_a_narrower_grant_is_stored_with_a_warning_naming_what_is_missing(
    tmp_path: Path, stingy: OAuthEmulator, isolated: Path
) -> None:
    cfg = provider_config(tmp_path, stingy)
    result = login("--config", str(cfg), "login")
    assert result.returncode == 0, result.stderr
    assert "granted fewer scopes than asked for: without email" in result.stderr
    [token] = stored(isolated)
    assert token["scopes"] == ["openid", "profile"]


def test_a_grant_narrower_than_the_stored_one_warns(
    tmp_path: Path, emulator: OAuthEmulator, isolated: Path
) -> None:
    cfg = provider_config(tmp_path, emulator)
    assert login("--config", str(cfg), "login").returncode == 0
    again = login("--config", str(cfg), "login", "--scope", "openid profile")
    assert again.returncode == 0
    assert "fewer scopes than held before: without email" in again.stderr
    full = login("--config", str(cfg), "login")
    assert full.returncode == 0 and "fewer scopes" not in full.stderr


def test_the_device_flow_checks_required_scopes_too(tmp_path: Path, isolated: Path) -> None:
    from loopauth.config import parse
    from loopauth.device import DeviceFlow
    from loopauth.emulator import browse
    from loopauth.errors import AccessDenied
    from loopauth.flow import State

    with OAuthEmulator(withheld_scopes=frozenset({"email"}), device_interval=1) as emu:
        provider = parse(
            f"providers:\n  emu:\n    issuer: {emu.url}\n    client_id: loopauth-demo\n"
            "    scope: openid email\n    required_scopes: email\n"
        ).select("emu")
        flow = DeviceFlow(provider)
        info = flow.start()
        browse(info.verification_uri_complete or info.verification_uri)
        assert flow.wait(20) is State.DENIED
        with pytest.raises(AccessDenied, match="required scope"):
            flow.result()
    assert stored(isolated) == []


def test_required_scopes_must_be_asked_for(tmp_path: Path, emulator: OAuthEmulator) -> None:
    cfg = provider_config(tmp_path, emulator, "    required_scopes: offline_access\n")
    out = cli("--config", str(cfg), "token")
    assert out.returncode == 2
    assert "required_scopes: offline_access is not in `scope`" in out.stderr


def test_a_tiktok_creator_who_unticks_a_scope_is_warned_or_refused(
    tmp_path: Path, tiktok: TikTokShopEmulator, port: int, isolated: Path
) -> None:
    """TikTok sends no scopes: narrower is judged against the account's stored token."""
    cfg = tiktok_config(
        tmp_path / "providers.yaml",
        tiktok.url,
        port,
        client_id=KEY,
        service_id=SERVICE,
        authorize_path=CREATOR_AUTHORIZE_PATH,
        extra="    user_type: creator\n",
    )
    env = {"TIKTOK_APP_SECRET": SECRET}
    first = login("--config", str(cfg), "login", env=env)
    assert first.returncode == 0, first.stderr
    assert "fewer scopes" not in first.stderr
    tiktok.creator_scopes_denied = {"creator.showcase.manage"}
    again = login("--config", str(cfg), "login", env=env)
    assert again.returncode == 0, again.stderr
    assert "held before: without creator.showcase.manage" in again.stderr
    [token] = stored(isolated)
    assert "creator.showcase.manage" not in token["scopes"]
    strict = tmp_path / "strict.yaml"
    strict.write_text(cfg.read_text() + "    required_scopes: creator.showcase.manage\n")
    refused = login("--config", str(strict), "login", env=env)
    assert refused.returncode == 3, refused.stderr
    assert "required scope(s) creator.showcase.manage" in refused.stderr
    assert stored(isolated) == [token]  # the stored token was kept as it was


@pytest.mark.parametrize(
    ("asked", "answered"),
    [
        ("read:user user:email", "read:user,user:email"),  # GitHub separates with commas
        ("read:user user:email", "user:email read:user"),  # any order
        (
            "openid email profile",  # Google as a plain oauth2 provider: short scopes as URLs
            "openid https://www.googleapis.com/auth/userinfo.email "
            "https://www.googleapis.com/auth/userinfo.profile",
        ),
    ],
)
def test_how_real_providers_write_granted_scopes_is_understood(
    asked: str, answered: str, caplog: pytest.LogCaptureFixture, isolated: Path
) -> None:
    from urllib.parse import urlencode

    from loopauth.config import parse
    from loopauth.flow import Flow
    from loopauth.oauth import standard_token

    provider = parse(
        "providers:\n  p:\n    client_id: x\n"
        "    authorization_endpoint: https://p.example/authorize\n"
        f"    token_endpoint: https://p.example/token\n    scope: {asked}\n"
        f"    required_scopes: {asked}\n"
    ).select("p")
    token = standard_token(provider, {"access_token": "a", "scope": answered}, None)
    flow = Flow(provider)
    flow.authorization_url = "https://p.example/authorize?" + urlencode({"scope": asked})
    with caplog.at_level("WARNING", logger="loopauth"):
        flow._check_scopes(token)  # no AccessDenied
    assert "fewer scopes" not in caplog.text


def test_a_tiktok_creators_first_partial_grant_warns_against_the_configured_scope(
    tmp_path: Path, tiktok: TikTokShopEmulator, port: int, isolated: Path
) -> None:
    cfg = tiktok_config(
        tmp_path / "providers.yaml",
        tiktok.url,
        port,
        client_id=KEY,
        service_id=SERVICE,
        authorize_path=CREATOR_AUTHORIZE_PATH,
        extra="    user_type: creator\n    scope: creator.affiliate.info creator.showcase.manage\n",
    )
    tiktok.creator_scopes_denied = {"creator.showcase.manage"}
    first = login("--config", str(cfg), "login", env={"TIKTOK_APP_SECRET": SECRET})
    assert first.returncode == 0, first.stderr
    assert "fewer scopes than asked for: without creator.showcase.manage" in first.stderr
