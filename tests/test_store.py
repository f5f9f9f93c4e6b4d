"""The token store: private files, atomic replacement, no leftovers, damaged files named."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from loopauth.store import StoreError, TokenStore
from loopauth.token import Token


def token(value: str = "at-1", account: str = "acct") -> Token:
    return Token(
        value,
        provider="emu",
        refresh_token="rt-1",
        expires_at=time.time() + 3600,
        account_id=account,
        account_label="Label",
        raw={"access_token": value},
    )


def test_round_trip_and_listing(isolated: Path) -> None:
    store = TokenStore()
    path = store.save(token())
    assert Path(path).parent == isolated / "tokens" / "emu"
    assert store.find("emu") == token() or store.find("emu").access_token == "at-1"
    assert store.find("emu", "Label").account_id == "acct"
    assert [t.account_id for t in store.list()] == ["acct"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_modes_even_with_a_permissive_umask(isolated: Path) -> None:
    old = os.umask(0)
    try:
        path = Path(TokenStore().save(token()))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_failed_write_keeps_the_previous_token(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TokenStore()
    path = Path(store.save(token("old")))

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(StoreError) as info:
        store.save(token("new"))
    assert str(path) in str(info.value) and "No space left on device" in str(info.value)
    assert "unchanged" in str(info.value)
    monkeypatch.undo()
    assert json.loads(path.read_text())["access_token"] == "old"
    files = [p.name for p in path.parent.iterdir() if p.suffix != ".lock" and p.name[0] != "."]
    assert files == [path.name]  # no temp file left, only the index beside it


def test_leftover_temp_files_of_a_killed_writer_are_swept(isolated: Path) -> None:
    store = TokenStore()
    path = Path(store.save(token("one")))
    (path.parent / f".{path.name}.abc123.tmp").write_text("{half")
    store.save(token("two"))
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_damaged_file_is_named_not_deleted(isolated: Path) -> None:
    store = TokenStore()
    path = Path(store.save(token()))
    path.write_text("{not json")
    with pytest.raises(StoreError) as info:
        store.find("emu")
    assert str(path) in str(info.value) and info.value.exit_code == 6
    assert path.read_text() == "{not json"


def test_token_repr_hides_secrets() -> None:
    t = token("secret-access-value")
    t.refresh_token = "secret-refresh-value"
    assert "secret" not in repr(t)


def test_paths_match_platformdirs(monkeypatch: pytest.MonkeyPatch) -> None:
    platformdirs = pytest.importorskip("platformdirs")
    from loopauth import paths

    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert paths.user_data_dir() == platformdirs.user_data_dir("loopauth", appauthor=False)
    assert paths.user_config_dir() == platformdirs.user_config_dir("loopauth", appauthor=False)
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_DATA_HOME", "/tmp/xdg-data")
        assert paths.user_data_dir() == platformdirs.user_data_dir("loopauth", appauthor=False)
