"""The login, token, refresh, status and logout commands, end to end against the emulator."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from loopauth.emulator import OAuthEmulator, browse
from loopauth.store import TokenStore
from loopauth.testing import cli, free_port, login, write_config


def token_files(home: Path) -> list[Path]:
    return sorted((home / "tokens").rglob("*.json"))


def test_login_allow_stores_token_and_shows_success_page(
    config: Path, isolated: Path, emulator: OAuthEmulator
) -> None:
    result = login("--config", str(config), "login", "emu")
    assert result.returncode == 0, result.stderr
    assert result.page is not None and result.page.status == 200
    assert "emu" in result.page.body and "ada@example.test" in result.page.body
    assert result.page.headers.get("Referrer-Policy") == "no-referrer"
    assert "Logged in to emu as ada@example.test (user-1)" in result.stderr
    [path] = token_files(isolated)
    stored = json.loads(path.read_text())
    assert stored["account_id"] == "user-1" and stored["scopes"] == ["openid", "profile", "email"]
    assert [c["grant_type"] for c in emulator.token_calls] == ["authorization_code"]
    out = cli("--config", str(config), "token")
    assert out.returncode == 0 and out.stdout.strip() == stored["access_token"]
    assert out.stderr == ""


def test_url_is_alone_on_its_own_line_and_uses_pkce_and_state(config: Path) -> None:
    result = login("--config", str(config), "login")
    assert result.returncode == 0
    assert result.url is not None and result.url + "\n" in result.lines
    query = parse_qs(urlsplit(result.url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["state"][0]) >= 43  # 256 bits, URL-safe base64
    assert urlsplit(query["redirect_uri"][0]).hostname == "127.0.0.1"


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_token_file_is_0600_in_0700_directories(config: Path, isolated: Path) -> None:
    assert login("--config", str(config), "login").returncode == 0
    [path] = token_files(isolated)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((isolated / "tokens").stat().st_mode) == 0o700


def test_login_deny_exits_3_and_stores_nothing(
    config: Path, isolated: Path, emulator: OAuthEmulator
) -> None:
    result = login("--config", str(config), "login", decision="deny")
    assert result.returncode == 3, result.stderr
    assert "access denied" in result.stderr
    assert result.page is not None and result.page.status == 403
    assert "access_denied" in result.page.body
    assert token_files(isolated) == [] and emulator.token_calls == []


def test_login_timeout_exits_4_and_closes_the_port(config: Path) -> None:
    result = login("--config", str(config), "login", "--timeout", "1", decision=None)
    assert result.returncode == 4
    assert "no redirect arrived within 1 s" in result.stderr
    redirect = parse_qs(urlsplit(result.url or "").query)["redirect_uri"][0]
    port = urlsplit(redirect).port
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def _get(url: str, host: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_stray_and_forged_requests_do_not_end_the_flow(
    config: Path, isolated: Path, emulator: OAuthEmulator
) -> None:
    seen: dict[str, tuple[int, str]] = {}

    def before(url: str) -> None:
        redirect = parse_qs(urlsplit(url).query)["redirect_uri"][0]
        base = redirect.rsplit("/", 1)[0]
        port = urlsplit(redirect).port
        seen["favicon"] = _get(f"{base}/favicon.ico")
        seen["no_state"] = _get(f"{redirect}?code=forged")
        seen["wrong_state"] = _get(f"{redirect}?code=forged&state=wrong")
        seen["evil_host"] = _get(f"{redirect}?code=forged", host=f"evil.example:{port}")
        seen["repeated"] = _get(f"{redirect}?state=a&state=b")
        assert emulator.token_calls == []

    result = login("--config", str(config), "login", before=before)
    assert result.returncode == 0, result.stderr
    assert seen["favicon"][0] == 404
    assert seen["no_state"][0] == 400 and seen["wrong_state"][0] == 400
    assert "still waiting" in seen["wrong_state"][1]
    assert seen["evil_host"][0] == 421
    assert seen["repeated"][0] == 400
    assert len(emulator.token_calls) == 1 and len(token_files(isolated)) == 1


def test_second_callback_after_success_does_not_exchange_again(
    config: Path, emulator: OAuthEmulator
) -> None:
    result = login("--config", str(config), "login")
    assert result.returncode == 0
    assert result.page is not None
    callback = result.page.url  # the loopback URL with code and state
    with pytest.raises(urllib.error.URLError) as info:  # the port is closed, no 409 page
        urllib.request.urlopen(callback, timeout=2)
    assert isinstance(info.value.reason, ConnectionRefusedError)
    assert len(emulator.token_calls) == 1


def test_busy_fixed_port_is_a_clear_error(tmp_path: Path, emulator: OAuthEmulator) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    cfg = write_config(
        tmp_path / "busy.yaml",
        f"""
        providers:
          emu:
            issuer: {emulator.url}
            client_id: loopauth-demo
            redirect_uri: http://127.0.0.1:{port}/callback
    """,
    )
    try:
        out = cli("--config", str(cfg), "login", "--no-browser", timeout=20)
    finally:
        blocker.close()
    assert out.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in out.stderr
    assert "Traceback" not in out.stderr


def test_fixed_port_and_localhost_binds_both_stacks(
    tmp_path: Path, emulator: OAuthEmulator
) -> None:
    port = free_port()
    cfg = write_config(
        tmp_path / "lh.yaml",
        f"""
        providers:
          emu:
            issuer: {emulator.url}
            client_id: loopauth-demo
            redirect_uri: http://localhost:{port}/callback
    """,
    )
    reached: dict[str, int] = {}

    def before(url: str) -> None:
        assert f"redirect_uri=http%3A%2F%2Flocalhost%3A{port}%2Fcallback" in url
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            try:
                with socket.socket(family) as s:
                    s.settimeout(2)
                    s.connect((host, port))
                    reached[host] = 1
            except OSError:
                reached[host] = 0

    result = login("--config", str(cfg), "login", before=before)
    assert result.returncode == 0, result.stderr
    assert reached["127.0.0.1"] == 1
    if socket.has_ipv6 and _ipv6_loopback():
        assert reached["::1"] == 1


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_refresh_status_logout_cycle(config: Path, isolated: Path, emulator: OAuthEmulator) -> None:
    assert login("--config", str(config), "login").returncode == 0
    before = cli("--config", str(config), "token").stdout.strip()
    out = cli("--config", str(config), "refresh")
    assert out.returncode == 0, out.stderr
    after = cli("--config", str(config), "token").stdout.strip()
    assert after and after != before
    assert [c["grant_type"] for c in emulator.token_calls] == [
        "authorization_code",
        "refresh_token",
    ]
    status = cli("--config", str(config), "status", "--json")
    [row] = json.loads(status.stdout)
    assert row["account_id"] == "user-1" and row["has_refresh_token"] is True
    assert row["expired"] is False
    assert after not in status.stdout and '"refresh_token"' not in status.stdout
    text = cli("--config", str(config), "status").stdout
    header, row = text.splitlines()[:2]
    assert header.split()[:3] == ["PROVIDER", "ACCOUNT", "LABEL"]
    assert row.split()[:3] == ["emu", "user-1", "ada@example.test"] and after not in text
    out = cli("--config", str(config), "logout")
    assert out.returncode == 0 and token_files(isolated) == []
    out = cli("--config", str(config), "token")
    assert out.returncode == 6
    assert "run: loopauth login emu" in out.stderr


def offline_access(tmp_path: Path, emu: OAuthEmulator) -> Path:
    """A providers.yaml for `emu` that asks for a refresh token."""
    return write_config(
        tmp_path / "short.yaml",
        f"""
        providers:
          emu:
            issuer: {emu.url}
            client_id: loopauth-demo
            scope: openid offline_access
    """,
    )


def test_token_refreshes_an_expiring_token_by_itself(tmp_path: Path) -> None:
    with OAuthEmulator(access_token_lifetime=30, rotate_refresh_tokens=True) as emu:
        cfg = offline_access(tmp_path, emu)
        assert login("--config", str(cfg), "login").returncode == 0
        outputs = []
        for _ in range(2):
            # 10 s left: inside the leeway (60 s, capped at half the 30 s lifetime), so refresh.
            token = TokenStore().find("emu")
            token.expires_at, token.obtained_at = time.time() + 10, time.time() - 20
            TokenStore().save(token)
            out = cli("--config", str(cfg), "token")
            assert out.returncode == 0, out.stderr
            outputs.append(out.stdout)
        fresh = cli("--config", str(cfg), "token")  # 30 s left: more than half, no refresh
        assert fresh.stdout == outputs[-1]
        assert [c["grant_type"] for c in emu.token_calls] == [
            "authorization_code",
            "refresh_token",
            "refresh_token",
        ]
        assert outputs[0] != outputs[1]  # each call had to refresh; rotation kept working


def test_a_short_lived_token_is_not_refreshed_on_every_call(tmp_path: Path) -> None:
    # A 4 s token with the default 60 s leeway: refreshed only in its last 2 s, not always.
    with OAuthEmulator(access_token_lifetime=4) as emu:
        cfg = offline_access(tmp_path, emu)
        assert login("--config", str(cfg), "login").returncode == 0
        first, second = (cli("--config", str(cfg), "token") for _ in range(2))
        assert first.returncode == second.returncode == 0
        assert first.stdout == second.stdout
        assert [c["grant_type"] for c in emu.token_calls] == ["authorization_code"]


def test_output_writes_the_raw_token_response(config: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "token.json"
    result = login("--config", str(config), "login", "--output", str(target))
    assert result.returncode == 0
    raw = json.loads(target.read_text())
    assert set(raw) >= {"access_token", "token_type", "expires_in", "refresh_token", "id_token"}
    assert target.read_text().startswith("{\n  ")  # pretty-printed
    out = cli("--config", str(config), "token")
    assert out.stdout.strip() == raw["access_token"]


def test_output_dash_prints_to_stdout(config: Path) -> None:
    result = login("--config", str(config), "login", "--output", "-")
    assert result.returncode == 0
    assert json.loads(result.stdout)["token_type"] == "Bearer"


def test_several_accounts_need_account(config: Path) -> None:
    assert login("--config", str(config), "login", "--account", "work").returncode == 0
    second = _login_as(config, "user-2", "home")
    assert second.returncode == 0, second.stderr
    out = cli("--config", str(config), "token")
    assert out.returncode == 2 and "choose one with --account" in out.stderr
    assert cli("--config", str(config), "token", "--account", "home").returncode == 0
    assert cli("--config", str(config), "token", "--account", "user-1").returncode == 0
    missing = cli("--config", str(config), "token", "--account", "nobody")
    assert missing.returncode == 6 and "--account nobody" in missing.stderr


def _login_as(config: Path, user: str, label: str) -> subprocess.Popen[str]:
    """Log in as the emulator's `user`, labelling the account `label`."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loopauth",
            "--config",
            str(config),
            "login",
            "--account",
            label,
            "--no-browser",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("http"):
            browse(line.strip(), account=user)
    proc.wait(30)
    return proc


