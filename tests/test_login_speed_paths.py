"""What keeps a login quick: the browser helper started early and never waited for, the exchange's
modules imported while the user is in the browser, the authorization URL built without authlib's
OAuth 2 package. And that none of it gives up what the launch page is for."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from loopauth import browser, oauth
from loopauth.config import parse
from loopauth.emulator import OAuthEmulator
from loopauth.errors import ProviderError
from loopauth.flow import Flow, State
from loopauth.provider import Provider
from loopauth.testing import cli, free_port

# A $BROWSER that records what it was given, then browses (or not) and lingers (or not).
RECORDER = """
import json, os, stat, sys, time
page, record = sys.argv[1], sys.argv[2]
mode = os.fstat(0).st_mode
json.dump({"argv": sys.argv, "env": sorted(os.environ), "stdin_is_char": stat.S_ISCHR(mode),
           "page": open(page[len("file://"):]).read()}, open(record + ".tmp", "w"))
os.replace(record + ".tmp", record)
if os.environ.get("RECORDER_BROWSE"):
    from loopauth.emulator import browse
    browse(page)
stop = os.environ.get("RECORDER_LINGER")
deadline = time.monotonic() + 20
while stop and not os.path.exists(stop) and time.monotonic() < deadline:
    time.sleep(0.05)
sys.exit(int(os.environ.get("RECORDER_EXIT", "0")))
"""


def until(check: Callable[[], object], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$BROWSER is the recorder; only it is a browser (no desktop, no console browsers)."""
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER)
    record = tmp_path / "record.json"
    monkeypatch.setenv("BROWSER", f"{sys.executable} {script} %s {record}")
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "TERM"):
        monkeypatch.delenv(name, raising=False)
    return record


def provider_for(emulator: OAuthEmulator, extra: str = "") -> Provider:
    return parse(f"""
providers:
  emu:
    issuer: {emulator.url}
    client_id: loopauth-demo
    scope: openid email
{extra}""").select("emu")


