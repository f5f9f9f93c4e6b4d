"""Shared fixtures: an isolated home per test, the emulator, and a CLI driver that plays the user."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from loopauth.emulator import BrowseResult, OAuthEmulator, browse

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every per-user path at the test's own directory."""
    home = tmp_path / "home"
    monkeypatch.setenv("LOOPAUTH_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.delenv("LOOPAUTH_CONFIG", raising=False)
    monkeypatch.delenv("LOOPAUTH_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("BROWSER", raising=False)
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def emulator() -> Iterator[OAuthEmulator]:
    """A standard OAuth2 / OpenID emulator on loopback."""
    with OAuthEmulator() as emu:
        yield emu


def free_port() -> int:
    """Return a loopback port that is free right now (for fixed redirect URIs in tests)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, text: str) -> Path:
    """Write a providers.yaml from an indented block."""
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def tiktok_config(
    path: Path,
    emulator_url: str,
    port: int,
    *,
    name: str = "tiktok-shop",
    client_id: str = "demo-app-key",
    service_id: str = "7301234567890123456",
    secret_var: str = "TIKTOK_APP_SECRET",
    extra: str = "",
) -> Path:
    """Write a providers.yaml with a tiktok_shop provider pointed at a TikTok Shop emulator."""
    write_config(
        path,
        f"""
        default: {name}
        providers:
          {name}:
            plugin: tiktok_shop
            client_id: {client_id}
            client_secret: ${{{secret_var}}}
            service_id: "{service_id}"
            redirect_uri: http://localhost:{port}/
            authorization_endpoint: {emulator_url}/open/authorize
            token_endpoint: {emulator_url}/api/v2/token/get
            refresh_endpoint: {emulator_url}/api/v2/token/refresh
            api_base_url: {emulator_url}
    """,
    )
    path.write_text(path.read_text() + extra)
    return path


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


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `loopauth ARGS` in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "loopauth", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        input=input,
    )


@dataclass
class Login:
    """What a scripted `loopauth login` did."""

    returncode: int
    stdout: str
    stderr: str
    url: str | None
    page: BrowseResult | None
    lines: list[str] = field(default_factory=list)


def login(
    *args: str,
    decision: str | None = "allow",
    before: object = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> Login:
    """Run `loopauth ... login --no-browser`, and play the user on the URL it prints.

    `before(url)` runs first (for stray or forged requests); decision None means nobody answers.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopauth", *args, "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stderr is not None and proc.stdout is not None
    lines: list[str] = []
    url = None
    result: dict[str, BrowseResult] = {}
    worker = None
    for line in proc.stderr:
        lines.append(line)
        if url is None and line.startswith("http"):
            url = line.strip()
            if callable(before):
                before(url)
            if decision is not None:
                worker = threading.Thread(
                    target=lambda: result.setdefault("page", browse(url, decision=decision))
                )
                worker.start()
    stdout = proc.stdout.read()
    proc.wait(timeout)
    if worker is not None:
        worker.join(timeout)
    return Login(proc.returncode, stdout, "".join(lines), url, result.get("page"), lines)


def require_program(path: str, why: str) -> str:
    """Return `path`; skip (or, with CI=true, fail) when the program is not installed."""
    if os.path.exists(path):
        return path
    message = f"{path} is not installed ({why}); .ci/run installs it"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium, for the real-browser tests."""
    return require_program(
        os.environ.get("LOOPAUTH_CHROMIUM", "/usr/bin/chromium"), "apt-get install chromium"
    )


ARTIFACTS = ROOT / "test-artifacts"
