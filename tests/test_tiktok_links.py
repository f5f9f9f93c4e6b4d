"""TikTok Shop authorization links for sellers, creators and partners, and the account kinds."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from tiktok_app import KEY, SECRET, SERVICE

from loopauth.plugins.tiktok_shop.emulator import (
    AUTHORIZE_PATH,
    CREATOR_AUTHORIZE_PATH,
    CREATOR_OPEN_ID,
    PARTNER_AUTHORIZE_PATH,
    PARTNER_OPEN_ID,
    SELLER_OPEN_ID,
    TikTokShopEmulator,
    tiktok_config,
)
from loopauth.store import TokenStore
from loopauth.testing import cli, login, write_config

ENV = {"TIKTOK_APP_SECRET": SECRET}
CREATOR_LABEL = f"creator {CREATOR_OPEN_ID[-6:]}"


def config(
    path: Path, emu: TikTokShopEmulator, port: int, page: str, extra: str = "", *, service: bool
) -> Path:
    """A providers.yaml for the emulator's `page`; `service` False leaves service_id out."""
    written = tiktok_config(
        path, emu.url, port, client_id=KEY, service_id=SERVICE, extra=extra, authorize_path=page
    )
    if not service:
        text = written.read_text().replace(f'    service_id: "{SERVICE}"\n', "")
        written.write_text(text)
    return written


def bare(tmp_path: Path, settings: str) -> Path:
    """A providers.yaml with TikTok's real hosts: only the settings under test."""
    return write_config(
        tmp_path / "real.yaml",
        "providers:\n  tiktok-shop:\n    plugin: tiktok_shop\n    client_id: the-app-key\n"
        "    client_secret: ${TIKTOK_APP_SECRET}\n" + settings,
    )


@pytest.mark.parametrize(
    ("settings", "link", "params"),
    [
        (
            "    service_id: '7301'\n    region: us\n",
            "https://services.tiktokshops.us/open/authorize",
            {"service_id": ["7301"]},
        ),
        (
            "    service_id: '7301'\n",
            "https://services.tiktokshop.com/open/authorize",
            {"service_id": ["7301"]},
        ),
        (
            "    user_type: creator\n    region: us\n",
            "https://shop.tiktok.com/alliance/creator/auth",
            {"app_key": ["the-app-key"]},
        ),
        (
            "    user_type: partner\n    service_id: '7301'\n",
            "https://partner.tiktokshop.com/open/authorize",
            {"service_id": ["7301"]},
        ),
        (
            "    user_type: partner\n    service_id: '7301'\n    region: us\n",
            "https://partner.us.tiktokshop.com/open/authorize",
            {"service_id": ["7301"]},
        ),
    ],
    ids=["seller-us", "seller-global", "creator-us", "partner-global", "partner-us"],
)
def test_login_prints_tiktoks_link_for_the_market_and_account_kind(
    tmp_path: Path, settings: str, link: str, params: dict[str, list[str]]
) -> None:
    cfg = bare(tmp_path, settings)
    out = cli("--config", str(cfg), "login", "--no-browser", "--timeout", "1", env=ENV)
    assert out.returncode == 4, out.stderr  # nobody answers: timed out, nothing stored
    [url] = [line for line in out.stderr.splitlines() if line.startswith("https://")]
    assert url.split("?")[0] == link
    query = parse_qs(urlsplit(url).query)
    assert set(query) == {*params, "state"} and query["state"][0]
    assert {k: v for k, v in query.items() if k != "state"} == params
    assert not TokenStore().list("tiktok-shop")


@pytest.mark.parametrize("user_type", ["seller", "partner"])
def test_a_seller_or_partner_config_without_service_id_is_a_config_error(
    tmp_path: Path, user_type: str
) -> None:
    cfg = bare(tmp_path, f"    user_type: {user_type}\n")
    out = cli("--config", str(cfg), "login", "--no-browser", "--timeout", "1", env=ENV)
    assert out.returncode == 2, out.stderr
    assert f"service_id: is required for user_type: {user_type}" in out.stderr
    assert "Traceback" not in out.stderr


def test_an_unknown_user_type_is_a_config_error(tmp_path: Path) -> None:
    cfg = bare(tmp_path, "    user_type: shopper\n    service_id: '7301'\n")
    out = cli("--config", str(cfg), "login", "--no-browser", "--timeout", "1", env=ENV)
    assert out.returncode == 2 and "user_type" in out.stderr and "creator" in out.stderr


