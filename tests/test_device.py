"""`login --device` (RFC 8628) end to end against the emulator, and the emulator's device rules."""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import loopauth
from loopauth.cli.device_login import QR_BLOCKS, print_qr
from loopauth.config import parse
from loopauth.device import DeviceFlow, parse_authorization
from loopauth.emulator import OAuthEmulator, browse
from loopauth.emulator.oauth import DEVICE_GRANT
from loopauth.errors import FlowCancelled, FlowTimeout, ProviderError
from loopauth.flow import State
from loopauth.store import TokenStore
from loopauth.testing import cli, write_config
from loopauth.testing import post_form as post

Setup = Callable[..., tuple[OAuthEmulator, Path]]


def wait_for(condition: Callable[[], object], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def token_files(home: Path) -> list[Path]:
    return sorted((home / "tokens").rglob("*.json"))


def answers(emulator: OAuthEmulator) -> list[str]:
    return [answer for _, answer in emulator.device_polls]


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


@pytest.fixture
def device_setup(tmp_path: Path) -> Iterator[Setup]:
    """Start an emulator polled every second (options as given) and write a config for it."""
    started: list[OAuthEmulator] = []

    def setup(**options: Any) -> tuple[OAuthEmulator, Path]:
        emulator = OAuthEmulator(**{"device_interval": 1, **options}).start()
        started.append(emulator)
        config = write_config(
            tmp_path / "providers.yaml",
            f"""
            providers:
              emu:
                issuer: {emulator.url}
                client_id: loopauth-demo
                scope: openid profile email
            """,
        )
        return emulator, config

    yield setup
    for emulator in started:
        emulator.stop()


class DeviceLogin:
    """`loopauth login emu --device` in a subprocess, its stderr read as it comes."""

    def __init__(self, config: Path, *args: str, stderr: int | None = None) -> None:
        command = ["--config", str(config), "login", "emu", "--device", *args]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "loopauth", *command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if stderr is None else stderr,
            text=True,
        )
        self.lines: list[str] = []
        self._complete = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        if stderr is None:
            self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if len(self.lines) >= 2 and "has the code in it" in self.lines[-2]:
                self._complete.set()
        self._complete.set()

    def shown(self) -> tuple[str, str, str]:
        """Return the user code, the verification URI and the URI with the code in it."""
        assert self._complete.wait(20), "".join(self.lines)
        return shown_in("".join(self.lines))

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code, "".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def shown_in(text: str) -> tuple[str, str, str]:
    found = re.search(
        r"^(http\S+)\nand enter the code: (\S+)\n.*has the code in it:\n(http\S+)\n", text, re.M
    )
    assert found is not None, text
    return found.group(2), found.group(1), found.group(3)


@pytest.fixture
def device_login() -> Iterator[Callable[..., DeviceLogin]]:
    """Start device logins; any still running at the end is killed."""
    running: list[DeviceLogin] = []

    def start(config: Path, *args: str, stderr: int | None = None) -> DeviceLogin:
        run = DeviceLogin(config, *args, stderr=stderr)
        running.append(run)
        return run

    yield start
    for run in running:
        run.kill()


# -- the command line, end to end ------------------------------------------------------------


