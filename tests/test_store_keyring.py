"""`store: keyring`: tokens in a real Secret Service (gnome-keyring on a private D-Bus), through
the real CLI; only the index, the default account and the locks are files."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from secret_service import DBUS_DAEMON, GNOME_KEYRING, secret_service

from loopauth.emulator import OAuthEmulator, browse
from loopauth.errors import StoreWriteError
from loopauth.store import INDEX
from loopauth.testing import cli, login, require_program, write_config
from loopauth.token import Token

SERVICE = "loopauth:emu"


@pytest.fixture
def keyring_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A private gnome-keyring Secret Service, reached by this process and the CLI it runs."""
    require_program(DBUS_DAEMON, "apt-get install dbus-daemon")
    require_program(GNOME_KEYRING, "apt-get install gnome-keyring")
    if find_spec("secretstorage") is None:
        message = "SecretStorage is not installed (pip install 'loopauth[keyring]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {message}")
        pytest.skip(message)
    with secret_service() as env:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield env


def keyring_config(path: Path, issuer: str, options: str = "") -> Path:
    return write_config(
        path,
        f"""
        providers:
          emu:
            issuer: {issuer}
            client_id: loopauth-demo
            scope: openid profile email offline_access
            store: keyring
            {options}
        """,
    )


@pytest.fixture
def kconfig(tmp_path: Path, emulator: OAuthEmulator) -> Path:
    return keyring_config(tmp_path / "providers.yaml", emulator.url)


def secret(account: str, service: str = SERVICE) -> str | None:
    """Read an entry straight from the Secret Service (this process has the same env)."""
    from keyring.backends.SecretService import Keyring

    value = Keyring().get_password(service, account)
    assert value is None or isinstance(value, str)
    return value


def plant(account: str, value: str, service: str = SERVICE) -> None:
    from keyring.backends.SecretService import Keyring

    Keyring().set_password(service, account, value)


def stored(account: str) -> dict[str, Any]:
    value = secret(account)
    assert value is not None, f"no keyring entry for {account}"
    data = json.loads(value)
    assert isinstance(data, dict)
    return data


def files_holding(folder: Path, *values: str) -> list[str]:
    """Every file under `folder` whose bytes contain one of `values`."""
    hits = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{path}: {v[:8]}..." for v in values if v and v.encode() in data]
    return hits


def test_login_token_status_logout_keep_the_token_in_the_keyring(
    keyring_env: dict[str, str],
    kconfig: Path,
    isolated: Path,
    tmp_path: Path,
    emulator: OAuthEmulator,
) -> None:
    result = login("--config", str(kconfig), "login")
    assert result.returncode == 0, result.stderr
    assert "token saved to the OS keyring (SecretService), loopauth:emu user-1" in result.stderr
    data = stored("user-1")
    assert data["account_id"] == "user-1" and data["refresh_token"]
    assert secret("user-1") == json.dumps(data, separators=(",", ":"))  # compact

    out = cli("--config", str(kconfig), "token")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == data["access_token"]

    # Only bookkeeping on disk: no token, no refresh token, no id_token, in any file.
    secrets = (data["access_token"], data["refresh_token"], data["raw"].get("id_token", ""))
    assert files_holding(tmp_path, *secrets) == []
    assert not (isolated / "tokens").exists()
    index = json.loads((isolated / "keyring" / "emu" / INDEX).read_text())
    assert index["accounts"] == {"user-1": "ada@example.test"}

    status = cli("--config", str(kconfig), "status", "--json")
    assert status.returncode == 0, status.stderr
    [row] = json.loads(status.stdout)
    assert row["account_id"] == "user-1" and row["account_label"] == "ada@example.test"
    assert row["store"] == "keyring (SecretService)" and row["damaged"] is None
    assert data["access_token"] not in status.stdout

    out = cli("--config", str(kconfig), "logout")
    assert out.returncode == 0, out.stderr
    assert secret("user-1") is None
    index = json.loads((isolated / "keyring" / "emu" / INDEX).read_text())
    assert index["accounts"] == {}
    out = cli("--config", str(kconfig), "token")
    assert out.returncode == 6 and "run: loopauth login emu" in out.stderr


