"""`loopauth token` with a cached token loads none of YAML, pluggy, authlib or requests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from loopauth.testing import cli, login

HEAVY = (
    "yaml",
    "pluggy",
    "authlib",
    "requests",
    "urllib3",
    "filelock",
    "argparse",
    "dataclasses",
    "typing",
    "loopauth.config",
    "loopauth.plugin_manager",
)


def imported_modules(*args: str) -> tuple[int, str, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "loopauth", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=os.environ.copy(),
    )
    modules = {
        line.split("|")[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    return proc.returncode, proc.stdout, modules


def test_cached_token_loads_no_heavy_module(config: Path) -> None:
    assert login("--config", str(config), "login").returncode == 0
    expected = cli("--config", str(config), "token").stdout  # also rebuilds the cache
    code, out, modules = imported_modules("--config", str(config), "token")
    assert code == 0 and out == expected
    assert "loopauth.cli.fastpath" in modules
    assert not {m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY}, modules


def test_cache_is_rebuilt_when_providers_yaml_changes(config: Path, tmp_path: Path) -> None:
    assert login("--config", str(config), "login").returncode == 0
    assert cli("--config", str(config), "token").returncode == 0
    text = config.read_text()
    config.write_text(text.replace("  emu:", "  renamed:"))
    os.utime(config, ns=(time.time_ns(), time.time_ns() + 5_000_000))
    out = cli("--config", str(config), "token", "emu")
    assert out.returncode == 2 and "no provider named 'emu'" in out.stderr
    code, _, modules = imported_modules("--config", str(config), "token", "emu")
    assert code == 2 and "yaml" in modules  # the stale cache was not trusted


def test_cache_follows_environment_used_by_default(tmp_path: Path, config: Path) -> None:
    text = config.read_text().replace("providers:", "default: ${WHICH:-emu}\nproviders:")
    config.write_text(text)
    assert login("--config", str(config), "login").returncode == 0
    assert cli("--config", str(config), "token").returncode == 0
    out = cli("--config", str(config), "token", env={"WHICH": "other"})
    assert out.returncode == 2 and "names no configured provider" in out.stderr


def test_a_caller_on_an_expired_token_waits_on_the_lock_and_rereads_cheaply(
    config: Path, emulator: object
) -> None:
    """While one process refreshes, the others wait on its lock and re-read: no YAML, no HTTP."""
    from loopauth.store import TokenStore

    assert login("--config", str(config), "login").returncode == 0
    assert cli("--config", str(config), "token").returncode == 0  # the cache
    store = TokenStore()
    token = store.find("emu")
    token.expires_at = time.time() - 10
    store.save(token)
    holder = store.lock("emu", token.account)  # the store's own: save() re-enters it
    holder.acquire()  # "another process is refreshing"
    try:
        waiter = subprocess.Popen(
            [
                sys.executable,
                "-X",
                "importtime",
                "-m",
                "loopauth",
                "--config",
                str(config),
                "token",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)
        assert waiter.poll() is None  # it waits for the lock instead of refreshing too
        token.access_token, token.expires_at = "refreshed-by-the-holder", time.time() + 3600
        store.save(token)
    finally:
        holder.release()
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0 and out == "refreshed-by-the-holder\n", err
    modules = {line.split("|")[-1].strip() for line in err.splitlines() if "import time:" in line}
    assert not {m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY}, modules


def test_the_flock_lock_excludes_threads_and_processes_and_reenters(tmp_path: Path) -> None:
    import threading

    from loopauth import private

    path = str(tmp_path / "a.lock")
    lock = private.lock(path, timeout=5)
    order: list[str] = []
    with lock, lock:  # re-entrant in the owning thread
        other = threading.Thread(
            target=lambda: (lock.acquire(), order.append("thread"), lock.release())
        )
        other.start()
        code = (
            "from loopauth import private\n"
            f"lock = private.lock({path!r}, 0.3)\n"
            "try:\n    lock.acquire()\nexcept private.LockTimeout:\n    print('timeout')"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
        )
        assert proc.stdout.strip() == "timeout", proc.stderr  # another process can't take it
        time.sleep(0.2)
        order.append("owner")
    other.join(5)
    assert order == ["owner", "thread"]  # the other thread waited for the owner's last release