def test_device_login_allow_stores_the_token_polling_at_the_interval(
    device_setup: Setup,
    device_login: Callable[..., DeviceLogin],
    isolated: Path,
    tmp_path: Path,
) -> None:
    emulator, config = device_setup()
    out = tmp_path / "response.json"
    run = device_login(config, "--output", str(out))
    user_code, uri, complete = run.shown()
    assert uri == f"{emulator.url}/device" and re.fullmatch(r"[B-Z]{4}-[B-Z]{4}", user_code)
    assert complete == f"{uri}?user_code={user_code}"
    wait_for(lambda: emulator.device_polls)  # the user is not that fast: nothing yet
    # RFC 8628 §6.1: typed in lower case with a space instead of the dash, it still counts.
    typed = user_code.lower().replace("-", " ")
    status, page = post(uri, {"user_code": typed, "account": "user-2", "decision": "allow"})
    assert status == 200 and "Device connected" in page
    code, err = run.finish()
    assert code == 0, err
    assert "Logged in to emu as grace@example.test (user-2); token saved to" in err
    said = answers(emulator)
    assert said[0] == "authorization_pending" and said[-1] == "token"
    assert set(said[1:-1]) <= {"authorization_pending"}
    assert all(gap >= 1 for gap in gaps([t for t, _ in emulator.device_polls]))
    assert [c["grant_type"] for c in emulator.token_calls] == [DEVICE_GRANT] * len(said)
    assert not any(secret in err for secret in emulator.issued_device_codes())
    assert not set(QR_BLOCKS) & set(err)  # no QR code on a pipe
    [path] = token_files(isolated)
    stored = json.loads(path.read_text())
    assert json.loads(out.read_text())["access_token"] == stored["access_token"]
    token = cli("--config", str(config), "token")
    assert token.returncode == 0 and token.stdout.strip() == stored["access_token"]


def test_device_login_denied_exits_3(
    device_setup: Setup, device_login: Callable[..., DeviceLogin], isolated: Path
) -> None:
    emulator, config = device_setup()
    run = device_login(config)
    _, _, complete = run.shown()
    page = browse(complete, decision="deny")
    assert page.status == 200 and "Access denied" in page.body
    code, err = run.finish()
    assert code == 3, err
    assert "emu: access denied (access_denied: the user denied access)" in err
    assert answers(emulator) == ["access_denied"] and token_files(isolated) == []


def test_device_code_expired_at_the_provider_exits_4(
    device_setup: Setup, device_login: Callable[..., DeviceLogin], isolated: Path
) -> None:
    emulator, config = device_setup()
    run = device_login(config)
    run.shown()
    emulator.expire_device_codes()
    code, err = run.finish()
    assert code == 4, err
    assert "emu: the code expired before the login was approved; run login again" in err
    assert answers(emulator) == ["expired_token"] and token_files(isolated) == []


def test_slow_down_adds_five_seconds_to_the_interval(
    device_setup: Setup, device_login: Callable[..., DeviceLogin]
) -> None:
    emulator, config = device_setup(slow_down_polls=1)
    run = device_login(config)
    _, _, complete = run.shown()
    assert "Device connected" in browse(complete).body  # approved before the first poll
    code, err = run.finish()
    assert code == 0, err
    assert answers(emulator) == ["slow_down", "token"]
    [gap] = gaps([t for t, _ in emulator.device_polls])
    assert gap >= 1 + 5, gap  # the emulator would have answered slow_down again otherwise


