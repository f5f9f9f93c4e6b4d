"""Everyday CLI: all of providers.yaml's errors at once, exit codes, secrets only when sent."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from tiktok_app import SECRET

from loopauth.emulator import OAuthEmulator
from loopauth.testing import cli, login, write_config


def test_every_error_in_providers_yaml_is_reported_in_one_run(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "providers.yaml",
        """
        defualt: emu
        providers:
          emu:
            issuer: https://a.example
            client_id: x
            scopes: openid
            timeout: soon
            client_secret: ${UNSET_SECRET_FOR_TEST}
          other:
            plugin: nope
    """,
    )
    out = cli("--config", str(cfg), "providers")
    assert out.returncode == 2
    text = out.stderr
    for expected in (
        f"{cfg}:1: defualt: unknown top-level key (did you mean 'default'?)",
        f"{cfg}:6: providers.emu.scopes: unknown setting for plugin oauth2 (did you mean 'scope'?)",
        f"{cfg}:7: providers.emu.timeout: must be a number",
        f"{cfg}:8: providers.emu.client_secret: environment variable UNSET_SECRET_FOR_TEST",
        f"{cfg}:10: providers.other.plugin: unknown plugin 'nope'",
    ):
        assert expected in text, text
    assert "5 problems" in text and "Traceback" not in text


def test_a_providers_problems_come_together_when_it_is_used(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "providers.yaml",
        """
        providers:
          emu:
            issuer: https://a.example
            client_id: x
            scopes: openid
            timeout: soon
    """,
    )
    out = cli("--config", str(cfg), "token", "emu")
    assert out.returncode == 2
    assert "2 problems" in out.stderr
    assert ":5: providers.emu.scopes" in out.stderr and ":6: providers.emu.timeout" in out.stderr


@pytest.fixture
def good_and_broken(tmp_path: Path, emulator: OAuthEmulator) -> Path:
    return write_config(
        tmp_path / "providers.yaml",
        f"""
        default: emu
        providers:
          emu:
            issuer: {emulator.url}
            client_id: loopauth-demo
            scope: openid profile email
          bad:
            plugin: oauth2
            issuer: {emulator.url}
            timeout: -1
    """,
    )


def test_a_broken_provider_counts_only_when_asked_for_or_when_none_is_named(
    good_and_broken: Path,
) -> None:
    assert login("--config", str(good_and_broken), "login", "emu").returncode == 0
    cases = {
        ("status", "emu"): 0,
        ("status", "bad"): 2,
        ("status",): 2,
        ("providers", "emu"): 0,
        ("providers", "bad"): 2,
        ("providers",): 2,
        ("token", "emu"): 0,
        ("token", "bad"): 2,
    }
    for args, expected in cases.items():
        text = cli("--config", str(good_and_broken), *args)
        as_json = cli("--config", str(good_and_broken), *args, "--json")
        assert text.returncode == expected, (args, text.stderr)
        assert as_json.returncode == expected, (args, "--json", as_json.stderr)
        if expected == 0:
            json.loads(as_json.stdout) if args[0] != "token" else None
    # Twice more: the second run of each light command answers from the caches.
    for args, expected in cases.items():
        assert cli("--config", str(good_and_broken), *args, "--json").returncode == expected


def test_exit_codes_agree_between_text_and_json(
    tmp_path: Path, config: Path, isolated: Path
) -> None:
    """Every command with --json exits as its text form does, in good and bad states."""
    commands = [("status",), ("providers",), ("token",), ("refresh", "--all")]

    def codes() -> list[tuple[int, int]]:
        return [
            (
                cli("--config", str(config), *args).returncode,
                cli("--config", str(config), *args, "--json").returncode,
            )
            for args in commands
        ]

    none_yet = codes()
    assert all(a == b for a, b in none_yet), none_yet
    assert none_yet[2] == (6, 6)  # token: not logged in
    assert login("--config", str(config), "login").returncode == 0
    logged_in = codes()
    assert logged_in == [(0, 0)] * 4, logged_in
    [path] = list((isolated / "tokens").rglob("*.json"))
    path.write_text("{ damaged")
    damaged = codes()
    assert all(a == b for a, b in damaged), damaged
    assert damaged[0] == (6, 6)


def test_status_switch_and_logout_need_no_secrets(
    tmp_path: Path, emulator: OAuthEmulator, isolated: Path
) -> None:
    cfg = write_config(
        tmp_path / "providers.yaml",
        f"""
        providers:
          conf:
            issuer: {emulator.url}
            client_id: demo-confidential
            client_secret: ${{CONF_SECRET}}
            scope: openid email
    """,
    )
    env = {"CONF_SECRET": "demo-secret"}
    assert login("--config", str(cfg), "login", env=env).returncode == 0
    assert "CONF_SECRET" not in os.environ
    status = cli("--config", str(cfg), "status")
    assert status.returncode == 0, status.stderr
    assert "ada@example.test" in status.stdout
    assert "conf: to log in or refresh, set CONF_SECRET" in status.stdout
    assert cli("--config", str(cfg), "switch", "conf", "user-1").returncode == 0
    token = cli("--config", str(cfg), "token")  # a refresh would send it: asks for it
    assert token.returncode == 2 and "CONF_SECRET is not set" in token.stderr
    # Revoking sends the secret: without it, logout says so and keeps the token...
    refused = cli("--config", str(cfg), "logout")
    assert refused.returncode == 2
    assert "revoking the token needs CONF_SECRET" in refused.stderr
    assert "--local" in refused.stderr
    assert list((isolated / "tokens").rglob("*.json"))
    assert emulator.revocation_calls == []
    # ...and --local deletes it here, sending nothing.
    local = cli("--config", str(cfg), "logout", "--local")
    assert local.returncode == 0, local.stderr
    assert not [p for p in (isolated / "tokens").rglob("*.json") if "conf" in str(p)]
    assert emulator.revocation_calls == []


def test_tiktok_status_and_logout_without_the_app_secret(
    shop_and_emu: Path, isolated: Path
) -> None:
    assert (
        login(
            "--config", str(shop_and_emu), "login", "tiktok-shop", env={"TIKTOK_APP_SECRET": SECRET}
        ).returncode
        == 0
    )
    status = cli("--config", str(shop_and_emu), "status", "tiktok-shop")
    assert status.returncode == 0, status.stderr
    assert "set TIKTOK_APP_SECRET" in status.stdout
    out = cli("--config", str(shop_and_emu), "logout", "tiktok-shop")
    assert out.returncode == 0, out.stderr  # TikTok revokes nothing: nothing is sent
    assert "Logged out of tiktok-shop" in out.stderr


def test_login_scope_overrides_the_configured_scopes_once(
    config: Path, isolated: Path, emulator: OAuthEmulator
) -> None:
    result = login("--config", str(config), "login", "--scope", "openid", "--scope", "email")
    assert result.returncode == 0, result.stderr
    assert result.url is not None
    assert parse_qs(urlsplit(result.url).query)["scope"] == ["openid email"]
    [path] = list((isolated / "tokens").rglob("*.json"))
    assert json.loads(path.read_text())["scopes"] == ["openid", "email"]
    again = login("--config", str(config), "login")  # the configured ones otherwise
    assert again.url is not None
    assert parse_qs(urlsplit(again.url).query)["scope"] == ["openid profile email"]
    empty = cli("--config", str(config), "login", "--no-browser", "--scope", " ")
    assert empty.returncode == 2 and "--scope needs at least one scope" in empty.stderr


def test_a_device_only_provider_points_browser_logins_to_device(
    tmp_path: Path, emulator: OAuthEmulator, isolated: Path
) -> None:
    cfg = write_config(
        tmp_path / "providers.yaml",
        f"""
        providers:
          tv:
            client_id: loopauth-demo
            token_endpoint: {emulator.url}/token
            device_authorization_endpoint: {emulator.url}/device_authorization
    """,
    )
    out = cli("--config", str(cfg), "login", "--no-browser")
    assert out.returncode == 2
    assert "only a device endpoint: run loopauth login tv --device" in out.stderr
    assert cli("--config", str(cfg), "providers").returncode == 0


def test_a_provider_lacking_variables_still_shows_its_other_errors(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "providers.yaml",
        """
        providers:
          a:
            client_id: ${UNSET_ID_FOR_TEST}
            redirect_uri: http://127.0.0.1:8400/callback
            redirect_port_range: 8400-8409
    """,
    )
    out = cli("--config", str(cfg), "providers")
    assert out.returncode == 2, out.stdout
    for expected in (
        "UNSET_ID_FOR_TEST is not set",
        "providers.a.token_endpoint: is required unless `issuer` is set",
        "providers.a.redirect_port_range: needs a redirect_uri without a port",
    ):
        assert expected in out.stdout, out.stdout


def test_refresh_all_with_the_repo_example_and_no_tiktok_tokens_is_fine(
    emulator: OAuthEmulator,
) -> None:
    root = Path(__file__).resolve().parents[1]
    env = {"LOOPAUTH_EMULATOR_URL": emulator.url}
    for args in (("refresh", "--all"), ("refresh", "--all", "--json")):
        out = cli("--config", str(root / "providers.yaml"), *args, env=env)
        assert out.returncode == 0, out.stderr


def test_a_logout_of_a_provider_lacking_its_token_endpoint_sends_nothing(
    tmp_path: Path, emulator: OAuthEmulator, isolated: Path
) -> None:
    text = f"""
        providers:
          t:
            client_id: loopauth-demo
            authorization_endpoint: {emulator.url}/authorize
            token_endpoint: ${{TE_FOR_TEST}}
    """
    cfg = write_config(tmp_path / "providers.yaml", text)
    env = {"TE_FOR_TEST": f"{emulator.url}/token"}
    assert login("--config", str(cfg), "login", env=env).returncode == 0
    out = cli("--config", str(cfg), "logout")
    assert out.returncode == 0, out.stderr
    assert "offers no revocation endpoint" in out.stderr
    assert emulator.revocation_calls == []


def test_settings_tiktok_shop_cannot_honour_are_refused(shop_and_emu: Path, tmp_path: Path) -> None:
    out = cli(
        "--config",
        str(shop_and_emu),
        "login",
        "tiktok-shop",
        "--no-browser",
        "--scope",
        "seller.order.info",
        env={"TIKTOK_APP_SECRET": SECRET},
    )
    assert out.returncode == 2
    assert "sends no scopes when logging in" in out.stderr
    text = shop_and_emu.read_text().replace(
        "    plugin: tiktok_shop\n", "    plugin: tiktok_shop\n    redirect_port_range: 8400-8409\n"
    )
    ranged = write_config(tmp_path / "ranged.yaml", text)
    out = cli(
        "--config", str(ranged), "providers", "tiktok-shop", env={"TIKTOK_APP_SECRET": SECRET}
    )
    assert out.returncode == 2
    assert "sends the provider no redirect_uri" in out.stdout


def test_a_spaced_port_range_is_read_as_one(tmp_path: Path) -> None:
    from loopauth.config import parse

    config = parse(
        "providers:\n  a:\n    issuer: https://a.example\n    client_id: x\n"
        "    redirect_uri: http://127.0.0.1/cb\n    redirect_port_range: 8400 - 8402\n"
    )
    assert config.select("a").get("redirect_port_range") == [8400, 8401, 8402]
