"""SIGKILL at random moments while tokens are saved or refreshed: the store always reads back as
the old token or the new one, never a broken file, and temporary files do not pile up."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loopauth.emulator import OAuthEmulator
from loopauth.store import TokenStore
from loopauth.testing import login, write_config

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")

WRITER = """
import sys, time
from loopauth.store import TokenStore
from loopauth.token import Token
store = TokenStore()
n = int(sys.argv[1])
while True:
    n += 1
    store.save(Token(f"tok-{n}", provider="crash", account_id="me", refresh_token=f"rt-{n}",
                     expires_at=time.time() + 3600, raw={"blob": "x" * 20000, "n": n}))
    print(n, flush=True)
"""


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_killed_while_saving(isolated: Path) -> None:
    rng = random.Random(20261125)
    last_seen = 0
    folder = isolated / "tokens" / "crash"
    for _ in range(60):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(last_seen)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # wait until the writer runs (it has saved once)
        time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        token = TokenStore().find("crash")  # raises on a damaged file
        n = int(token.access_token.split("-")[1])
        assert token.refresh_token == f"rt-{n}" and token.raw["n"] == n
        assert n >= last_seen  # never older than what was already saved
        last_seen = n
        assert len(temp_files(folder)) <= 1  # at most the one a kill just interrupted
    TokenStore().save(TokenStore().find("crash"))
    assert temp_files(folder) == []


def test_killed_while_refreshing(tmp_path: Path, isolated: Path) -> None:
    rng = random.Random(7)
    with OAuthEmulator(rotate_refresh_tokens=False) as emu:
        cfg = write_config(
            tmp_path / "p.yaml",
            f"""
            providers:
              e:
                issuer: {emu.url}
                client_id: loopauth-demo
        """,
        )
        assert login("--config", str(cfg), "login").returncode == 0
        issued = {TokenStore().find("e").access_token}
        for _ in range(25):
            proc = subprocess.Popen(
                [sys.executable, "-m", "loopauth", "--config", str(cfg), "refresh"],
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(0.05, 0.6))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            token = TokenStore().find("e")
            issued_now = emu.issued_access_tokens()
            assert token.access_token in issued_now  # the old one or a new one, intact
            issued.add(token.access_token)
        assert len(issued) > 1  # some refreshes did complete before their kill
    assert len(temp_files(isolated / "tokens" / "e")) <= 1