def test_network_failure_backs_off_exponentially_until_the_code_expires(
    device_setup: Setup, device_login: Callable[..., DeviceLogin], isolated: Path
) -> None:
    emulator, config = device_setup(device_code_lifetime=6)
    run = device_login(config)
    run.shown()
    wait_for(lambda: emulator.device_polls)
    port = emulator.port
    emulator.stop()
    # Something that takes connections and drops them at once: the polls get no answer.
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    dropped: list[float] = []

    def drop() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            dropped.append(time.monotonic())
            conn.close()

    threading.Thread(target=drop, daemon=True).start()
    try:
        code, err = run.finish()
    finally:
        server.close()
    assert code == 4, err
    assert "emu: the code expired before the login was approved (the last poll failed: " in err
    assert "polling failed" in err  # each failure is reported as it happens
    assert answers(emulator) == ["authorization_pending"] and token_files(isolated) == []
    # At 1 s apart the polls would come at about 2, 3, 4 and 5 s; doubled, at 2 and 4 s (8 is
    # past the expiry).
    assert len(dropped) == 2, dropped
    assert dropped[0] - emulator.device_polls[0][0] >= 1
    assert dropped[1] - dropped[0] >= 2


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_ctrl_c_stops_polling_at_once_exits_4(
    device_setup: Setup, device_login: Callable[..., DeviceLogin], isolated: Path
) -> None:
    emulator, config = device_setup(device_interval=30)
    run = device_login(config)
    run.shown()
    started = time.monotonic()
    run.proc.send_signal(signal.SIGINT)
    code, err = run.finish(10)
    assert code == 4 and "loopauth: cancelled" in err, err
    assert time.monotonic() - started < 3  # not at the next poll, 30 s on
    assert emulator.device_polls == [] and token_files(isolated) == []


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a POSIX pseudo-terminal")
def test_qr_code_is_drawn_on_a_terminal(
    device_setup: Setup, device_login: Callable[..., DeviceLogin]
) -> None:
    import fcntl
    import select
    import struct
    import termios

    _, config = device_setup()
    master, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
    run = device_login(config, stderr=terminal)
    os.close(terminal)
    seen = b""

    def read_some() -> bool:
        ready, _, _ = select.select([master], [], [], 10)
        try:
            chunk = os.read(master, 65536) if ready else b""
        except OSError:  # Linux: the other end closed
            chunk = b""
        nonlocal seen
        seen += chunk
        return bool(chunk)

    try:
        while "Or scan this QR code" not in seen.decode(errors="replace") and read_some():
            pass
        text = seen.decode(errors="replace").replace("\r\n", "\n")
        _, _, complete = shown_in(text)
        browse(complete, decision="deny")
        while read_some():
            pass
        assert run.proc.wait(10) == 3
    finally:
        os.close(master)
    text = seen.decode(errors="replace").replace("\r\n", "\n")
    drawing = text.split("Or scan this QR code:\n", 1)[1]
    assert drawing.count("\n") >= 10 and set(QR_BLOCKS) <= set(drawing)
    assert "Waiting for the approval:" in text  # the countdown, on a terminal only
    assert "access denied" in text


def test_print_qr_draws_only_on_a_terminal_that_can_show_it() -> None:
    class Terminal(io.StringIO):
        def __init__(self, encoding: str) -> None:
            super().__init__()
            self._encoding = encoding

        @property
        def encoding(self) -> str:
            return self._encoding

        def isatty(self) -> bool:
            return True

    uri = "https://example.test/device?user_code=BCDF-GHJK"
    pipe = io.StringIO()
    assert not print_qr(uri, pipe) and pipe.getvalue() == ""
    ascii_only = Terminal("ascii")
    assert not print_qr(uri, ascii_only) and ascii_only.getvalue() == ""
    utf8 = Terminal("utf-8")
    assert print_qr(uri, utf8, heading="Scan:")
    assert utf8.getvalue().startswith("Scan:\n") and set(QR_BLOCKS) <= set(utf8.getvalue())
    too_long = Terminal("utf-8")  # more than any QR code holds: the address alone, no crash
    assert not print_qr("https://example.test/?" + "x" * 8000, too_long)
    assert too_long.getvalue() == ""


def test_provider_without_a_device_endpoint_exits_2(device_setup: Setup) -> None:
    _, config = device_setup(device=False)
    result = cli("--config", str(config), "login", "emu", "--device")
    assert result.returncode == 2, result.stderr
    assert "emu has no device_authorization_endpoint" in result.stderr
    assert "Traceback" not in result.stderr


# -- the Python API --------------------------------------------------------------------------


def provider_for(emulator: OAuthEmulator) -> loopauth.Provider:
    return parse(f"""
providers:
  emu:
    issuer: {emulator.url}
    client_id: loopauth-demo
    scope: openid email
""").select("emu")


