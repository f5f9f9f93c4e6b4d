"""loopauth's own suite: each test in a home of its own (loopauth.testing), and Chromium."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopauth.emulator import OAuthEmulator
from loopauth.testing import require_program, write_config


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


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium, for the real-browser tests."""
    return require_program(
        os.environ.get("LOOPAUTH_CHROMIUM", "/usr/bin/chromium"),
        "apt-get install chromium; .ci/run installs it",
    )
