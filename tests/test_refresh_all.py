"""`loopauth refresh --all [PROVIDER] [--force] [--jobs N] [--json]`, through the real CLI,
against the standard emulator and TikTok Shop's, with several accounts of each."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from tiktok_app import SECRET

from loopauth.emulator import OAuthEmulator, Request, Response
from loopauth.emulator.registry import DEFAULT_USERS
from loopauth.plugins.tiktok_shop.emulator import (
    REFRESH_PATH,
    SELLER_OPEN_ID,
    TikTokShopEmulator,
)
from loopauth.store import TokenStore
from loopauth.testing import cli, login, write_config
from loopauth.token import Token

ADA, GRACE = DEFAULT_USERS
SHOP, OPEN_ID = "tiktok-shop", SELLER_OPEN_ID


@pytest.fixture(autouse=True)
def app_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOK_APP_SECRET", SECRET)


@pytest.fixture
def cfg(shop_and_emu: Path) -> Path:
    return shop_and_emu


def run(cfg: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return cli("--config", str(cfg), *args, **kwargs)


def log_in(
    cfg: Path, provider: str, emulator: OAuthEmulator | None = None, user: Any = None
) -> None:
    if emulator is not None:
        emulator.users = [user]  # the consent page offers only this one
    result = login("--config", str(cfg), "login", provider)
    assert result.returncode == 0, result.stderr


def copy(provider: str, source: str, account: str, *, due: bool) -> Token:
    """Store a copy of an account's token as another account, due for a refresh or not."""
    store = TokenStore()
    token = Token.from_dict(store.read(provider, source).to_dict())
    token.account_id, token.account_label = account, account.replace("-", " ").title()
    if due:
        make_due(token)
    store.save(token)
    return token


def make_due(token: Token) -> Token:
    now = time.time()
    token.obtained_at, token.expires_at = now - 7 * 86400, now + 10  # inside every leeway
    return token


def set_due(provider: str, account: str) -> Token:
    store = TokenStore()
    token = make_due(store.read(provider, account))
    store.save(token)
    return token


def access(provider: str, account: str) -> str:
    return TokenStore().read(provider, account).access_token


def emu_refreshes(emulator: OAuthEmulator) -> int:
    return sum(c["grant_type"] == "refresh_token" for c in emulator.token_calls)


def no_secrets(output: str) -> None:
    for provider in (SHOP, "emu"):
        for token in TokenStore().list(provider):
            assert token.access_token not in output
            assert not token.refresh_token or token.refresh_token not in output
    assert SECRET not in output


def revoke_at(emulator: OAuthEmulator, refresh_token: str) -> None:
    """Revoke one refresh token at the emulator's RFC 7009 endpoint, as the user might."""
    form = {
        "token": refresh_token,
        "token_type_hint": "refresh_token",
        "client_id": "loopauth-demo",
    }
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{emulator.url}/revoke", urllib.parse.urlencode(form).encode()) as resp:
        assert resp.status == 200


# -- what is due, across providers ------------------------------------------------------------


def test_only_due_accounts_are_refreshed_across_two_providers(
    cfg: Path, emulator: OAuthEmulator, tiktok: TikTokShopEmulator
) -> None:
    log_in(cfg, "emu", emulator, ADA)
    log_in(cfg, SHOP)
    copy("emu", "user-1", "acct-1", due=True)
    copy("emu", "user-1", "acct-2", due=True)
    copy("emu", "user-1", "acct-3", due=False)
    copy(SHOP, OPEN_ID, "shop-copy", due=True)
    before = {
        (p, a): access(p, a) for p, a in [("emu", "user-1"), ("emu", "acct-3"), (SHOP, OPEN_ID)]
    }

    result = run(cfg, "refresh", "--all")
    assert result.returncode == 0, result.stderr
    assert emu_refreshes(emulator) == 2
    assert tiktok.token_calls.count(REFRESH_PATH) == 1
    for (provider, account), old in before.items():
        assert access(provider, account) == old  # not due: untouched
    assert access("emu", "acct-1") != access("emu", "user-1")
    assert access(SHOP, "shop-copy") == tiktok.responses[-1]["data"]["access_token"]
    lines = result.stderr.splitlines()
    for refreshed in (
        "emu acct-1: refreshed",
        "emu acct-2: refreshed",
        f"{SHOP} shop-copy: refreshed",
    ):
        assert refreshed in lines, result.stderr
    assert not any("user-1" in line or "acct-3" in line for line in lines)
    assert "refresh --all: 3 refreshed, 0 failed, 3 not due, of 6 accounts" in result.stderr
    assert "\r" not in result.stderr and "%|" not in result.stderr  # no terminal: plain lines
    assert result.stdout == ""

    again = run(cfg, "refresh", "--all", "emu")
    assert again.returncode == 0, again.stderr
    assert "refresh --all: 0 refreshed, 0 failed, 4 not due, of 4 accounts" in again.stderr
    assert emu_refreshes(emulator) == 2
    no_secrets(result.stdout + result.stderr + again.stderr)