@pytest.mark.skipif(os.name != "posix", reason="sends POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_exits_4_and_closes_the_port(config: Path, sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopauth", "--config", str(config), "login", "--no-browser"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    url = next(line.strip() for line in proc.stderr if line.startswith("http"))
    port = urlsplit(parse_qs(urlsplit(url).query)["redirect_uri"][0]).port
    socket.create_connection(("127.0.0.1", port), timeout=2).close()  # open while waiting
    proc.send_signal(sig)
    assert proc.wait(10) == 4
    assert "cancelled" in proc.stderr.read()
    time.sleep(0.2)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_system_browser_is_launched_when_there_is_one(config: Path, tmp_path: Path) -> None:
    # $BROWSER is how webbrowser finds "the system browser"; this one answers the consent page.
    script = tmp_path / "fake_browser.py"
    script.write_text("import sys\nfrom loopauth.emulator import browse\nbrowse(sys.argv[1])\n")
    out = cli("--config", str(config), "login", env={"BROWSER": f"{sys.executable} {script} %s"})
    assert out.returncode == 0, out.stderr
    assert "Opened your browser to log in to emu" in out.stderr
    assert "Logged in to emu as ada@example.test" in out.stderr


def test_without_a_browser_the_url_is_printed(config: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopauth", "--config", str(config), "login"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("http"):
            browse(line.strip())
    assert proc.wait(30) == 0
    assert "Open this URL in a browser to log in to emu:\n" in lines


@pytest.mark.skipif(os.name != "posix", reason="needs a pseudo-terminal")
def test_terminal_shows_a_live_countdown(config: Path) -> None:
    import pty

    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loopauth",
            "--config",
            str(config),
            "login",
            "--no-browser",
            "--timeout",
            "3",
        ],
        stderr=child_fd,
        stdout=subprocess.DEVNULL,
    )
    os.close(child_fd)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data.decode(errors="replace"))
    assert proc.wait(10) == 4
    os.close(main_fd)
    screen = "".join(chunks)
    assert "0:03 left (Ctrl+C to cancel)" in screen and "0:01 left" in screen
    assert "Waiting up to" not in screen  # the plain line is for non-terminals


def test_back_to_back_logins_on_the_same_fixed_port(
    tmp_path: Path, emulator: OAuthEmulator
) -> None:
    port = free_port()
    cfg = write_config(
        tmp_path / "fixed.yaml",
        f"""
        providers:
          emu:
            issuer: {emulator.url}
            client_id: loopauth-demo
            redirect_uri: http://127.0.0.1:{port}/callback
    """,
    )
    for attempt in range(3):  # no TIME_WAIT left behind to block the next bind
        result = login("--config", str(cfg), "login")
        assert result.returncode == 0, (attempt, result.stderr)