def test_an_expired_token_is_refreshed_once_into_the_keyring(
    keyring_env: dict[str, str], tmp_path: Path
) -> None:
    with OAuthEmulator(access_token_lifetime=30, rotate_refresh_tokens=True) as emu:
        cfg = keyring_config(tmp_path / "short.yaml", emu.url)
        assert login("--config", str(cfg), "login").returncode == 0
        before = stored("user-1")
        before["expires_at"], before["obtained_at"] = time.time() - 5, time.time() - 35
        plant("user-1", json.dumps(before, separators=(",", ":")))

        out = cli("--config", str(cfg), "token")
        assert out.returncode == 0, out.stderr
        after = stored("user-1")
        assert out.stdout.strip() == after["access_token"] != before["access_token"]
        assert after["refresh_token"] != before["refresh_token"]  # rotated, and kept
        assert after["expires_at"] > time.time() + 20
        again = cli("--config", str(cfg), "token")  # fresh now: no second refresh
        assert again.stdout == out.stdout
        assert [c["grant_type"] for c in emu.token_calls] == [
            "authorization_code",
            "refresh_token",
        ]


NO_BUS = {"DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/loopauth-test-bus"}


@pytest.mark.parametrize(
    ("env", "why"),
    [
        pytest.param(
            {**NO_BUS, "PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring"},
            "SecretService",
            id="no-dbus",
        ),
        pytest.param(
            {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"},
            "found no backend",
            id="fail-backend",
        ),
        pytest.param(
            {"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"},
            "null backend",
            id="null-backend",
        ),
    ],
)
def test_no_usable_keyring_fails_login_before_the_browser(
    kconfig: Path, emulator: OAuthEmulator, env: dict[str, str], why: str
) -> None:
    result = login("--config", str(kconfig), "login", env=env)
    assert result.returncode == 2, result.stderr
    assert result.url is None and emulator.token_calls == []  # no code spent
    assert "no usable OS keyring (" in result.stderr and why in result.stderr
    assert "or use store: file" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_keyring_gone_after_login_is_exit_2_not_a_traceback(
    keyring_env: dict[str, str], kconfig: Path
) -> None:
    assert login("--config", str(kconfig), "login").returncode == 0
    for command in ("token", "status", "logout"):
        out = cli("--config", str(kconfig), command, env=NO_BUS)
        assert out.returncode == 2, (command, out.stderr)
        assert "no usable OS keyring (SecretService" in out.stderr, (command, out.stderr)
        assert "or use store: file" in out.stderr and "Traceback" not in out.stderr
    assert secret("user-1") is not None  # the failed logout removed nothing


def test_a_locked_keyring_is_exit_2(keyring_env: dict[str, str], kconfig: Path) -> None:
    import secretstorage
    from jeepney.io.blocking import open_dbus_connection

    assert login("--config", str(kconfig), "login").returncode == 0
    with open_dbus_connection(bus=keyring_env["DBUS_SESSION_BUS_ADDRESS"]) as connection:
        secretstorage.Collection(connection).lock()  # no prompter here: unlocking fails
    out = cli("--config", str(kconfig), "token")
    assert out.returncode == 2, out.stderr
    assert "no usable OS keyring (SecretService: it is locked and was not unlocked" in out.stderr
    assert "install or unlock one, or use store: file" in out.stderr
    assert "Traceback" not in out.stderr


def _login_second_account(config: Path) -> None:
    result = login(
        "--config",
        str(config),
        "login",
        decision=None,
        before=lambda url: browse(url, account="user-2"),
    )
    assert result.returncode == 0, result.stderr


GARBAGE = (
    "hunter2 is not JSON",
    '{"password": "hunter2"}',
    '{"access_token": "hunter2", "scopes": 7}',
)


def test_a_garbage_secret_is_exit_6_and_spares_the_other_accounts(
    keyring_env: dict[str, str], kconfig: Path
) -> None:
    assert login("--config", str(kconfig), "login").returncode == 0
    _login_second_account(kconfig)
    grace = stored("user-2")["access_token"]
    for garbage in GARBAGE:
        plant("user-1", garbage)
        out = cli("--config", str(kconfig), "token", "--account", "user-1")
        assert out.returncode == 6, (garbage, out.stderr)
        assert "keyring entry of account 'user-1' of emu" in out.stderr
        assert "is not a loopauth token" in out.stderr
        assert "hunter2" not in out.stderr and "Traceback" not in out.stderr

    out = cli("--config", str(kconfig), "token", "--account", "user-2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == grace
    status = cli("--config", str(kconfig), "status", "--json")
    assert status.returncode == 6, status.stderr  # a damaged entry is shown, and counted
    ada, grace_row = json.loads(status.stdout)
    assert ada["account_id"] == "user-1" and "is not a loopauth token" in ada["damaged"]
    assert grace_row["account_id"] == "user-2" and grace_row["damaged"] is None
    assert "hunter2" not in status.stdout + status.stderr

    out = cli("--config", str(kconfig), "logout", "--account", "user-1")  # damaged: it can go
    assert out.returncode == 0, out.stderr
    assert secret("user-1") is None and secret("user-2") is not None
    out = cli("--config", str(kconfig), "token")  # the only account left
    assert out.returncode == 0 and out.stdout.strip() == grace


def test_an_indexed_account_whose_secret_is_gone_is_absent(
    keyring_env: dict[str, str], kconfig: Path
) -> None:
    assert login("--config", str(kconfig), "login").returncode == 0
    from keyring.backends.SecretService import Keyring

    Keyring().delete_password(SERVICE, "user-1")
    out = cli("--config", str(kconfig), "token")
    assert out.returncode == 6, out.stderr
    assert "no stored token for account 'user-1' of emu" in out.stderr
    status = cli("--config", str(kconfig), "status")
    assert status.returncode == 0 and "emu: not logged in" in status.stdout


def test_service_option_and_describe(
    keyring_env: dict[str, str],
    tmp_path: Path,
    emulator: OAuthEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = keyring_config(tmp_path / "p.yaml", emulator.url, "store_options: {service: work}")
    result = login("--config", str(cfg), "login")
    assert result.returncode == 0, result.stderr
    assert secret("user-1", "work:emu") is not None and secret("user-1") is None

    from loopauth.plugins.keyring_store import KeyringStore

    monkeypatch.setattr("keyring.core._keyring_backend", None)  # chosen again, from this env
    assert KeyringStore().describe() == "keyring (SecretService)"
    assert (
        KeyringStore(service="work").describe() == "keyring (SecretService, service work:PROVIDER)"
    )
    assert KeyringStore(service="work").find("emu").account_id == "user-1"


# -- without a Secret Service ----------------------------------------------------------------------


class WinVaultKeyring:
    """Stands in for keyring.backends.Windows.WinVaultKeyring (2560 bytes per secret)."""

    __module__ = "keyring.backends.Windows"

    def __init__(self) -> None:
        self.stored: dict[tuple[str, str], str] = {}
        self.broken: set[str] = set()  # usernames whose writes fail

    def get_password(self, service: str, username: str) -> str | None:
        return self.stored.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        if username in self.broken:  # a backend quoting what it was given, as some do
            raise RuntimeError(f"cannot store {password!r}")
        self.stored[service, username] = password


def _token(size: int, account: str = "acct") -> Token:
    return Token("at-" + "x" * size, provider="emu", refresh_token="rt-1", account_id=account)


def _fake_store(vault: WinVaultKeyring) -> Any:
    from loopauth.plugins.keyring_store import KeyringStore

    store = KeyringStore()
    store._keyring = vault  # type: ignore[assignment]
    return store


def test_a_token_too_large_for_windows_is_a_clear_error_not_a_truncation(
    isolated: Path,
) -> None:
    vault = WinVaultKeyring()
    store = _fake_store(vault)
    store.save(_token(500))  # 1,000-odd bytes of UTF-16: fits
    assert store.find("emu").access_token == "at-" + "x" * 500
    for account in ("acct", "other"):
        with pytest.raises(StoreWriteError) as info:
            store.save(_token(1500, account))
        message = str(info.value)
        assert "too large for the OS keyring (WinVaultKeyring)" in message
        assert "at most 2,560" in message and "use store: file" in message
        assert "xxxx" not in message
    assert store.find("emu").access_token == "at-" + "x" * 500  # the previous one is intact
    assert store.accounts("emu") == {"acct": None}  # and no account without a token
    assert list(vault.stored) == [(SERVICE, "acct")]


def test_a_failed_write_names_the_backend_not_the_token(isolated: Path) -> None:
    vault = WinVaultKeyring()
    vault.broken.add("acct")
    store = _fake_store(vault)
    with pytest.raises(StoreWriteError) as info:
        store.save(_token(10))
    assert info.value.exit_code == 2
    message = str(info.value)
    assert message.startswith("no usable OS keyring (WinVaultKeyring: RuntimeError: cannot store")
    assert "at-xxxx" not in message and "rt-1" not in message
    assert store.accounts("emu") == {}  # the new account was forgotten again

    # An import stores what it can, and indexes what it stored even when one fails.
    with pytest.raises(StoreWriteError):
        store.save_many([_token(10, "a"), _token(10, "acct"), _token(10, "b")])
    assert store.accounts("emu") == {"a": None}


def test_keyring_not_installed(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loopauth.plugins import keyring_store

    monkeypatch.setitem(__import__("sys").modules, "keyring", None)
    with pytest.raises(StoreWriteError, match=r"pip install 'loopauth\[keyring\]'"):
        keyring_store.KeyringStore().find("emu", "acct")
    assert keyring_store._validate("keyring", {}) == keyring_store.INSTALL
