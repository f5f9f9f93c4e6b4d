"""loopauth's own suite: each test in a home of its own (loopauth.testing), and Chromium."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tiktok_app import KEY, SERVICE, make_emulator

from loopauth.emulator import OAuthEmulator
from loopauth.plugins.tiktok_shop.emulator import TikTokShopEmulator, tiktok_config
from loopauth.testing import free_port, require_program, write_config


@pytest.fixture(autouse=True)
def isolated(loopauth_home: Path) -> Path:
    """Every test gets its own tokens, config folder and working folder."""
    return loopauth_home


@pytest.fixture
def emulator(oauth_emulator: OAuthEmulator) -> OAuthEmulator:
    """A standard OAuth2 / OpenID emulator on loopback."""
    return oauth_emulator


@pytest.fixture
def config(tmp_path: Path, emulator: OAuthEmulator) -> Path:
    """A providers.yaml with the emulator as its only provider."""
    return write_config(
        tmp_path / "providers.yaml",
        f"""
        providers:
          emu:
            plugin: oauth2
            issuer: {emulator.url}
            client_id: loopauth-demo
            scope: openid profile email
    """,
    )


@pytest.fixture
def port() -> int:
    """A free loopback port for a fixed redirect URI (TikTok's is registered with its port)."""
    return free_port()


@pytest.fixture
def tiktok(port: int) -> Iterator[TikTokShopEmulator]:
    """The TikTok Shop emulator, knowing the test app (tests/tiktok_app.py)."""
    with make_emulator(port) as emu:
        yield emu


@pytest.fixture
def shop_and_emu(
    tmp_path: Path, tiktok: TikTokShopEmulator, emulator: OAuthEmulator, port: int
) -> Path:
    """TikTok Shop (the default) and a standard provider `emu`, each pointing at its emulator."""
    extra = f"""\
  emu:
    plugin: oauth2
    issuer: {emulator.url}
    client_id: loopauth-demo
    scope: openid profile email
"""
    return tiktok_config(
        tmp_path / "providers.yaml",
        tiktok.url,
        port,
        client_id=KEY,
        service_id=SERVICE,
        extra=extra,
    )


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium, for the real-browser tests."""
    return require_program(
        os.environ.get("LOOPAUTH_CHROMIUM", "/usr/bin/chromium"),
        "apt-get install chromium; .ci/run installs it",
    )
