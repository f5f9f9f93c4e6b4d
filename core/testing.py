"""`loopauth.testing`: pytest fixtures and helpers for plugin authors, and loopauth's own tests.

Installing loopauth registers this module as a pytest plugin (the `pytest11` entry point), so
its fixtures are there in any test suite; none of them is autouse, so nothing happens unless a
test asks for it. A provider plugin's test typically takes `loopauth_home` (tokens and config
in the test's own folders), starts its emulator with `start_emulator`, writes a providers.yaml
with `write_config` and logs in through the real CLI with `login`, which plays the user.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .emulator import BrowseResult, EmulatorServer, OAuthEmulator

__all__ = [
    "DeviceLogin",
    "Login",
    "cli",
    "device_login",
    "free_port",
    "login",
    "loopauth_home",
    "oauth_emulator",
    "post_form",
    "require_program",
    "start_emulator",
    "write_config",
]


def write_config(path: Path, text: str) -> Path:
    """Write a providers.yaml from an indented block; return its path."""
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def free_port() -> int:
    """Return a loopback port that is free right now (for fixed redirect URIs in tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    before: Callable[[str], object] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> Login:
    """Run `loopauth ARGS --no-browser` and play the user on the URL it prints.

    `before(url)` runs first (for stray or forged requests); decision None means nobody answers.
    """
    from .emulator import browse

    proc = subprocess.Popen(
        [sys.executable, "-m", "loopauth", *args, "--no-browser"],
        stdin=subprocess.DEVNULL,  # not the terminal pytest runs in: no paste prompt
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
            if before is not None:
                before(url)
            if decision is not None:
                worker = threading.Thread(
                    target=lambda u=url: result.setdefault("page", browse(u, decision=decision))
                )
                worker.start()
    stdout = proc.stdout.read()
    proc.wait(timeout)
    if worker is not None:
        worker.join(timeout)
    return Login(proc.returncode, stdout, "".join(lines), url, result.get("page"), lines)


class DeviceLogin:
    """`loopauth ARGS` (a `login --device`) in a subprocess, its stderr read as it comes.

    `shown()` waits for the address and the code the user is told to enter; the test then
    plays the user on the emulator's page, and `finish()` returns how the login ended.
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "loopauth", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self._code = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if line.startswith("and enter the code: "):
                self._code.set()
        self._code.set()  # ended without a code: shown() says so

    def shown(self, timeout: float = 20) -> tuple[str, str]:
        """Return the verification address and the user code the CLI showed."""
        import re

        assert self._code.wait(timeout), "".join(self.lines)
        text = "".join(self.lines)
        found = re.search(r"^(http\S+)\nand enter the code: (\S+)$", text, re.M)
        assert found is not None, text
        return found.group(1), found.group(2)

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        """Wait for the login to end; return its exit code and everything it said."""
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code, "".join(self.lines)

    def close(self) -> None:
        """Kill the login if it still runs, and close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._reader.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def device_login() -> Iterator[Callable[..., DeviceLogin]]:
    """Start `loopauth ARGS` device logins (`DeviceLogin`); any still running is killed."""
    running: list[DeviceLogin] = []

    def start(*args: str, env: dict[str, str] | None = None) -> DeviceLogin:
        running.append(DeviceLogin(*args, env=env))
        return running[-1]

    yield start
    for run in running:
        run.close()


def post_form(
    url: str, form: dict[str, str], *, basic: tuple[str, str] | None = None
) -> tuple[int, Any]:
    """POST a form to a local server, as a browser or a client would (no proxy from the
    environment); return the status and the JSON answer, or its text."""
    import base64
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"post_form posts to http(s) servers, not {url!r}")
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if basic is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(basic).encode()).decode()
    data = urllib.parse.urlencode(form).encode()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data, headers)  # noqa: S310 - http(s) checked above
    try:
        with opener.open(request, timeout=10) as resp:
            status, body = resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read().decode()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def require_program(path: str, why: str) -> str:
    """Return `path`; skip the test when it is not installed (fail instead with CI=true)."""
    if os.path.exists(path):
        return path
    message = f"{path} is not installed ({why})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


@pytest.fixture
def loopauth_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point loopauth's tokens and config at the test's own folder, and work from there."""
    home = tmp_path / "home"
    monkeypatch.setenv("LOOPAUTH_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    for name in ("LOOPAUTH_CONFIG", "LOOPAUTH_LOAD_PLUGINS", "LOOPAUTH_LAUNCH_DIR", "BROWSER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def oauth_emulator() -> Iterator[OAuthEmulator]:
    """A standard OAuth2 / OpenID emulator on loopback."""
    from .emulator import OAuthEmulator

    with OAuthEmulator() as emu:
        yield emu


@pytest.fixture
def start_emulator() -> Iterator[Callable[..., EmulatorServer]]:
    """Start any registered emulator by name: `start_emulator("tiktok_shop", **options)`."""
    from . import plugin_manager

    started: list[EmulatorServer] = []

    def start(name: str = "oauth2", **options: Any) -> EmulatorServer:
        emulator = plugin_manager.emulators()[name](**options).start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()