def test_device_flow_states_and_login_with_device(
    device_setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator, _ = device_setup()
    flow = loopauth.DeviceFlow(provider_for(emulator))
    assert flow.state is State.IDLE
    info = flow.start()
    assert flow.state is State.WAITING_FOR_REDIRECT and info.interval == 1
    assert (
        info.verification_uri_complete is not None and info.qr_uri == info.verification_uri_complete
    )
    [device_code] = emulator.issued_device_codes()
    assert device_code not in repr(flow) + repr(info)
    threading.Thread(target=browse, args=(info.verification_uri_complete,)).start()
    assert flow.wait(10) is State.SUCCEEDED
    token = flow.result()
    assert token.account_id == "user-1" and flow.token_response == token.raw
    assert TokenStore().find("emu").access_token == token.access_token

    def approve() -> None:
        wait_for(emulator.pending_user_codes)
        [code] = emulator.pending_user_codes()
        browse(f"{emulator.url}/device?user_code={code}", account="user-2")

    threading.Thread(target=approve).start()
    second = loopauth.login(provider_for(emulator), device=True, account="work", timeout=10)
    assert second.account_id == "user-2" and second.account_label == "work"
    assert "and enter the code: " in capsys.readouterr().err


def test_device_flow_cancel_and_timeout_end_polling_promptly(device_setup: Setup) -> None:
    emulator, _ = device_setup(device_interval=30)
    flow = DeviceFlow(provider_for(emulator))
    flow.start()
    started = time.monotonic()
    assert flow.wait(0.2) is State.TIMED_OUT
    with pytest.raises(FlowTimeout, match=r"not approved within 0\.2 s"):
        flow.result()
    other = DeviceFlow(provider_for(emulator))
    other.start()
    threading.Timer(0.1, other.cancel).start()
    assert other.wait() is State.CANCELLED
    assert time.monotonic() - started < 5 and emulator.device_polls == []
    with pytest.raises(FlowCancelled):
        other.result()


# -- what the provider answers ---------------------------------------------------------------

GOOD = {
    "device_code": "d" * 43,
    "user_code": "BCDF-GHJK",
    "verification_uri": "https://example.test/device",
    "expires_in": 900,
}


def offline_provider() -> loopauth.Provider:
    return parse("""
providers:
  emu:
    client_id: loopauth-demo
    authorization_endpoint: https://example.test/authorize
    token_endpoint: https://example.test/token
    device_authorization_endpoint: https://example.test/device_authorization
""").select("emu")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"device_code": None}, "device_code is missing"),
        ({"user_code": 1234}, "user_code is missing"),
        ({"user_code": "\x1b]52;c;ZXZpbA==\x07"}, "user_code is not a code a person can type"),
        ({"verification_uri": None}, "verification_uri is missing"),
        ({"verification_uri": "javascript:alert(1)"}, "verification_uri must be an http(s) URL"),
        ({"verification_uri": "http://example.test/device"}, "verification_uri must use https"),
        ({"verification_uri_complete": "https://example.test/d?c=1 2"}, "cannot have"),
        ({"expires_in": 0}, "expires_in is not a sensible"),
        ({"expires_in": "soon"}, "expires_in is not a sensible"),
        ({"expires_in": True}, "expires_in is not a sensible"),
        ({"expires_in": 1e9}, "expires_in is not a sensible"),
        ({"interval": -1}, "interval is not a sensible"),
        ({"error": "invalid_scope"}, "refused the device authorization request: invalid_scope"),
    ],
)
def test_garbage_device_authorization_responses_are_refused(
    change: dict[str, object], problem: str
) -> None:
    data = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(ProviderError, match=re.escape(problem)):
        parse_authorization(offline_provider(), data)


def test_device_authorization_response_defaults_and_lenient_numbers() -> None:
    # Google says verification_url and some providers send numbers as strings.
    data = {**GOOD, "verification_uri": None, "verification_url": GOOD["verification_uri"]}
    info, device_code = parse_authorization(
        offline_provider(), {**data, "expires_in": "1800", "interval": None}
    )
    assert device_code == GOOD["device_code"] and info.verification_uri == GOOD["verification_uri"]
    assert (info.expires_in, info.interval, info.qr_uri) == (1800, 5, GOOD["verification_uri"])
    info, _ = parse_authorization(offline_provider(), {**GOOD, "interval": 120})
    assert info.interval == 120  # the provider's pace is kept (RFC 8628 §3.5)
    info, _ = parse_authorization(offline_provider(), {**GOOD, "interval": 0})
    assert info.interval == 1  # but never a busy loop
    with pytest.raises(ProviderError, match="interval is longer than the code's lifetime"):
        parse_authorization(offline_provider(), {**GOOD, "interval": 3600})
    with pytest.raises(ProviderError, match="verification_uri_complete is too long"):
        long = GOOD["verification_uri"] + "?user_code=" + "A" * 3000
        parse_authorization(offline_provider(), {**GOOD, "verification_uri_complete": long})


