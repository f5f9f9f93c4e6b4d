"""`loopauth exec`: a command run with a valid token in its environment, never on its argv."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loopauth.emulator import OAuthEmulator
from loopauth.store import TokenStore
from loopauth.testing import cli, login

PRINT = "import os, sys; print(os.environ[sys.argv[1]]); print(sys.argv[2:])"


def test_exec_puts_the_token_in_the_environment_and_passes_the_exit_code_on(
    config: Path,
) -> None:
    assert login("--config", str(config), "login").returncode == 0
    token = TokenStore().find("emu").access_token
    out = cli(
        "--config", str(config), "exec", "--", sys.executable, "-c", PRINT, "ACCESS_TOKEN", "x"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [token, "['x']"]  # the token only in the environment
    named = cli(
        "--config",
        str(config),
        "exec",
        "emu",
        "--env",
        "GH_TOKEN",
        "--",
        sys.executable,
        "-c",
        PRINT,
        "GH_TOKEN",
    )
    assert named.returncode == 0 and named.stdout.splitlines()[0] == token, named.stderr
    code = cli("--config", str(config), "exec", "--", sys.executable, "-c", "raise SystemExit(7)")
    assert code.returncode == 7


def test_exec_refreshes_an_expired_token_first(config: Path, emulator: OAuthEmulator) -> None:
    assert login("--config", str(config), "login").returncode == 0
    store = TokenStore()
    old = store.find("emu")
    old.expires_at = time.time() - 5
    store.save(old)
    out = cli("--config", str(config), "exec", "--", sys.executable, "-c", PRINT, "ACCESS_TOKEN")
    assert out.returncode == 0, out.stderr
    new = TokenStore().find("emu").access_token
    assert out.stdout.splitlines()[0] == new != old.access_token
    assert [c["grant_type"] for c in emulator.token_calls] == [
        "authorization_code",
        "refresh_token",
    ]


def test_exec_usage_errors_and_a_missing_command(config: Path) -> None:
    assert login("--config", str(config), "login").returncode == 0
    none = cli("--config", str(config), "exec")
    assert none.returncode == 2 and "exec needs a command" in none.stderr
    bad = cli("--config", str(config), "exec", "--env", "1X", "--", "true")
    assert bad.returncode == 2 and "is not an environment variable name" in bad.stderr
    missing = cli("--config", str(config), "exec", "--", "no-such-command-anywhere")
    assert missing.returncode == 127 and "cannot run 'no-such-command-anywhere'" in missing.stderr
    assert "Traceback" not in missing.stderr
    nothing_stored = cli("--config", str(config), "logout", "--local")
    assert nothing_stored.returncode == 0
    gone = cli("--config", str(config), "exec", "--", "true")
    assert gone.returncode == 6 and "run: loopauth login emu" in gone.stderr


@pytest.mark.skipif(os.name != "posix", reason="signals to a process are POSIX")
def test_exec_hands_signals_to_the_command(config: Path) -> None:
    assert login("--config", str(config), "login").returncode == 0
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loopauth",
            "--config",
            str(config),
            "exec",
            "--",
            sys.executable,
            "-c",
            script,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)  # loopauth became the command: it gets the signal itself
    assert proc.wait(10) == 42