def test_force_refreshes_every_account_with_a_json_summary(
    cfg: Path, emulator: OAuthEmulator, tiktok: TikTokShopEmulator
) -> None:
    log_in(cfg, "emu", emulator, ADA)
    log_in(cfg, "emu", emulator, GRACE)
    log_in(cfg, SHOP)
    result = run(cfg, "refresh", "--all", "--force", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary == {"refreshed": 3, "failed": [], "not_due": 0, "accounts": 3}
    assert result.stderr == ""
    assert emu_refreshes(emulator) == 2 and tiktok.token_calls.count(REFRESH_PATH) == 1

    only = json.loads(run(cfg, "refresh", "--all", "emu", "--force", "--json").stdout)
    assert only == {"refreshed": 2, "failed": [], "not_due": 0, "accounts": 2}
    assert emu_refreshes(emulator) == 4 and tiktok.token_calls.count(REFRESH_PATH) == 1
    no_secrets(result.stdout + result.stderr)


def test_a_revoked_account_is_reported_and_the_others_still_refresh(
    cfg: Path, emulator: OAuthEmulator, tiktok: TikTokShopEmulator
) -> None:
    log_in(cfg, "emu", emulator, ADA)
    log_in(cfg, "emu", emulator, GRACE)
    log_in(cfg, SHOP)
    revoke_at(emulator, TokenStore().read("emu", "user-2").refresh_token or "")
    for provider, account in (("emu", "user-1"), ("emu", "user-2"), (SHOP, OPEN_ID)):
        set_due(provider, account)
    copy(SHOP, OPEN_ID, "damaged", due=True)
    damaged = Path(TokenStore().path_for(SHOP, "damaged"))
    damaged.write_text("{ half a file")
    ada_before = access("emu", "user-1")

    result = run(cfg, "refresh", "--all")
    assert result.returncode == 6, result.stderr
    failed = sorted(line for line in result.stderr.splitlines() if "FAILED" in line)
    assert len(failed) == 2, result.stderr
    assert failed[0].startswith("emu user-2: FAILED")
    assert "invalid_grant" in failed[0] and "loopauth login emu --account user-2" in failed[0]
    assert failed[1].startswith(f"{SHOP} damaged: FAILED") and str(damaged) in failed[1]
    assert "emu user-1: refreshed" in result.stderr
    assert f"{SHOP} {OPEN_ID}: refreshed" in result.stderr
    assert "refresh --all: 2 refreshed, 2 failed, 0 not due, of 4 accounts" in result.stderr
    assert access("emu", "user-1") != ada_before
    status = run(cfg, "status", "emu")
    [grace] = [line for line in status.stdout.splitlines() if "user-2" in line]
    assert "dead: log in again" in grace

    # Remembered as dead: the next run reports it without asking the emulator again.
    calls = emu_refreshes(emulator)
    again = run(cfg, "refresh", "--all", "--json")
    assert again.returncode == 6, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["refreshed"], summary["not_due"], summary["accounts"]) == (0, 2, 4)
    rows = {row["account_id"]: row for row in summary["failed"]}
    assert set(rows) == {"user-2", "damaged"}
    assert (rows["user-2"]["provider"], rows["user-2"]["exit_code"]) == ("emu", 6)
    assert "loopauth login emu --account user-2" in rows["user-2"]["error"]
    assert rows["damaged"]["provider"] == SHOP and str(damaged) in rows["damaged"]["error"]
    # Failures reach stderr with --json too (what cron mails); successes do not.
    assert "emu user-2: FAILED" in again.stderr and f"{SHOP} damaged: FAILED" in again.stderr
    assert "refreshed" not in again.stderr
    assert emu_refreshes(emulator) == calls
    no_secrets(result.stdout + result.stderr + again.stdout + again.stderr + status.stdout)


