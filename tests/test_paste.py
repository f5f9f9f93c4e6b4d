"""Paste the redirect: a login whose browser is on another machine, racing the listener."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
from tiktok_app import SECRET

from loopauth.emulator import OAuthEmulator, browse
from loopauth.flow import Flow, State
from loopauth.plugins.tiktok_shop.emulator import TikTokShopEmulator
from loopauth.testing import cli

WAITING = "for the redirect to "


class Session:
    """`loopauth login ... --paste` with its stdin ours: the terminal the user pastes into."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "loopauth", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self.url = ""
        self.redirect = ""
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if line.startswith("http") and not self.url:
                self.url = line.strip()
            if WAITING in line:
                self.redirect = line.split(WAITING, 1)[1].strip()
            if "paste it here" in line:
                break
        assert self.url and self.redirect, "".join(self.lines)

    def consent(self, decision: str = "allow") -> str:
        """Play the user in a browser elsewhere: the redirect to loopback never arrives here."""
        return browse(self.url, decision=decision, stop_at=self.redirect).url

    def paste(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def read_until(self, needle: str, timeout: float = 20) -> str:
        """Read stderr lines until one holds `needle`; return them."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            self.lines.append(line)
            if needle in line:
                return "".join(seen)
        raise AssertionError(f"{needle!r} never came; got {''.join(seen)!r}")

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        assert self.proc.stderr is not None
        rest = self.proc.stderr.read()
        self.lines.append(rest)
        code = self.proc.wait(timeout)
        return code, "".join(self.lines)


class TerminalLogin:
    """`loopauth login` with a pseudo-terminal for stdin, as a person at a keyboard runs it."""

    def __init__(self, config: Path, env: dict[str, str], *extra: str) -> None:
        import pty

        self.leader, follower = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "loopauth", "--config", str(config), "login", *extra],
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        os.close(follower)

    def lines_until(self, needle: str) -> list[str]:
        """Read stderr lines up to the one holding `needle`."""
        assert self.proc.stderr is not None
        lines = []
        for line in self.proc.stderr:
            lines.append(line)
            if needle in line:
                break
        return lines

    def type(self, text: str) -> None:
        os.write(self.leader, text.encode() + b"\n")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        os.close(self.leader)


def start(config: Path, *extra: str, env: dict[str, str] | None = None) -> Session:
    return Session("--config", str(config), "login", *extra, "--paste", "--no-browser", env=env)


def with_param(url: str, key: str, value: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query[key] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


def stored(home: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted((home / "tokens").rglob("*.json"))]


def test_pasting_the_address_the_browser_ended_on_logs_in(
    config: Path, isolated: Path, emulator: OAuthEmulator
) -> None:
    session = start(config)
    ended_on = session.consent()
    assert ended_on.startswith(session.redirect) and "code=" in ended_on
    session.paste(ended_on)
    code, err = session.finish()
    assert code == 0, err
    assert "Logged in to emu as ada@example.test" in err
    assert [c["grant_type"] for c in emulator.token_calls] == ["authorization_code"]
    [token] = stored(isolated)
    assert token["account_id"] == "user-1"
    out = cli("--config", str(config), "token")
    assert out.returncode == 0 and out.stdout.strip() == token["access_token"]


def test_pasting_just_the_code_logs_in(config: Path, emulator: OAuthEmulator) -> None:
    session = start(config)
    ended_on = session.consent()
    [code_value] = parse_qs(urlsplit(ended_on).query)["code"]
    session.paste(f"  {code_value}  ")  # as copied, with stray blanks
    code, err = session.finish()
    assert code == 0, err
    assert "Logged in to emu" in err


def test_a_wrong_state_is_refused_and_the_prompt_asks_again(
    config: Path, emulator: OAuthEmulator
) -> None:
    session = start(config)
    ended_on = session.consent()
    session.paste(with_param(ended_on, "state", "forged-state-from-someone-else"))
    refused = session.read_until("Paste the address again")
    assert "not taken" in refused and "state" in refused
    session.paste("https://elsewhere.example/other?code=abc&state=x")
    refused = session.read_until("Paste the address again")
    assert "path" in refused
    assert emulator.token_calls == []  # nothing refused was exchanged
    session.paste(ended_on)
    code, err = session.finish()
    assert code == 0, err
    assert [c["grant_type"] for c in emulator.token_calls] == ["authorization_code"]


def test_a_pasted_denial_is_exit_3(config: Path, isolated: Path) -> None:
    session = start(config)
    session.paste(session.consent(decision="deny"))
    code, err = session.finish()
    assert code == 3, err
    assert "access denied" in err
    assert stored(isolated) == []


def test_the_listener_can_still_win_while_the_prompt_waits(
    config: Path, emulator: OAuthEmulator
) -> None:
    session = start(config)
    page = browse(session.url)  # the browser reaches the listener after all
    assert page.status == 200
    code, err = session.finish()  # ends although stdin stays open and nothing was pasted
    assert code == 0, err
    assert "Logged in to emu" in err
    assert session.proc.stdin is not None
    session.proc.stdin.close()


def test_a_pasted_address_wins_and_the_listener_is_shut_down(
    emulator: OAuthEmulator, isolated: Path
) -> None:
    from loopauth.config import parse

    provider = parse(
        f"providers:\n  emu:\n    issuer: {emulator.url}\n    client_id: loopauth-demo\n"
    ).select("emu")
    flow = Flow(provider)
    url = flow.start()
    assert flow.redirect_uri is not None
    ended_on = browse(url, stop_at=flow.redirect_uri).url
    assert flow.paste(with_param(ended_on, "state", "x" * 43)) is not None
    assert flow.state is State.WAITING_FOR_REDIRECT
    assert flow.paste(ended_on) is None
    assert flow.state is State.SUCCEEDED
    assert flow.paste(ended_on) is not None  # single use
    # The listener is closed: the same redirect arriving late finds nobody.
    deadline = time.monotonic() + 5
    while True:
        try:
            urllib.request.urlopen(ended_on, timeout=2)
        except urllib.error.HTTPError as exc:
            assert exc.code == 409  # closing: at most "already finished", never a second use
        except OSError:
            break
        assert time.monotonic() < deadline, "the listener stayed open"
        time.sleep(0.05)
    assert [c["grant_type"] for c in emulator.token_calls] == ["authorization_code"]


def test_tiktok_shop_with_a_localhost_redirect_url(
    shop_and_emu: Path, tiktok: TikTokShopEmulator, isolated: Path
) -> None:
    session = start(shop_and_emu, "tiktok-shop", env={"TIKTOK_APP_SECRET": SECRET})
    assert urlsplit(session.redirect).hostname == "localhost"
    ended_on = session.consent()
    session.paste(ended_on)
    code, err = session.finish()
    assert code == 0, err
    assert "Logged in to tiktok-shop" in err


@pytest.mark.skipif(os.name != "posix", reason="a pseudo-terminal")
def test_without_a_browser_a_terminal_gets_the_prompt_and_the_ssh_line(
    config: Path, emulator: OAuthEmulator
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["SSH_CONNECTION"] = "203.0.113.7 50022 198.51.100.2 2222"
    term = TerminalLogin(config, env)
    try:
        lines = term.lines_until("ssh -N -L")
        text = "".join(lines)
        assert "paste it here" in text
        url = next(line.strip() for line in lines if line.startswith("http"))
        redirect = next(line for line in lines if WAITING in line).split(WAITING)[1].strip()
        port = urlsplit(redirect).port
        assert f"ssh -N -L {port}:127.0.0.1:{port} -p 2222 " in text
        assert "@198.51.100.2" in text
        term.type(browse(url, stop_at=redirect).url)
        assert term.proc.stderr is not None
        assert term.proc.wait(30) == 0, text + term.proc.stderr.read()
        assert "Logged in to emu" in term.proc.stderr.read()
    finally:
        term.close()


@pytest.mark.skipif(os.name != "posix", reason="a pseudo-terminal")
def test_with_a_browser_no_prompt_unless_asked(config: Path, emulator: OAuthEmulator) -> None:
    """A login whose stdin is not a terminal (a script) never waits for a paste."""
    result = cli("--config", str(config), "login", "--no-browser", "--timeout", "1", input="")
    assert result.returncode == 4
    assert "paste it here" not in result.stderr


def test_the_pasted_value_is_never_echoed_into_logs(config: Path, emulator: OAuthEmulator) -> None:
    session = Session("--config", str(config), "-v", "login", "--paste", "--no-browser")
    ended_on = session.consent()
    session.paste(with_param(ended_on, "state", "wrong"))
    session.read_until("Paste the address again")
    session.paste(ended_on)
    code, err = session.finish()
    assert code == 0, err
    [code_value] = parse_qs(urlsplit(ended_on).query)["code"]
    assert code_value not in err


def test_select_loop_notices_the_end_without_input() -> None:
    """The prompt's reader ends soon after the flow does, with nothing typed (POSIX select)."""
    if os.name != "posix":
        pytest.skip("select() on pipes")
    from loopauth.paste import PastePrompt

    class Done:
        class state:
            finished = False

    read_end, write_end = os.pipe()
    flow = Done()
    with os.fdopen(read_end) as source, open(os.devnull, "w") as out:
        prompt = PastePrompt(flow, source, out)  # type: ignore[arg-type]
        prompt.start()
        flow.state.finished = True
        prompt._thread.join(2)
        assert not prompt._thread.is_alive()
    os.close(write_end)


def test_an_address_without_the_state_is_refused_like_at_the_listener(
    config: Path, emulator: OAuthEmulator, isolated: Path
) -> None:
    """Someone else's code in a loopback address (login CSRF) is not taken for a bare code."""
    session = start(config)
    ended_on = session.consent()
    parts = urlsplit(ended_on)
    [code_value] = parse_qs(parts.query)["code"]
    session.paste(urlunsplit(parts._replace(query=urlencode({"code": code_value}))))
    assert "state" in session.read_until("Paste the address again")
    session.paste(f"code={code_value}")  # the query alone is an address too: state needed
    assert "state" in session.read_until("Paste the address again")
    assert emulator.token_calls == []
    session.paste("y")  # a stray key press is neither an address nor a code
    assert "neither" in session.read_until("Paste the address again")
    session.paste("mistyped-code-0123")  # looks like a code: the provider refuses it
    assert "not accepted" in session.read_until("Paste the address again")
    session.paste(ended_on)  # the login was still waiting
    code, err = session.finish()
    assert code == 0, err
    assert [c["grant_type"] for c in emulator.token_calls] == ["authorization_code"] * 2


def test_a_bare_code_is_refused_where_no_pkce_binds_it(
    shop_and_emu: Path, tiktok: TikTokShopEmulator
) -> None:
    session = start(shop_and_emu, "tiktok-shop", env={"TIKTOK_APP_SECRET": SECRET})
    ended_on = session.consent()
    [code_value] = parse_qs(urlsplit(ended_on).query)["code"]
    session.paste(code_value)
    assert "no PKCE" in session.read_until("Paste the address again")
    session.paste(ended_on)
    code, err = session.finish()
    assert code == 0, err


@pytest.mark.skipif(os.name != "posix", reason="a pseudo-terminal")
def test_a_browser_that_fails_to_start_brings_up_the_prompt(
    config: Path, emulator: OAuthEmulator, tmp_path: Path
) -> None:
    failing = tmp_path / "no-browser"
    failing.write_text("#!/bin/sh\nexit 1\n")
    failing.chmod(0o755)
    env = {**os.environ, "BROWSER": str(failing)}
    term = TerminalLogin(config, env, "--timeout", "30")
    try:
        lines = term.lines_until("paste it here")
        text = "".join(lines)
        assert "no browser could be started" in text
        url = next(line.strip() for line in lines if line.startswith("http"))
        redirect = urlsplit(parse_qs(urlsplit(url).query)["redirect_uri"][0])
        term.type(browse(url, stop_at=urlunsplit(redirect)).url)
        assert term.proc.stderr is not None
        assert term.proc.wait(30) == 0, text + term.proc.stderr.read()
    finally:
        term.close()