def test_the_helper_gets_the_page_on_stdin_and_gives_the_browser_no_secrets(
    recorder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    monkeypatch.setenv("LOOPAUTH_TEST_SECRET", "s3cret")
    launcher = browser.Launcher({"LOOPAUTH_TEST_SECRET"})
    time.sleep(0.3)  # the helper is up (and has looked for browsers) before there is a page
    url = "https://login.example.test/authorize?state=st4te-value"
    page = browser.write_page(url, launcher.folder())
    try:
        assert launcher.open(page) is True
        until(recorder.is_file)
        seen = json.loads(recorder.read_text())
    finally:
        browser.remove_page(page)
    assert seen["argv"][1] == Path(page).as_uri()
    assert "st4te-value" in seen["page"] and "st4te-value" not in " ".join(seen["argv"])
    assert "LOOPAUTH_TEST_SECRET" not in seen["env"] and "PATH" in seen["env"]
    assert seen["stdin_is_char"]  # /dev/null, not the helper's pipe
    assert launcher._proc is not None
    helper_argv = " ".join(map(str, launcher._proc.args))
    assert "-I" in helper_argv and "-S" in helper_argv and "file://" not in helper_argv
    assert launcher.open(page) is False  # one page per helper
    if os.name == "posix":
        assert stat.S_IMODE(Path(page).parent.stat().st_mode) == 0o700


def test_a_cancelled_helper_opens_nothing(recorder: Path) -> None:
    launcher = browser.Launcher()
    launcher.cancel()
    assert launcher._proc is not None
    assert launcher._proc.wait(15) == 1
    assert not recorder.exists()
    assert launcher.open("/nonexistent/login-xxxxxxxx.html") is False


def test_launch_browser_does_not_wait_for_a_browser_that_stays_open(
    recorder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator: OAuthEmulator
) -> None:
    stop = tmp_path / "stop"
    monkeypatch.setenv("RECORDER_LINGER", str(stop))
    flow = Flow(provider_for(emulator))
    flow.start()
    try:
        started = time.monotonic()
        assert flow.launch_browser() is True
        assert time.monotonic() - started < 10  # the browser lingers 20 s
        until(recorder.is_file)
        page = flow._launch_page
        assert page is not None and Path(page).is_file()
    finally:
        flow.cancel()
        stop.touch()
    assert not Path(page).exists()  # removed when the flow ended, the browser still open


def test_run_starts_the_helper_before_discovery_and_logs_in(
    recorder: Path, monkeypatch: pytest.MonkeyPatch, emulator: OAuthEmulator
) -> None:
    monkeypatch.setenv("RECORDER_BROWSE", "1")
    order: list[str] = []
    real_launcher, real_discover = browser.Launcher.__init__, oauth.discover

    def launcher_init(self: browser.Launcher, *args: object, **kwargs: object) -> None:
        order.append("helper")
        real_launcher(self, *args, **kwargs)

    def discover(provider: Provider) -> None:
        order.append("discover")
        real_discover(provider)

    monkeypatch.setattr(browser.Launcher, "__init__", launcher_init)
    monkeypatch.setattr(oauth, "discover", discover)
    flow = Flow(provider_for(emulator))
    token = flow.run(30, on_url=lambda url, opened: order.append(f"opened={opened}"))
    assert order[:2] == ["helper", "discover"] and "opened=True" in order
    assert flow.state is State.SUCCEEDED and token.account_id == "user-1"


def test_a_login_that_cannot_start_opens_no_browser(
    recorder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helpers: list[browser.Launcher] = []
    real = browser.Launcher.__init__

    def launcher_init(self: browser.Launcher, *args: object, **kwargs: object) -> None:
        real(self, *args, **kwargs)
        helpers.append(self)

    monkeypatch.setattr(browser.Launcher, "__init__", launcher_init)
    provider = parse(f"""
providers:
  down:
    issuer: http://127.0.0.1:{free_port()}
    client_id: c
    http_timeout: 2
""").select("down")
    with pytest.raises(ProviderError, match="discovery failed"):
        Flow(provider).run(5)
    [helper] = helpers
    assert helper._proc is not None and helper._proc.wait(15) == 1
    assert not recorder.exists()


def test_a_browser_that_fails_after_the_handover_is_reported(
    recorder: Path,
    monkeypatch: pytest.MonkeyPatch,
    emulator: OAuthEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("RECORDER_EXIT", "1")
    caplog.set_level(logging.WARNING, logger="loopauth")
    flow = Flow(provider_for(emulator))
    flow.start()
    try:
        assert flow.launch_browser() is True  # handed over; the failure comes later
        until(lambda: "no browser could be started" in caplog.text)
    finally:
        flow.cancel()


def test_cli_login_ends_while_the_browser_stays_open(config: Path, tmp_path: Path) -> None:
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER)
    stop = tmp_path / "stop"
    env = {
        "BROWSER": f"{sys.executable} {script} %s {tmp_path / 'record.json'}",
        "RECORDER_BROWSE": "1",
        "RECORDER_LINGER": str(stop),
    }
    started = time.monotonic()
    try:
        out = cli("--config", str(config), "login", env=env)
        elapsed = time.monotonic() - started
    finally:
        stop.touch()
    assert out.returncode == 0, out.stderr
    assert "Opened your browser to log in to emu" in out.stderr
    assert "Logged in to emu as ada@example.test" in out.stderr
    assert elapsed < 15  # the browser command lingers 20 s


def test_s256_challenge_is_rfc7636s() -> None:
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    vector = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 Appendix B
    assert oauth.s256_challenge(vector) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    for verifier in ("a" * 43, "~._-" * 32, vector[:43]):
        assert oauth.s256_challenge(verifier) == create_s256_code_challenge(verifier)


PROBE = """
import sys
from loopauth import oauth
from loopauth.config import parse
provider = parse('''
providers:
  p:
    authorization_endpoint: https://login.example.test/authorize
    token_endpoint: https://login.example.test/token
    client_id: c
''').select("p")
oauth.authorization_request(provider, "http://127.0.0.1:1/cb")
before = sorted(m for m in sys.modules if m.startswith(("authlib", "requests")))
oauth.preload()
after = sorted(sys.modules)
print(repr((before, after)))
"""


def test_the_url_needs_no_authlib_oauth2_and_the_preload_only_what_the_exchange_uses() -> None:
    import ast

    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    before, after = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert not [m for m in before if m.startswith("authlib.oauth2")], before
    for name in oauth.PRELOAD:
        assert name in after
    heavy = ("joserfc", "cryptography", "authlib.integrations", "authlib.oidc", "authlib.jose")
    assert not [m for m in after if m.startswith(heavy)]