def test_a_broken_provider_does_not_stop_the_others(
    cfg: Path,
    emulator: OAuthEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    isolated: Path,
) -> None:
    log_in(cfg, "emu", emulator, ADA)
    set_due("emu", "user-1")
    monkeypatch.delenv("TIKTOK_APP_SECRET")  # tiktok-shop can't be used now: its secret is unset
    # With no tokens of its own it has nothing to refresh: not a failure.
    nothing = run(cfg, "refresh", "--all")
    assert nothing.returncode == 0, nothing.stderr
    assert "emu user-1: refreshed" in nothing.stderr
    set_due("emu", "user-1")
    monkeypatch.setenv("TIKTOK_APP_SECRET", SECRET)
    log_in(cfg, SHOP)  # now it holds a token it cannot refresh without the secret
    monkeypatch.delenv("TIKTOK_APP_SECRET")
    result = run(cfg, "refresh", "--all")
    assert result.returncode == 2, result.stderr
    assert "TIKTOK_APP_SECRET" in result.stderr
    assert "emu user-1: refreshed" in result.stderr
    assert emu_refreshes(emulator) == 2
    assert "1 refreshed, 0 failed, 0 not due, of 1 accounts" in result.stderr
    assert "1 provider(s) could not be used" in result.stderr
    as_json = run(cfg, "refresh", "--all", "--force", "--json")
    assert as_json.returncode == 2
    summary = json.loads(as_json.stdout)
    assert summary["refreshed"] == 1
    assert "TIKTOK_APP_SECRET" in as_json.stderr
    [row] = summary["failed"]
    assert row["provider"] == SHOP and "TIKTOK_APP_SECRET" in row["error"]

    # A store that can't be trusted stops only its own provider too.
    monkeypatch.setenv("TIKTOK_APP_SECRET", SECRET)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    import shutil

    shutil.rmtree(isolated / "tokens" / SHOP)
    (isolated / "tokens" / SHOP).symlink_to(elsewhere)
    set_due("emu", "user-1")
    linked = run(cfg, "refresh", "--all")
    assert linked.returncode == 2, linked.stderr
    assert "is a symbolic link" in linked.stderr
    assert "emu user-1: refreshed" in linked.stderr and emu_refreshes(emulator) == 4


def test_usage_errors(cfg: Path) -> None:
    for args in (
        ("refresh", "--all", "--account", "user-1"),
        ("refresh", "--all", "--output", "x.json"),
        ("refresh", "emu", "--force"),
        ("refresh", "emu", "--json"),
    ):
        result = run(cfg, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "--all" in result.stderr, args
    for jobs in ("0", "-3"):
        result = run(cfg, "refresh", "--all", "--jobs", jobs)
        assert result.returncode == 2 and "--jobs must be at least 1" in result.stderr


# -- how many at once --------------------------------------------------------------------------


class SlowEmulator(OAuthEmulator):
    """Answers the token endpoint after a pause, counting the requests in flight."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.in_flight = self.most_in_flight = 0
        self._count = threading.Lock()

    def reset(self) -> None:
        self.most_in_flight = 0

    def route(self, req: Request) -> Response:
        if req.path != "/token" or "refresh_token" not in req.form.get("grant_type", ""):
            return super().route(req)
        with self._count:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(0.3)
            return super().route(req)
        finally:
            with self._count:
                self.in_flight -= 1


def test_jobs_bounds_the_refreshes_in_flight(tmp_path: Path) -> None:
    with SlowEmulator() as slow:
        cfg = write_config(
            tmp_path / "slow.yaml",
            f"""
            providers:
              emu:
                plugin: oauth2
                issuer: {slow.url}
                client_id: loopauth-demo
                scope: openid
            """,
        )
        log_in(cfg, "emu")
        for i in range(6):
            copy("emu", "user-1", f"acct-{i}", due=True)
        result = run(cfg, "refresh", "--all", "--jobs", "2")
        assert result.returncode == 0, result.stderr
        assert "6 refreshed, 0 failed, 1 not due, of 7 accounts" in result.stderr
        assert slow.most_in_flight == 2

        # The instrument sees more when more are allowed (so the bound above means something).
        slow.reset()
        result = run(cfg, "refresh", "--all", "--force", "--jobs", "7")
        assert result.returncode == 0, result.stderr
        assert slow.most_in_flight >= 3


# -- on a terminal -----------------------------------------------------------------------------


def test_a_progress_bar_on_a_terminal(
    cfg: Path, emulator: OAuthEmulator, tiktok: TikTokShopEmulator
) -> None:
    log_in(cfg, "emu", emulator, ADA)
    log_in(cfg, "emu", emulator, GRACE)
    log_in(cfg, SHOP)
    revoke_at(emulator, TokenStore().read("emu", "user-2").refresh_token or "")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopauth", "--config", str(cfg), "refresh", "--all", "--force"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.stdout is not None
    stdout = proc.stdout.read()
    assert proc.wait(30) == 6
    out = b"".join(chunks).decode("utf-8", "replace")
    assert "%|" in out and "account/s" in out and "/3 [" in out, out
    assert "FAILED emu user-2" in out  # failures still get their own line
    assert "emu user-1: refreshed" not in out  # the bar, not a line per account
    assert "2 refreshed, 1 failed, 0 not due, of 3 accounts" in out
    assert stdout == b""
    no_secrets(out)
