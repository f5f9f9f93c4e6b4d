"""The redis store against a real redis-server: the CLI end to end, two machines sharing one
Redis, the refresh lock, encryption, and no password or key in any output."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis_server import RedisServer, redis_server

from loopauth.config import parse
from loopauth.emulator import OAuthEmulator
from loopauth.errors import ConfigError, NoTokenError, StoreError, StoreWriteError, UsageError
from loopauth.plugins.redis_store import REDIS, RedisStore, parse_url, validate
from loopauth.testing import cli, login
from loopauth.token import Token

USER = "user-1"  # the emulator's first user, ada@example.test
KEY = "loopauth:token:emu:user-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as running:
        yield running


@pytest.fixture
def redis(server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    """An empty Redis, its password in $REDIS_PASSWORD as providers.yaml takes it."""
    client = server.client()
    client.flushall()
    client.close()
    monkeypatch.setenv("REDIS_PASSWORD", server.password)
    yield server


def redis_config(
    path: Path,
    emulator: OAuthEmulator,
    redis: RedisServer,
    *,
    store: str | None = None,
    **options: object,
) -> Path:
    """A providers.yaml whose provider `emu` keeps its tokens in Redis."""
    provider: dict[str, object] = {
        "issuer": emulator.url,
        "client_id": "loopauth-demo",
        "scope": "openid profile email",
        "store": store or f"redis://:${{REDIS_PASSWORD}}@127.0.0.1:{redis.port}/0",
    }
    if options:
        provider["store_options"] = options
    path.write_text(yaml.safe_dump({"providers": {"emu": provider}}), encoding="utf-8")
    return path


def open_store(redis: RedisServer, **options: Any) -> RedisStore:
    return RedisStore(redis.url(), {"lock_timeout": 5.0, **options})


def run(
    *args: str, secrets: tuple[str, ...] = (), **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """`loopauth ARGS`, checking that no secret (the Redis password...) is in its output."""
    result = cli(*args, **kwargs)
    for secret in (os.environ.get("REDIS_PASSWORD", ""), *secrets):
        if secret:
            assert secret not in result.stdout + result.stderr, args
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    return result


def expire(redis: RedisServer, account: str = USER, **options: Any) -> Token:
    """Make the stored token expired, as a later day would, through the store itself."""
    store = open_store(redis, **options)
    token = store.read("emu", account)
    token.expires_at = token.obtained_at = time.time() - 100
    store.write(token)
    return token


def refreshes(emulator: OAuthEmulator) -> int:
    return sum(c["grant_type"] == "refresh_token" for c in emulator.token_calls)


# -- the CLI, end to end ------------------------------------------------------------------------


def test_login_token_status_logout_through_redis_with_nothing_on_disk(
    redis: RedisServer, emulator: OAuthEmulator, tmp_path: Path, isolated: Path
) -> None:
    config = str(redis_config(tmp_path / "providers.yaml", emulator, redis))
    result = login("--config", config, "login", "emu")
    assert result.returncode == 0, result.stderr
    assert redis.password not in result.stderr + result.stdout
    assert f"token saved to redis://127.0.0.1:{redis.port}/0 (key {KEY})" in result.stderr

    client = redis.client()
    stored = json.loads(client.get(KEY))
    assert stored["account_id"] == USER and stored["provider"] == "emu"
    assert client.hgetall("loopauth:index:emu") == {USER.encode(): b"ada@example.test"}
    assert client.smembers("loopauth:providers") == {b"emu"}

    token = run("--config", config, "token")
    assert token.returncode == 0, token.stderr
    assert token.stdout.strip() == stored["access_token"]

    status = run("--config", config, "status")
    assert status.returncode == 0, status.stderr
    where = f"redis://127.0.0.1:{redis.port}/0"  # the store, as status shows it: no password
    assert any(
        all(part in line for part in ("emu", USER, "ada@example.test", where))
        for line in status.stdout.splitlines()
    ), status.stdout
    [row] = json.loads(run("--config", config, "status", "--json").stdout)
    assert row["account_id"] == USER and "access_token" not in row
    assert row.get("store", where) == where

    # Nothing of this provider's lands in LOOPAUTH_HOME/tokens: no token file, no index.
    assert not list((isolated / "tokens").rglob("*.json"))

    out = run("--config", config, "logout")
    assert out.returncode == 0, out.stderr
    assert client.exists(KEY) == 0 and client.hlen("loopauth:index:emu") == 0
    gone = run("--config", config, "token")
    assert gone.returncode == 6 and "no stored token for emu" in gone.stderr
    assert "not logged in" in run("--config", config, "status").stdout
    assert not list((isolated / "tokens").rglob("*.json"))


def test_two_machines_sixteen_processes_refresh_an_expired_token_once(
    redis: RedisServer, tmp_path: Path
) -> None:
    # Rotating refresh tokens: a second refresh with the same one would fail (invalid_grant).
    with OAuthEmulator(rotate_refresh_tokens=True) as emulator:
        config = str(redis_config(tmp_path / "providers.yaml", emulator, redis))
        homes = [tmp_path / "machine-a", tmp_path / "machine-b"]
        first = login("--config", config, "login", env={"LOOPAUTH_HOME": str(homes[0])})
        assert first.returncode == 0, first.stderr
        old = expire(redis)
        before = refreshes(emulator)

        env = {**os.environ, "REDIS_PASSWORD": redis.password}
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "loopauth", "--config", config, "token"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**env, "LOOPAUTH_HOME": str(homes[i % 2])},
            )
            for i in range(16)
        ]
        outputs = [p.communicate(timeout=60) for p in procs]
        for proc, (stdout, stderr) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, stderr
            assert redis.password not in stdout + stderr
        printed = {stdout.strip() for stdout, _ in outputs}
        assert len(printed) == 1 and old.access_token not in printed
        assert refreshes(emulator) - before == 1
        assert printed == {open_store(redis).read("emu", USER).access_token}
        assert printed <= emulator.issued_access_tokens()
        for home in homes:  # neither machine kept a token of its own
            assert not list((home / "tokens").rglob("*.json"))


HOLDER = """
import sys, time
from loopauth.config import load
from loopauth.stores import open_store
provider = load(sys.argv[1]).select("emu")
lock = open_store(provider).lock("emu", "user-1")
lock.__enter__()
print("locked", flush=True)
time.sleep(120)
"""


def test_the_lock_of_a_holder_that_died_expires_and_the_next_caller_refreshes(
    redis: RedisServer, emulator: OAuthEmulator, tmp_path: Path
) -> None:
    config = str(redis_config(tmp_path / "providers.yaml", emulator, redis, lock_timeout=1))
    assert login("--config", config, "login").returncode == 0
    expire(redis)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, config], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        client = redis.client()
        time.sleep(1.5)  # longer than lock_timeout: a live holder keeps its lock
        assert client.exists("loopauth:lock:emu:user-1") == 1
        assert 0 < client.pttl("loopauth:lock:emu:user-1") <= 1000
    finally:
        holder.kill()  # SIGKILL: no release, no cleanup
        holder.wait(10)
    started = time.monotonic()
    result = run("--config", config, "token")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10
    assert refreshes(emulator) == 1
    assert result.stdout.strip() == open_store(redis).read("emu", USER).access_token


def test_encrypted_tokens_are_not_plaintext_in_redis_and_a_wrong_key_is_exit_6(
    redis: RedisServer,
    emulator: OAuthEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cryptography.fernet import Fernet

    key, other = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("LOOPAUTH_REDIS_KEY", key)
    config = str(
        redis_config(
            tmp_path / "providers.yaml", emulator, redis, encryption_key="${LOOPAUTH_REDIS_KEY}"
        )
    )
    result = login("--config", config, "login")
    assert result.returncode == 0, result.stderr
    raw = redis.client().get(KEY)
    token = open_store(redis, encryption_key=key).read("emu", USER)
    assert token.refresh_token
    for secret in (token.access_token, token.refresh_token, b"access_token", b"user-1"):
        assert (secret.encode() if isinstance(secret, str) else secret) not in raw
    assert raw.startswith(b"gAAAAA")
    out = run("--config", config, "token", secrets=(key,))
    assert out.returncode == 0 and out.stdout.strip() == token.access_token

    monkeypatch.setenv("LOOPAUTH_REDIS_KEY", other)
    wrong = run("--config", config, "token", secrets=(key, other))
    assert wrong.returncode == 6, wrong.stderr
    assert "cannot be decrypted with the configured encryption_key" in wrong.stderr
    assert "emu account 'user-1'" in wrong.stderr
    status = run("--config", config, "status", secrets=(key, other))  # shows why, not "none"
    assert "cannot be decrypted" in status.stdout + status.stderr

    monkeypatch.setenv("LOOPAUTH_REDIS_KEY", "not-a-fernet-key-" + key[:20])
    bad = run("--config", config, "token", secrets=(key, other, key[:20]))
    assert bad.returncode == 2, bad.stderr
    assert "store_options.encryption_key is not a Fernet key" in bad.stderr
    assert "Fernet.generate_key()" in bad.stderr


def test_wrong_password_unreachable_server_and_no_password_in_any_output(
    redis: RedisServer, emulator: OAuthEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = str(redis_config(tmp_path / "providers.yaml", emulator, redis))
    assert login("--config", config, "login").returncode == 0
    right = redis.password

    monkeypatch.setenv("REDIS_PASSWORD", "wrong-" + right[::-1])
    for command in (["token"], ["status"], ["logout"]):
        out = run("--config", config, *command, secrets=(right,))
        assert out.returncode == 2, (command, out.stderr)
        assert f"Redis at 127.0.0.1:{redis.port} refused the login" in out.stderr
    calls = len(emulator.token_calls)
    denied = login("--config", config, "login")
    assert denied.returncode == 2 and "refused the login" in denied.stderr
    assert denied.url is None and len(emulator.token_calls) == calls  # no code was spent
    for secret in (right, "wrong-" + right[::-1]):
        assert secret not in denied.stderr + denied.stdout

    monkeypatch.setenv("REDIS_PASSWORD", right)
    closed = redis_config(
        tmp_path / "closed.yaml",
        emulator,
        redis,
        store="redis://:${REDIS_PASSWORD}@127.0.0.1:1/0",
    )
    out = run("--config", str(closed), "token")
    assert out.returncode == 2
    assert "cannot connect to Redis at 127.0.0.1:1" in out.stderr

    store = open_store(redis)
    assert right not in repr(store) and right not in store.describe()
    assert store.describe() == f"redis://127.0.0.1:{redis.port}/0"


def test_plain_redis_to_another_host_is_refused_before_connecting(
    redis: RedisServer, emulator: OAuthEmulator, tmp_path: Path
) -> None:
    # 192.0.2.1 (TEST-NET-1) never answers: a connection attempt would hang for seconds.
    config = redis_config(
        tmp_path / "providers.yaml",
        emulator,
        redis,
        store="redis://:${REDIS_PASSWORD}@192.0.2.1:6379/0",
    )
    started = time.monotonic()
    for command in ("token", "status", "providers"):
        out = run("--config", str(config), command)
        assert out.returncode == 2, out.stderr
        text = out.stdout + out.stderr
        assert "plain redis:// to 192.0.2.1:6379 would send tokens across the network" in text
        assert "use rediss:// (TLS), or set store_options.encryption_key" in text
    assert time.monotonic() - started < 10
    # TLS, or encrypted tokens, are fine (checked without connecting either).
    for store, options in (
        ("rediss://:pw@192.0.2.1:6380/0", {}),
        ("redis://:pw@192.0.2.1/0", {"encryption_key": "A" * 43 + "="}),
    ):
        assert validate(store, options) is None


def test_an_unknown_store_option_is_a_config_error_with_a_suggestion(
    redis: RedisServer, emulator: OAuthEmulator, tmp_path: Path
) -> None:
    config = redis_config(tmp_path / "providers.yaml", emulator, redis, prefx="x:")
    out = run("--config", str(config), "token")
    assert out.returncode == 2
    assert "store_options.prefx: unknown option for the redis store" in out.stderr
    assert "did you mean 'prefix'?" in out.stderr


def test_store_options_arrive_converted_and_a_prefix_keeps_stores_apart(
    redis: RedisServer, emulator: OAuthEmulator, tmp_path: Path
) -> None:
    config = redis_config(
        tmp_path / "providers.yaml", emulator, redis, prefix="team-a:", lock_timeout="2.5"
    )
    provider = parse(config.read_text(), str(config)).select("emu")
    assert provider.settings["store_options"] == {
        "prefix": "team-a:",
        "lock_timeout": 2.5,
        "socket_timeout": 5.0,
    }
    assert login("--config", str(config), "login").returncode == 0
    client = redis.client()
    assert client.exists("team-a:token:emu:user-1") == 1 and client.exists(KEY) == 0
    assert open_store(redis).providers() == []
    assert open_store(redis, prefix="team-a:").providers() == ["emu"]


# -- the store object ---------------------------------------------------------------------------


def make(account: str, label: str | None = None, provider: str = "emu", **kw: Any) -> Token:
    return Token(
        f"at-{account}",
        provider=provider,
        refresh_token=f"rt-{account}",
        account_id=account,
        account_label=label,
        expires_at=time.time() + 3600,
        **kw,
    )


def test_store_primitives_and_the_shared_find_switch_delete(redis: RedisServer) -> None:
    store = open_store(redis)
    assert store.providers() == [] and list(store.entries("emu")) == []
    with pytest.raises(NoTokenError, match="no stored token for emu; run: loopauth login emu"):
        store.find("emu")
    a, b = make("a", "Ada@Example.test"), make("b:odd*[id]", None)
    store.save(a)
    assert store.find("emu") == a  # the only one
    store.save(b)
    assert store.accounts("emu") == {"a": "Ada@Example.test", "b:odd*[id]": None}
    assert store.find("emu", "ada@example.TEST") == a  # a label, case-insensitively
    assert store.read("emu", "b:odd*[id]") == b
    with pytest.raises(UsageError, match="emu has 2 accounts"):
        store.find("emu")
    assert store.switch("emu", "b:odd*[id]") == "b:odd*[id]"
    assert store.find("emu") == b and store.get_default("emu") == "b:odd*[id]"
    assert sorted(e.account_id for e in store.entries("emu")) == ["a", "b:odd*[id]"]
    assert store.providers() == ["emu"]
    assert store.delete(b) is True and store.get_default("emu") is None  # the default went too
    assert store.delete(b) is False
    assert store.list() == [a]
    assert store.remove("emu", "a") is True
    assert store.providers() == []  # no accounts left: not listed


def test_entries_show_damaged_and_unindexed_tokens_and_stream_large_indexes(
    redis: RedisServer,
) -> None:
    store = open_store(redis)
    assert store.save_many(make(f"u{i:04}") for i in range(1234)) == 1234  # > one batch
    client = redis.client()
    client.set("loopauth:token:emu:broken", b"{not json")
    client.hset("loopauth:index:emu", "broken", "")
    client.set("loopauth:token:emu:stray", json.dumps(make("stray").to_dict()))  # no index entry
    client.set("loopauth:token:emu:swapped", json.dumps(make("u0001").to_dict()))
    client.hset("loopauth:index:emu", "gone", "")  # indexed, token key missing: skipped
    entries = {e.account_id: e for e in store.entries("emu")}
    assert len(entries) == 1234 + 3
    stray = entries["stray"].token
    assert stray is not None and stray.access_token == "at-stray"
    assert entries["broken"].token is None
    assert "emu account 'broken'" in (entries["broken"].problem or "")
    assert "damaged or unreadable (not JSON)" in (entries["broken"].problem or "")
    assert "loopauth logout emu --account broken" in (entries["broken"].problem or "")
    assert "the token of another account" in (entries["swapped"].problem or "")
    with pytest.raises(StoreError, match="another account"):
        store.read("emu", "swapped")
    assert store.resolve("emu", "broken") == "broken"  # so that logout can remove it
    assert store.remove("emu", "broken") and store.remove("emu", "stray")
    assert len(list(store.entries("emu"))) == 1234 + 1


def test_encryption_key_rotation_and_plaintext_refused_when_a_key_is_set(
    redis: RedisServer,
) -> None:
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    open_store(redis, encryption_key=old).save(make("a"))
    rotated = open_store(redis, encryption_key=f"{new}, {old}")
    assert rotated.read("emu", "a").access_token == "at-a"
    rotated.save(rotated.read("emu", "a"))  # re-encrypted with the new key
    assert open_store(redis, encryption_key=new).read("emu", "a").access_token == "at-a"
    with pytest.raises(StoreError, match=r"is encrypted, and no store_options\.encryption_key"):
        open_store(redis).read("emu", "a")

    open_store(redis).save(make("plain"))
    with pytest.raises(StoreError, match=r"is not encrypted, but store_options\.encryption_key"):
        rotated.read("emu", "plain")
    assert repr(rotated) == (
        f"RedisStore('redis://127.0.0.1:{redis.port}/0', prefix='loopauth:', encrypted)"
    )
    for key in (old, new, redis.password):
        assert key not in repr(rotated)


def test_the_lock_is_reentrant_in_a_thread_shared_in_a_process_and_exclusive_across_threads(
    redis: RedisServer,
) -> None:
    first, second = open_store(redis), open_store(redis)
    assert first.lock("emu", "a") is second.lock("emu", "a")
    order: list[str] = []
    with first.lock("emu", "a"), second.lock("emu", "a"):  # the fast path, then the full CLI
        assert redis.client().exists("loopauth:lock:emu:a") == 1

        def other() -> None:
            with first.lock("emu", "a"):
                order.append("other")

        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(0.2)
        order.append("holder")
    thread.join(10)
    assert order == ["holder", "other"]
    assert redis.client().exists("loopauth:lock:emu:a") == 0


def test_write_does_not_wait_for_the_lock(redis: RedisServer) -> None:
    # ensure_fresh saves while it holds the lock; another process' lock must not stop a login.
    store = open_store(redis)
    redis.client().set("loopauth:lock:emu:a", b"someone-else", px=60_000)
    started = time.monotonic()
    store.save(make("a"))
    assert time.monotonic() - started < 5  # waiting would take the lock's 60 s


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://:SECRET@127.0.0.1:notaport/0", "check the host and the port"),
        ("redis://:SECRET@127.0.0.1:99999/0", "check the host and the port"),
        ("redis://:SECRET@127.0.0.1:0/0", "has port 0"),
        ("redis://:SECRET@127.0.0.1:6379/zero", "has a bad database"),
        ("redis://:SECRET@127.0.0.1:6379/0/1", "has a bad database"),
        ("redis://:SECRET@/0", "has no host"),
        ("redis://SECRET@127.0.0.1/0", "has a user name but no password"),
        ("redis://:SECRET@127.0.0.1/0#x", "must not contain a #fragment"),
        ("redis://:SECRET@127.0.0.1/0?password=SECRET", "unknown URL parameter 'password'"),
        ("redis://:SECRET@127.0.0.1/0?ssl_ca_certs=/ca.pem", "is not a rediss:// URL"),
        ("rediss://:SECRET@h/0?ssl_cert_reqs=none", "unknown URL parameter 'ssl_cert_reqs'"),
        ("redis://:SECRET@10.1.2.3/0", "plain redis:// to 10.1.2.3:6379"),
        ("redis://:SECRET@redis.example.com/0", "plain redis:// to redis.example.com:6379"),
    ],
)
def test_bad_urls_say_why_without_the_password(url: str, problem: str) -> None:
    found = validate(url, {})
    assert found is not None and problem in found
    assert "SECRET" not in found


def test_good_urls_and_keys() -> None:
    assert validate("redis://:pw@127.0.0.1", {}) is None
    assert validate("redis://:pw@localhost:6380/3", {}) is None
    # Without a password nor a key, any local user could read and plant tokens.
    open_to_all = validate("redis://127.0.0.1", {})
    assert open_to_all is not None and "would be open to anyone who can reach it" in open_to_all
    assert validate("redis://user:pw@[::1]:6379/2", {}) is None
    assert validate("rediss://:pw@redis.example.com:6380/1?ssl_ca_certs=/ca.pem", {}) is None
    where = parse_url("rediss://u:p%40ss@[::1]:6380/2?ssl_ca_certs=/ca.pem")
    assert (where.host, where.port, where.db, where.username, where.password) == (
        "::1",
        6380,
        2,
        "u",
        "p@ss",
    )
    assert where.describe() == "rediss://[::1]:6380/2" and "p@ss" not in repr(where)
    for key in ("", "short", "A" * 44, "A" * 43 + "=,nope"):
        problem = validate("redis://127.0.0.1", {"encryption_key": key})
        assert problem is not None and "encryption_key" in problem
        assert key not in problem or not key
    with pytest.raises(ConfigError, match="has a bad database"):
        RedisStore("redis://127.0.0.1/x")


def test_a_missing_redis_py_is_a_clear_error_at_open_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "redis" else real(name, *a)
    )
    with pytest.raises(
        ConfigError, match=r"the redis store needs: pip install 'loopauth\[redis\]'"
    ):
        REDIS.open("redis://127.0.0.1:6379/0", {})


def test_a_server_that_goes_away_is_a_clear_error(tmp_path: Path) -> None:
    with redis_server(tmp_path) as gone:
        store = open_store(gone, socket_timeout=1.0)
        store.save(make("a"))
    with pytest.raises(StoreWriteError, match=f"cannot connect to Redis at 127.0.0.1:{gone.port}"):
        store.read("emu", "a")
    with pytest.raises(StoreWriteError, match="cannot connect") as caught:
        store.check_writable("other")
    assert gone.password not in str(caught.value)


def test_importing_the_plugin_loads_neither_redis_nor_cryptography() -> None:
    code = (
        "import sys, loopauth.plugins.redis_store, loopauth.config; "
        "print(sorted(m for m in ('redis', 'cryptography') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_cached_token_fast_path_never_answers_from_a_token_file_for_a_redis_provider(
    redis: RedisServer, emulator: OAuthEmulator, tmp_path: Path, isolated: Path
) -> None:
    from loopauth.store import TokenStore

    # A token file left from before the provider moved to Redis, fresh for an hour.
    TokenStore(str(isolated)).save(make(USER, "stale file token"))
    config = str(redis_config(tmp_path / "providers.yaml", emulator, redis))
    assert login("--config", config, "login").returncode == 0
    in_redis = open_store(redis).read("emu", USER).access_token
    for _ in range(2):  # the first run writes the fast path's cache, the second may use it
        out = run("--config", config, "token")
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == in_redis
