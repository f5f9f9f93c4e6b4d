"""Many accounts per provider, through the real CLI: choosing, switching, 10,000 of them,
damaged files, the account index, and the leeway for short-lived tokens."""

from __future__ import annotations

import builtins
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import loopauth
from loopauth import private
from loopauth import store as store_module
from loopauth.emulator import OAuthEmulator
from loopauth.emulator.registry import DEFAULT_USERS, EmulatorUser
from loopauth.store import TokenStore
from loopauth.testing import cli, login, write_config
from loopauth.token import Token

ADA, GRACE = DEFAULT_USERS
ISSUER = "http://127.0.0.1:9"  # the 10,000-account store never talks to anyone: fresh tokens
BIG = 10_000
SMALL = 1_000

# Runs `loopauth ARGS` as a child and writes its exit code and peak RSS (KiB) to argv[1].
PEAK_RSS = """
import resource, subprocess, sys
code = subprocess.call([sys.executable, "-m", "loopauth", *sys.argv[2:]])
with open(sys.argv[1], "w") as f:
    f.write(f"{code} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
"""


def run(config: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return cli("--config", str(config), *args, **kwargs)


def log_in_as(config: Path, emulator: OAuthEmulator, user: EmulatorUser) -> None:
    emulator.users = [user]  # the consent page offers only this one
    result = login("--config", str(config), "login", "emu")
    assert result.returncode == 0, result.stderr


def stored(home: Path, account: str, provider: str = "emu") -> Token:
    return TokenStore(str(home)).read(provider, account)


def token(i: int, *, provider: str = "emu", lifetime: float = 86400) -> Token:
    now = time.time()
    return Token(
        f"access-{i:05d}",
        provider=provider,
        refresh_token=f"refresh-{i:05d}",
        expires_at=now + lifetime,
        obtained_at=now,
        scopes=["openid"],
        account_id=f"shop-{i:05d}",
        account_label=f"Shop {i}",
        bound_to={"issuer": ISSUER, "client_id": "loopauth-demo"},
    )


def offline_config(path: Path) -> Path:
    return write_config(
        path,
        f"""
        providers:
          emu:
            plugin: oauth2
            issuer: {ISSUER}
            client_id: loopauth-demo
        """,
    )


# -- several accounts of one provider ------------------------------------------------------


def test_several_accounts_need_a_choice_and_switch_sets_the_default(
    config: Path, emulator: OAuthEmulator, isolated: Path
) -> None:
    log_in_as(config, emulator, ADA)
    log_in_as(config, emulator, GRACE)
    ada, grace = stored(isolated, "user-1"), stored(isolated, "user-2")

    # No --account, no default: which one? Exit 2, the accounts listed, `switch` suggested.
    result = run(config, "token")
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "emu has 2 accounts" in result.stderr
    assert "user-1 (ada@example.test)" in result.stderr
    assert "user-2 (grace@example.test)" in result.stderr
    assert "loopauth switch emu" in result.stderr

    # By id, and by label in any case.
    assert run(config, "token", "--account", "user-1").stdout.strip() == ada.access_token
    by_label = run(config, "token", "--account", "GRACE@Example.TEST")
    assert by_label.returncode == 0, by_label.stderr
    assert by_label.stdout.strip() == grace.access_token

    switched = run(config, "switch", "emu", "Grace@example.test")
    assert switched.returncode == 0, switched.stderr
    assert "default account is now grace@example.test (user-2)" in switched.stderr
    assert run(config, "token").stdout.strip() == grace.access_token
    assert run(config, "token", "--account", "user-1").stdout.strip() == ada.access_token

    status = run(config, "status")
    assert status.returncode == 0, status.stderr
    rows = {line.split()[1]: line for line in status.stdout.splitlines()[1:] if line.strip()}
    assert "*user-2" in rows and "user-1" in rows and "*user-1" not in rows
    as_json = json.loads(run(config, "status", "--json").stdout)
    assert {r["account_id"]: r["default"] for r in as_json} == {"user-1": False, "user-2": True}

    # Switching back by id works too; the fast path follows the new default at once.
    assert run(config, "switch", "emu", "user-1").returncode == 0
    assert run(config, "token").stdout.strip() == ada.access_token

    for secret in (ada.access_token, ada.refresh_token, grace.access_token, grace.refresh_token):
        assert secret and secret not in status.stdout + status.stderr + switched.stderr


def test_switch_to_an_unknown_account_lists_the_accounts(
    config: Path, emulator: OAuthEmulator
) -> None:
    log_in_as(config, emulator, ADA)
    log_in_as(config, emulator, GRACE)
    result = run(config, "switch", "emu", "nobody@example.test")
    assert result.returncode == 6, result.stderr
    assert "nobody@example.test" in result.stderr
    assert "user-1 (ada@example.test)" in result.stderr and "user-2" in result.stderr
    # Nothing changed: still no default.
    assert run(config, "token").returncode == 2


def test_an_unknown_provider_gets_did_you_mean(config: Path, emulator: OAuthEmulator) -> None:
    log_in_as(config, emulator, ADA)
    for args in (
        ("token", "emo"),
        ("switch", "emo", "user-1"),
        ("status", "emo"),
        ("logout", "emo"),
        ("refresh", "--all", "emo"),
        ("import", "emo", "-"),
    ):
        result = run(config, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "no provider named 'emo' (did you mean 'emu'?)" in result.stderr, args


def test_an_unknown_account_lists_the_first_ten_and_how_many_more(
    config: Path, isolated: Path
) -> None:
    TokenStore().save_many(token(i) for i in range(25))
    result = run(config, "token", "--account", "shop-99999")
    assert result.returncode == 6, result.stderr
    assert result.stdout == ""
    for i in range(10):
        assert f"shop-{i:05d} (Shop {i})" in result.stderr
    assert "shop-00010" not in result.stderr
    assert "and 15 more" in result.stderr
    assert "loopauth login emu --account shop-99999" in result.stderr


# -- 10,000 accounts ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A home with 10,000 accounts, one with 1,000 (both stored by save_many), a providers.yaml.

    In memory (tmpfs) when there is room: the store fsyncs each token file, ~1-2 ms on this
    kind of VM, which would make storing them take most of this suite's time.
    """
    base = tmp_path_factory.mktemp("many")
    shm = Path("/dev/shm")
    fast = shm.is_dir() and shutil.disk_usage(shm).free > 512 << 20
    folder = Path(tempfile.mkdtemp(prefix="loopauth-accounts-", dir=shm)) if fast else base
    try:
        homes = {"big": folder / "big", "small": folder / "small"}
        for home, count in ((homes["big"], BIG), (homes["small"], SMALL)):
            assert TokenStore(str(home)).save_many(token(i) for i in range(count)) == count
        yield {**homes, "config": offline_config(base / "providers.yaml")}
    finally:
        if fast:
            shutil.rmtree(folder, ignore_errors=True)


def test_save_many_writes_the_index_once(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 10,000 accounts must stay cheap: the index (one entry per account) is rewritten once per
    # save_many, not once per token (that would be quadratic). Measured without any shortcut.
    written: list[str] = []
    real_write = private.write

    def spy(path: str, data: bytes, **kwargs: bool) -> None:
        written.append(os.path.basename(path))
        real_write(path, data, **kwargs)

    monkeypatch.setattr(private, "write", spy)
    started = time.perf_counter()
    assert TokenStore().save_many(token(i) for i in range(300)) == 300
    elapsed = time.perf_counter() - started
    # (Twice for a provider without an index yet: rebuilt from the folder, then updated.)
    assert written.count(".index") <= 2
    assert len([w for w in written if w.endswith(".json")]) == 300
    assert len(TokenStore().accounts("emu")) == 300
    # A generous bound: ~0.2 s on a quiet disk here, ~0.5 s on a busy one.
    assert elapsed < 2, f"save_many of 300 tokens took {elapsed:.1f} s"


def test_one_account_among_10000_by_id_and_by_label(many: dict[str, Path]) -> None:
    env = {"LOOPAUTH_HOME": str(many["big"])}
    config = many["config"]
    for _ in range(2):  # the full CLI first (no settings cache yet), then the fast path
        by_id = run(config, "token", "--account", "shop-05000", env=env)
        assert (by_id.returncode, by_id.stdout, by_id.stderr) == (0, "access-05000\n", "")
    by_label = run(config, "token", "--account", "shop 9999", env=env)
    assert (by_label.returncode, by_label.stdout) == (0, "access-09999\n"), by_label.stderr
    none = run(config, "token", env=env)
    assert none.returncode == 2 and "emu has 10,000 accounts" in none.stderr
    assert "and 9,990 more (loopauth status emu)" in none.stderr


def test_an_id_lookup_opens_only_its_own_file(
    many: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = many["big"]
    monkeypatch.setenv("LOOPAUTH_HOME", str(home))
    opened: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def spy_open(file: object, *args: object, **kwargs: object) -> object:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    def spy_os_open(path: object, *args: object, **kwargs: object) -> int:
        opened.append(str(path))
        return real_os_open(path, *args, **kwargs)  # type: ignore[arg-type]

    config = str(many["config"])
    provider = loopauth.load_config(config).select("emu")  # providers.yaml read beforehand
    getattr(store_module, "_PARSED", {}).clear()  # nothing remembered from another test
    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)

    got = loopauth.get_token(provider, account="shop-05000")
    assert got.access_token == "access-05000"
    folder = str(home / "tokens" / "emu")
    mine = [p for p in opened if p.startswith(folder)]
    assert mine == [TokenStore(str(home)).path_for("emu", "shop-05000")], mine

    opened.clear()
    got = loopauth.get_token(provider, account="Shop 7")
    assert got.access_token == "access-00007"
    mine = [os.path.relpath(p, folder) for p in opened if p.startswith(folder)]
    # A label reads one small bucket of the label index, then the one file it names: neither
    # the 10,000-entry index nor 10,000 files.
    assert len(mine) == 2 and mine[0].startswith(".labels" + os.sep), mine
    assert mine[1] == os.path.basename(TokenStore(str(home)).path_for("emu", "shop-00007"))


def peak_rss(config: Path, home: Path, tmp_path: Path, *args: str) -> tuple[int, int, str]:
    """Run `loopauth ARGS` as its own process; return exit code, peak RSS (KiB) and stdout."""
    result_file, out_file = tmp_path / "rss.txt", tmp_path / "out.txt"
    with open(out_file, "w") as out:
        subprocess.run(
            [sys.executable, "-c", PEAK_RSS, str(result_file), "--config", str(config), *args],
            stdout=out,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "LOOPAUTH_HOME": str(home)},
            timeout=120,
            check=True,
        )
    code, rss = map(int, result_file.read_text().split())
    return code, rss, out_file.read_text()


def test_status_streams_10000_accounts_in_bounded_memory(
    many: dict[str, Path], tmp_path: Path
) -> None:
    config = many["config"]
    code, small_rss, small_out = peak_rss(config, many["small"], tmp_path, "status")
    assert code == 0
    code, big_rss, big_out = peak_rss(config, many["big"], tmp_path, "status")
    assert code == 0
    rows = [line for line in big_out.splitlines() if line.startswith("emu ")]
    assert len(rows) == BIG and len(small_out.splitlines()) == SMALL + 1
    assert rows[5000].split()[1:3] == ["shop-05000", "Shop"]
    assert "access-" not in big_out and "refresh-0" not in big_out
    # Ten times the accounts: the peak may grow by what listing a folder of 10,000 names
    # costs (~1 MiB measured), not by a parsed token per account: holding the 10,000 Token
    # objects alone takes ~9 MiB, so a non-streaming status would break both bounds.
    growth = big_rss - small_rss
    assert growth < 4 * 1024, f"peak RSS {small_rss} KiB for {SMALL:,}, {big_rss} KiB for {BIG:,}"
    assert big_rss < 2 * small_rss

    as_json = run(config, "status", "--json", env={"LOOPAUTH_HOME": str(many["big"])})
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert isinstance(data, list) and len(data) == BIG
    assert data[42]["account_id"] == "shop-00042" and data[42]["account_label"] == "Shop 42"
    assert data[42]["default"] is False and data[42]["damaged"] is None
    assert "access_token" not in data[42] and "access-00042" not in as_json.stdout


def test_status_into_a_pipe_closed_early_is_no_internal_error(many: dict[str, Path]) -> None:
    # `loopauth status | head -1`: the reader goes away after one line of ~170 KB.
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopauth", "--config", str(many["config"]), "status"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "LOOPAUTH_HOME": str(many["small"])},
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith("PROVIDER")
    proc.stdout.close()
    stderr = proc.stderr.read()
    proc.wait(30)
    assert "internal error" not in stderr and "Traceback" not in stderr, stderr
    assert "Exception ignored" not in stderr, stderr


def test_status_columns_line_up(config: Path, isolated: Path) -> None:
    now = time.time()
    hour, year, century = token(1, lifetime=3600), token(2), token(3, lifetime=6 * 86400)
    year.refresh_expires_at = now + 365 * 86400  # TikTok Shop's usual authorization
    century.refresh_expires_at = now + 100 * 365 * 86400  # and its "unlimited" one
    TokenStore().save_many([hour, year, century])
    header, *rows = run(config, "status").stdout.splitlines()
    assert len(rows) == 3
    # Where each cell starts: after two spaces (cells never hold two spaces in a row).
    columns = [m.start() for m in re.finditer(r"(?:^|(?<=  ))\S", header)]
    for row in rows:
        starts = [m.start() for m in re.finditer(r"(?:^|(?<=  ))\S", row)]
        assert starts == columns, f"the columns do not line up:\n{header}\n{row}"


# -- damaged token files ---------------------------------------------------------------------


def test_a_damaged_file_only_affects_its_own_account(
    config: Path, emulator: OAuthEmulator, isolated: Path
) -> None:
    log_in_as(config, emulator, ADA)
    log_in_as(config, emulator, GRACE)
    ada = stored(isolated, "user-1")
    damaged = Path(TokenStore().path_for("emu", "user-2"))
    damaged.write_bytes(b'{"access_token": "half a fi')

    other = run(config, "token", "--account", "user-1")
    assert (other.returncode, other.stdout.strip()) == (0, ada.access_token), other.stderr
    by_label = run(config, "token", "--account", "ada@example.test")
    assert by_label.stdout.strip() == ada.access_token

    status = run(config, "status")
    assert status.returncode == 6, status.stderr
    assert str(damaged) in status.stderr and "damaged" in status.stderr
    [bad] = [line for line in status.stdout.splitlines() if "user-2" in line]
    assert "DAMAGED" in bad
    assert any(
        "user-1" in line and "ada@example.test" in line for line in status.stdout.splitlines()
    )
    as_json = json.loads(run(config, "status", "--json").stdout)
    assert {r["account_id"]: bool(r["damaged"]) for r in as_json} == {
        "user-1": False,
        "user-2": True,
    }

    # The damaged account itself: an error naming the file, exit 6.
    itself = run(config, "token", "--account", "user-2")
    assert itself.returncode == 6 and str(damaged) in itself.stderr

    logout = run(config, "logout", "emu", "--account", "user-2")
    assert logout.returncode == 0, logout.stderr
    assert "removed the damaged token" in logout.stderr
    assert not damaged.exists()
    assert emulator.revocation_calls == []  # nothing to revoke with
    after = run(config, "status")
    assert after.returncode == 0, after.stderr
    assert "user-2" not in after.stdout and "user-1" in after.stdout
    # One account left: no choice to make any more.
    assert run(config, "token").stdout.strip() == ada.access_token


# -- the index -----------------------------------------------------------------------------------


def index_path(home: Path) -> Path:
    return home / "tokens" / "emu" / ".index"


@pytest.mark.parametrize("damage", ["deleted", "garbage", "wrong shape"])
def test_a_missing_or_damaged_index_is_rebuilt(config: Path, isolated: Path, damage: str) -> None:
    TokenStore().save_many(token(i) for i in range(3))
    index = index_path(isolated)
    if damage == "deleted":
        index.unlink()
    elif damage == "garbage":
        index.write_bytes(b"\x00\xff\xfe not json \x80" * 10)
    else:
        index.write_text(json.dumps({"version": 1, "accounts": {"shop-00001": 5}}))
    result = run(config, "token", "--account", "SHOP 1")
    assert (result.returncode, result.stdout, result.stderr) == (0, "access-00001\n", "")
    assert run(config, "token").returncode == 2  # three accounts, all known again
    rebuilt = json.loads(index.read_text())
    assert rebuilt["accounts"] == {f"shop-{i:05d}": f"Shop {i}" for i in range(3)}
    # A new account is added to the rebuilt index, not to the damaged one.
    TokenStore().save(token(3))
    assert len(json.loads(index.read_text())["accounts"]) == 4


def test_tokens_stored_by_an_older_version_without_an_index_are_found(
    config: Path, isolated: Path
) -> None:
    store = TokenStore()
    folder = Path(store.provider_dir("emu"))
    folder.mkdir(parents=True, mode=0o700)
    os.chmod(isolated, 0o700)
    os.chmod(isolated / "tokens", 0o700)
    for i in (1, 2):
        old = token(i)
        old.bound_to = {}  # an older version did not bind tokens either
        path = Path(store.path_for("emu", old.account))
        path.write_text(json.dumps(old.to_dict()))
        os.chmod(path, 0o600)
    assert not index_path(isolated).exists()

    assert run(config, "token", "--account", "shop-00002").stdout == "access-00002\n"
    by_label = run(config, "token", "--account", "shop 1")
    assert by_label.stdout == "access-00001\n", by_label.stderr
    none = run(config, "token")
    assert none.returncode == 2 and "shop-00001 (Shop 1), shop-00002 (Shop 2)" in none.stderr
    status = run(config, "status")
    assert (
        status.returncode == 0 and "shop-00001" in status.stdout and "shop-00002" in status.stdout
    )
    assert index_path(isolated).exists()
    assert run(config, "switch", "emu", "Shop 2").returncode == 0
    assert run(config, "token").stdout == "access-00002\n"


# -- the leeway of short-lived tokens ----------------------------------------------------------


def refreshes(emulator: OAuthEmulator) -> int:
    return sum(c["grant_type"] == "refresh_token" for c in emulator.token_calls)


def test_a_3_second_token_is_not_refreshed_on_every_call(
    config: Path, emulator: OAuthEmulator, isolated: Path
) -> None:
    log_in_as(config, emulator, ADA)
    store = TokenStore()
    first = store.read("emu", "user-1")
    # A provider that hands out 3-second tokens: with the default 60 s leeway every call would
    # refresh; the leeway is capped at half the lifetime, so a new one is used for 1.5 s.
    for _ in range(3):
        now = time.time()
        first.obtained_at, first.expires_at = now, now + 3
        store.save(first)
        result = run(config, "token")
        if time.time() - now > 1.4:
            pytest.skip("too slow to tell: the token was due by the time it was read")
        assert result.stdout.strip() == first.access_token, result.stderr
    assert refreshes(emulator) == 0

    # One second left of an hour-long token: inside the 60 s leeway, refreshed once.
    first.obtained_at, first.expires_at = time.time() - 3600, time.time() + 1
    store.save(first)
    result = run(config, "token")
    assert result.returncode == 0, result.stderr
    assert refreshes(emulator) == 1
    assert result.stdout.strip() != first.access_token
    assert result.stdout.strip() == store.read("emu", "user-1").access_token
    assert run(config, "token").stdout == result.stdout and refreshes(emulator) == 1


def test_an_interrupted_save_many_still_indexes_what_it_wrote(isolated: Path) -> None:
    store = TokenStore()
    store.save(token(100))

    def tokens() -> Iterator[Token]:
        for i in range(10):
            if i == 4:
                raise KeyboardInterrupt  # Ctrl+C in the middle of an import
            yield token(i)

    with pytest.raises(KeyboardInterrupt):
        store.save_many(tokens())
    fresh = TokenStore()  # another process: reads the index from disk
    assert len(fresh.accounts("emu")) == 5
    assert fresh.find("emu", token(2).account_label).account_id == token(2).account_id


def test_refresh_all_reports_a_dead_account_even_before_it_expires(
    config: Path, isolated: Path
) -> None:
    dead = token(1)
    dead.refresh_token, dead.dead = "r", "invalid_grant"
    TokenStore().save(dead)
    out = cli("--config", str(config), "refresh", "--all", "emu")
    assert out.returncode == 6, out.stderr
    assert (
        "run: loopauth login emu --account" in out.stderr and "0 refreshed, 1 failed" in out.stderr
    )


def test_labels_are_found_without_their_buckets_and_a_stale_bucket_is_refuted(
    config: Path, isolated: Path
) -> None:
    TokenStore().save_many(token(i) for i in range(3))
    labels = isolated / "tokens" / "emu" / ".labels"
    bucket = next(p for p in labels.iterdir() if "shop 1" in p.read_text())
    bucket.write_text(json.dumps({"shop 1": ["shop-00002"]}))  # points at the wrong account
    out = run(config, "token", "--account", "Shop 1")
    assert (out.returncode, out.stdout) == (0, "access-00001\n"), out.stderr
    shutil.rmtree(labels)  # gone: the index answers
    out = run(config, "token", "--account", "shop 2")
    assert (out.returncode, out.stdout) == (0, "access-00002\n"), out.stderr