@pytest.mark.parametrize(
    ("user_type", "path", "service", "sent", "open_id", "label", "number"),
    [
        # A creator's link names the app by its key and needs no service_id.
        (
            "creator",
            CREATOR_AUTHORIZE_PATH,
            False,
            {"app_key", "state"},
            CREATOR_OPEN_ID,
            CREATOR_LABEL,
            1,
        ),
        (
            "partner",
            PARTNER_AUTHORIZE_PATH,
            True,
            {"service_id", "state"},
            PARTNER_OPEN_ID,
            "Acme Partner Agency (partner)",
            3,
        ),
    ],
)
def test_creator_and_partner_logins_use_their_link_and_label_the_account(
    tmp_path: Path,
    tiktok: TikTokShopEmulator,
    port: int,
    user_type: str,
    path: str,
    service: bool,
    sent: set[str],
    open_id: str,
    label: str,
    number: int,
) -> None:
    extra = f"    user_type: {user_type}\n"
    cfg = config(tmp_path / "c.yaml", tiktok, port, path, extra, service=service)
    result = login("--config", str(cfg), "login", env=ENV)
    assert result.returncode == 0, result.stderr
    query = parse_qs(urlsplit(result.url).query)
    assert set(query) == sent
    if "app_key" in sent:
        assert query["app_key"] == [KEY]
    token = TokenStore().find("tiktok-shop")
    assert (token.account_id, token.account_label) == (open_id, label)
    assert token.extra["user_type"] == number
    status = cli("--config", str(cfg), "status", env=ENV)
    assert label in status.stdout, status.stdout
    printed = cli("--config", str(cfg), "token", "--account", label, env=ENV)
    assert printed.stdout.strip() == token.access_token, printed.stderr


def test_a_creator_account_on_a_seller_config_is_refused_and_nothing_stored(
    tmp_path: Path, tiktok: TikTokShopEmulator, port: int
) -> None:
    # The seller config is pointed at the creator page (which names the app by its key).
    cfg = config(
        tmp_path / "s.yaml",
        tiktok,
        port,
        CREATOR_AUTHORIZE_PATH,
        f"    auth_params:\n      app_key: {KEY}\n",
        service=True,
    )
    result = login("--config", str(cfg), "login", env=ENV)
    assert result.returncode == 3, result.stderr
    assert tiktok.token_calls == ["/api/v2/token/get"]
    for text in (
        "a creator account (user_type 1)",
        "set up for sellers (user_type: seller)",
        "nothing was stored",
        "Log in with a seller account, or set user_type: creator",
    ):
        assert text in result.stderr
    assert "Traceback" not in result.stderr
    assert not TokenStore().list("tiktok-shop")


def test_a_seller_account_on_a_partner_config_is_refused(
    tmp_path: Path, tiktok: TikTokShopEmulator, port: int
) -> None:
    cfg = config(
        tmp_path / "p.yaml", tiktok, port, AUTHORIZE_PATH, "    user_type: partner\n", service=True
    )
    result = login("--config", str(cfg), "login", env=ENV)
    assert result.returncode == 3, result.stderr
    assert "a seller account (user_type 0)" in result.stderr
    assert "Log in with a partner account, or set user_type: seller" in result.stderr
    assert not TokenStore().list("tiktok-shop")


def test_a_refresh_for_another_kind_of_account_keeps_the_stored_token(
    tmp_path: Path, tiktok: TikTokShopEmulator, port: int
) -> None:
    cfg = config(
        tmp_path / "c.yaml",
        tiktok,
        port,
        CREATOR_AUTHORIZE_PATH,
        "    user_type: creator\n",
        service=True,
    )
    assert login("--config", str(cfg), "login", env=ENV).returncode == 0
    path = Path(TokenStore().path_for("tiktok-shop", CREATOR_OPEN_ID))
    before = json.loads(path.read_text())
    # The same provider, now set up for sellers: its stored creator token must not be replaced.
    cfg.write_text(cfg.read_text().replace("user_type: creator", "user_type: seller"))
    out = cli("--config", str(cfg), "refresh", env=ENV)
    assert out.returncode == 3, out.stderr
    assert "a creator account (user_type 1)" in out.stderr
    assert "the stored token was kept" in out.stderr
    assert tiktok.token_calls == ["/api/v2/token/get", "/api/v2/token/refresh"]
    assert json.loads(path.read_text()) == before


def test_seller_login_keeps_the_seller_name_as_label(cfg_seller: Path) -> None:
    result = login("--config", str(cfg_seller), "login", env=ENV)
    assert result.returncode == 0, result.stderr
    token = TokenStore().find("tiktok-shop")
    assert (token.account_id, token.account_label) == (SELLER_OPEN_ID, "Jjj test shop")


@pytest.fixture
def cfg_seller(tmp_path: Path, tiktok: TikTokShopEmulator, port: int) -> Path:
    return config(tmp_path / "s.yaml", tiktok, port, AUTHORIZE_PATH, service=True)