# -- the emulator's device endpoints ---------------------------------------------------------


def test_emulator_device_endpoints_follow_rfc_8628(device_setup: Setup) -> None:
    emulator, _ = device_setup(device_interval=0)
    base = emulator.url
    with urllib.request.urlopen(f"{base}/.well-known/openid-configuration", timeout=5) as resp:
        doc = json.load(resp)
    assert doc["device_authorization_endpoint"] == f"{base}/device_authorization"
    assert DEVICE_GRANT in doc["grant_types_supported"]
    endpoint, token = f"{base}/device_authorization", f"{base}/token"

    assert post(endpoint, {"client_id": "nobody"})[0] == 401
    assert post(endpoint, {"client_id": "demo-confidential"})[0] == 401  # no secret
    status, body = post(endpoint, {"client_id": "loopauth-demo", "scope": "openid admin"})
    assert (status, body["error"]) == (400, "invalid_scope")
    status, body = post(endpoint, {}, basic=("demo-confidential", "demo-secret"))
    assert status == 200 and body["interval"] == 0 and body["expires_in"] == 600

    def issue() -> tuple[str, str]:
        status, body = post(endpoint, {"client_id": "loopauth-demo", "scope": "openid"})
        assert status == 200
        return body["device_code"], body["user_code"]

    def poll(device_code: str, basic: tuple[str, str] | None = None) -> str:
        form = {"grant_type": DEVICE_GRANT, "device_code": device_code}
        if basic is None:
            form["client_id"] = "loopauth-demo"
        status, body = post(token, form, basic=basic)
        return "token" if status == 200 and "access_token" in body else str(body["error"])

    def decide(user_code: str, decision: str) -> int:
        return int(post(f"{base}/device", {"user_code": user_code, "decision": decision})[0])

    device_code, user_code = issue()
    with urllib.request.urlopen(f"{base}/device?user_code={user_code}", timeout=5) as resp:
        page = resp.read().decode()
    assert f'value="{user_code}"' in page and "<strong>loopauth-demo</strong>" in page
    assert decide("ZZZZ-ZZZZ", "allow") == 400  # an unknown code
    assert poll(device_code) == "authorization_pending"
    assert decide(user_code, "allow") == 200
    assert decide(user_code, "allow") == 400  # decided already
    other = ("demo-confidential", "demo-secret")
    assert poll(device_code, basic=other) == "invalid_grant"  # issued to another client
    assert poll(device_code) == "token"
    assert poll(device_code) == "invalid_grant"  # single use

    denied, user_code = issue()
    assert decide(user_code, "deny") == 200
    assert poll(denied) == "access_denied"
    expired, user_code = issue()
    emulator.expire_device_codes()
    assert poll(expired) == "expired_token"
    assert decide(user_code, "allow") == 400
    assert poll("not-a-device-code") == "invalid_grant"


def test_emulator_answers_slow_down_to_polls_that_come_too_soon(device_setup: Setup) -> None:
    emulator, _ = device_setup(device_interval=1)
    status, body = post(f"{emulator.url}/device_authorization", {"client_id": "loopauth-demo"})
    assert status == 200
    form = {"grant_type": DEVICE_GRANT, "device_code": body["device_code"]}
    form["client_id"] = "loopauth-demo"
    for _ in range(3):
        post(f"{emulator.url}/token", form)
    # The second poll came within the interval; the third within the raised one (1 + 5 s).
    assert answers(emulator) == ["authorization_pending", "slow_down", "slow_down"]
