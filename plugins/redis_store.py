"""Tokens in Redis: `store: redis://[USER:PASSWORD@]HOST:PORT/DB`, or `rediss://...` for TLS.

Several machines share one Redis, and with it their tokens and refresh locks: one process
refreshes an expired token while every other one, here or elsewhere, waits and then reads the
new token. Keys (PREFIX is `store_options.prefix`, "loopauth:" by default):

- `PREFIX token:PROVIDER:ACCOUNT_ID`: JSON of the token, Fernet-encrypted with
  `store_options.encryption_key` when set (comma-separated keys: the first encrypts, any
  decrypts, for rotation). With a key, a value that is not encrypted with it is refused, so
  whoever can write to Redis but lacks the key cannot plant a token.
- `PREFIX index:PROVIDER`: hash of account id -> label ("" for none), updated in the same
  MULTI as the token. Account ids and labels are not encrypted: they name keys anyway.
- `PREFIX default:PROVIDER`: the account `loopauth switch` chose.
- `PREFIX providers`: set of provider names (a provider whose index is gone is not listed).
- `PREFIX lock:PROVIDER:ACCOUNT_ID`: the refresh lock (redis-py's Lock). It expires
  `store_options.lock_timeout` seconds after its holder died; a live holder extends it, and a
  waiter gives up after max(120 s, lock_timeout + 60 s). In a process it is one re-entrant
  lock per account; saving a token does not take it (the MULTI is atomic by itself).

`entries()` (what `status` lists) walks the index with HSCAN, a page of tokens at a time (an
account may show twice if Redis resizes the hash meanwhile), skipping indexed accounts whose
token is gone; then it looks for token keys the index lacks (SCAN MATCH, one more pass over the
database's keys): such a token can only come from a hand edit or another program, and is
listed so that `logout --account` can remove it.

Plain redis:// is refused to a host that is not loopback unless tokens are encrypted. Redis
Cluster is not supported (a transaction spans a token and its index). Nothing here imports
redis-py (slow) or cryptography until a store is used: this module loads on every CLI start.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from loopauth import hookimpl
from loopauth.errors import ConfigError, NoTokenError, StoreError, StoreWriteError
from loopauth.provider import Setting
from loopauth.store import MAX_TOKEN_FILE, Entry, Store
from loopauth.stores import StoreType
from loopauth.token import Token
from loopauth.urls import is_loopback_host

log = logging.getLogger("loopauth.redis")

INSTALL = "the redis store needs: pip install 'loopauth[redis]'"
DEFAULT_PORT = 6379
# TLS settings redis-py takes as URL parameters; turning certificate checks off is not one.
TLS_PARAMS = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile")
BATCH = 500  # keys per HSCAN/SCAN page and per write_many transaction
LOCK_POLL = 0.05  # seconds between tries for a taken lock
MAKE_KEY = (
    'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)

SETTINGS = {
    "prefix": Setting(default="loopauth:", help="prefix of every key loopauth uses"),
    "encryption_key": Setting(
        secret=True,
        help="Fernet key(s) encrypting the tokens, e.g. ${LOOPAUTH_REDIS_KEY} (comma-separated: "
        "the first encrypts, any decrypts)",
    ),
    "lock_timeout": Setting(
        "float",
        default=60.0,
        positive=True,
        help="seconds a refresh lock outlives a holder that died",
    ),
    "socket_timeout": Setting(
        "float", default=5.0, positive=True, help="seconds to wait for Redis to answer"
    ),
}


@dataclass(frozen=True)
class Location:
    """Where the Redis server is, parsed from the store URL (repr without the password)."""

    scheme: str
    host: str
    port: int
    db: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    tls: tuple[tuple[str, str], ...] = ()

    @property
    def address(self) -> str:
        """HOST:PORT, for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def describe(self) -> str:
        """The URL without user name and password (a mistyped URL may hold it as the user)."""
        return f"{self.scheme}://{self.address}/{self.db}"


def parse_url(url: str) -> Location:
    """Parse a redis:// or rediss:// URL; a ValueError says what is wrong, never quoting it."""
    expected = "expected redis://[:PASSWORD@]HOST[:PORT][/DB] or rediss://..."
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("redis", "rediss"):
        raise ValueError(f"is not a redis URL ({expected})")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError:
        raise ValueError(
            f"is not a valid redis URL: check the host and the port, a number from 1 to "
            f"65535 (a password holding @ / ? # or : must be %-encoded; {expected})"
        ) from None
    if not host:
        raise ValueError(
            f"has no host (a password holding @ / ? or # must be %-encoded; {expected})"
        )
    if port == 0:
        raise ValueError("has port 0; the port is a number from 1 to 65535")
    if parts.fragment:
        raise ValueError("must not contain a #fragment (%-encode a # in the password)")
    if parts.username and parts.password is None:
        raise ValueError(
            "has a user name but no password: write redis://:PASSWORD@HOST (mind the colon) "
            "or redis://USER:PASSWORD@HOST"
        )
    path = unquote(parts.path)
    if path in ("", "/"):
        db = 0
    elif path[1:].isdigit() and path[1:].isascii() and len(path) < 12:
        db = int(path[1:])
    else:
        raise ValueError(f"has a bad database: after HOST:PORT comes /N, a number ({expected})")
    tls = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in TLS_PARAMS:
            raise ValueError(
                f"has an unknown URL parameter {name[:40]!r}; the redis store takes "
                + ", ".join(TLS_PARAMS)
            )
        if scheme != "rediss":
            raise ValueError(f"has the TLS parameter {name} but is not a rediss:// URL")
        tls.append((name, value))
    return Location(
        scheme,
        host,
        port or DEFAULT_PORT,
        db,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password is not None else None,
        tuple(tls),
    )


def key_problem(value: object) -> str | None:
    """Say what is wrong with an encryption_key (never quoting it), or None."""
    option = "store_options.encryption_key"
    if not isinstance(value, str) or not value.strip():
        return f"{option} is empty; set it to a Fernet key, made with: {MAKE_KEY}"
    keys = value.split(",")
    for number, key in enumerate(keys, 1):
        which = f"key {number} of {option}" if len(keys) > 1 else option
        try:  # what Fernet(key) checks, without importing cryptography at every CLI start
            ok = len(base64.urlsafe_b64decode(key.strip().encode())) == 32
        except (binascii.Error, ValueError):
            ok = False
        if not ok:
            return (
                f"{which} is not a Fernet key (32 url-safe base64-encoded bytes); "
                f"make one with: {MAKE_KEY}"
            )
    return None


def validate(url: str, options: Mapping[str, Any]) -> str | None:
    """Return what is wrong with a redis store's URL and options, or None; connects to nothing."""
    try:
        where = parse_url(url)
    except ValueError as exc:
        return str(exc)
    key = options.get("encryption_key")
    if key is not None and (problem := key_problem(key)):
        return problem
    if key is None and not where.password:
        # Any local user (any host, for one that is not loopback) could read every token, and
        # plant one that this store would hand out as ours.
        return (
            f"the Redis at {where.address} would be open to anyone who can reach it: give it a "
            "password (requirepass; redis://:${PASSWORD}@host), or set "
            "store_options.encryption_key"
        )
    if where.scheme == "redis" and key is None and not is_loopback_host(where.host):
        return (
            f"plain redis:// to {where.address} would send tokens across the network in clear; "
            "use rediss:// (TLS), or set store_options.encryption_key"
        )
    for name in ("lock_timeout", "socket_timeout"):
        value = options.get(name)
        if value is not None and not (isinstance(value, int | float) and value > 0):
            return f"store_options.{name} must be a number > 0"
    prefix = options.get("prefix")
    if prefix is not None and not isinstance(prefix, str):
        return "store_options.prefix must be a string"
    return None


class RedisStore(Store):
    """Tokens in one Redis database, shared by every process and machine that uses it."""

    kind = "redis"

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        options = dict(options or {})
        problem = validate(url, options)
        if problem:
            raise ConfigError(f"store: {problem}")
        self.where = parse_url(url)
        prefix = options.get("prefix")
        self.prefix: str = SETTINGS["prefix"].default if prefix is None else prefix
        self.lock_timeout = float(options.get("lock_timeout") or SETTINGS["lock_timeout"].default)
        self.socket_timeout = float(
            options.get("socket_timeout") or SETTINGS["socket_timeout"].default
        )
        # A live holder keeps its lock; this long a waiter gives up (a dead one's lock expires).
        self.wait_timeout = max(120.0, self.lock_timeout + 60.0)
        self._keys: str | None = options.get("encryption_key")
        self._fernet: Any = None
        self._client: Any = None
        self._setup = threading.Lock()
        self._checked: set[str] = set()

    def __repr__(self) -> str:
        encrypted = ", encrypted" if self._keys else ""
        return f"RedisStore({self.where.describe()!r}, prefix={self.prefix!r}{encrypted})"

    def describe(self) -> str:
        """Return the server and database, never the password."""
        return self.where.describe()

    # -- keys -------------------------------------------------------------------------------------

    def token_key(self, provider: str, account_id: str) -> str:
        """Return the key holding one account's token."""
        return f"{self.prefix}token:{provider}:{account_id}"

    def index_key(self, provider: str) -> str:
        """Return the hash of a provider's account ids and labels."""
        return f"{self.prefix}index:{provider}"

    def default_key(self, provider: str) -> str:
        """Return the key holding a provider's default account id."""
        return f"{self.prefix}default:{provider}"

    def lock_key(self, provider: str, account_id: str) -> str:
        """Return the key of one account's refresh lock."""
        return f"{self.prefix}lock:{provider}:{account_id}"

    @property
    def providers_key(self) -> str:
        """Return the set of provider names."""
        return f"{self.prefix}providers"

    # -- the connection ---------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The redis-py client, connected on first use."""
        if self._client is None:
            with self._setup:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        try:
            import redis
            from redis.backoff import ExponentialBackoff
            from redis.retry import Retry
        except ImportError:
            raise ConfigError(INSTALL) from None
        where = self.where
        tls: dict[str, Any] = dict(where.tls)
        if where.scheme == "rediss":
            tls["ssl"] = True
        return redis.Redis(
            host=where.host,
            port=where.port,
            db=where.db,
            username=where.username,
            password=where.password,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_timeout,
            decode_responses=False,
            # One quick retry (a pooled connection the server closed); not redis-py's default
            # of three with backoff, which keeps a CLI waiting on a server that is down.
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
            **tls,
        )

    def close(self) -> None:
        """Close the connections (a new one opens on next use)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    @contextmanager
    def _talking(self, doing: str) -> Iterator[None]:
        """Turn redis-py's errors into loopauth's, naming HOST:PORT and never the password."""
        try:
            yield
        except Exception as exc:
            from redis.exceptions import RedisError

            if not isinstance(exc, RedisError):
                raise
            raise self._error(exc, doing) from None

    def _error(self, exc: Exception, doing: str) -> StoreError:
        from redis import exceptions as rx

        at = f"Redis at {self.where.address}"
        text = self._scrub(str(exc))
        if isinstance(exc, rx.AuthenticationError | rx.AuthenticationWrongNumberOfArgsError) or (
            isinstance(exc, rx.ResponseError) and text.startswith(("NOAUTH", "WRONGPASS"))
        ):
            return StoreWriteError(
                f"{at} refused the login while {doing} (wrong or missing password or user); "
                "check the password in the store: URL (e.g. its ${VARIABLE})"
            )
        if isinstance(exc, rx.NoPermissionError):
            return StoreWriteError(
                f"{at} does not allow its user {doing} (NOPERM); give the user access to the "
                f"keys {self.prefix}* and to the commands loopauth uses"
            )
        if isinstance(exc, rx.ReadOnlyError):
            return StoreWriteError(
                f"{at} is a read-only replica (while {doing}); point store: at the primary"
            )
        if isinstance(exc, rx.TimeoutError):
            tls = ", that it speaks TLS" if self.where.scheme == "rediss" else ""
            return StoreWriteError(
                f"{at} did not answer within {self.socket_timeout:g} s while {doing}; check "
                f"that it is running and reachable{tls}, or raise store_options.socket_timeout"
            )
        if isinstance(exc, rx.ConnectionError):
            tls = " and that it speaks TLS (rediss://) or not (redis://)"
            return StoreWriteError(
                f"cannot connect to {at} while {doing} ({text[:300]}); check that Redis is "
                f"running there, the host and port in store:{tls}"
            )
        return StoreWriteError(f"{at} failed while {doing}: {type(exc).__name__}: {text[:300]}")

    def _scrub(self, text: str) -> str:
        for secret in (self.where.password, self.where.username):
            if secret:
                text = text.replace(secret, "***")
        return text

    # -- encryption -------------------------------------------------------------------------------

    def _cipher(self) -> Any:
        if self._fernet is None:
            from cryptography.fernet import Fernet, MultiFernet

            assert self._keys is not None
            self._fernet = MultiFernet([Fernet(k.strip().encode()) for k in self._keys.split(",")])
        return self._fernet

    def _encode(self, token: Token) -> bytes:
        data = json.dumps(token.to_dict(), separators=(",", ":")).encode()
        if self._keys is None:
            return data
        return bytes(self._cipher().encrypt(data))

    def _decode(self, provider: str, account_id: str, value: bytes) -> Token:
        """Return the token a stored value holds; StoreError (never quoting it) when it can't."""
        where = f"the stored token of {provider} account {account_id!r} ({self.describe()})"
        fix = (
            f"log in again to replace it, or remove it with: loopauth logout {provider} "
            f"--account {account_id}"
        )
        encrypted = value.startswith(b"gAAAAA")  # Fernet: version byte 0x80, then a time, base64
        if self._keys is None and encrypted:
            raise StoreError(
                f"{where} is encrypted, and no store_options.encryption_key is set; set the key "
                f"it was stored with, or {fix}"
            )
        if self._keys is not None:
            if not encrypted:
                raise StoreError(
                    f"{where} is not encrypted, but store_options.encryption_key is set, so it "
                    f"is refused (whoever can write to Redis could have put it there); {fix}"
                )
            from cryptography.fernet import InvalidToken

            try:
                value = self._cipher().decrypt(value)
            except InvalidToken:
                raise StoreError(
                    f"{where} cannot be decrypted with the configured encryption_key (it was "
                    "stored with another key, or altered); set store_options.encryption_key "
                    f"to the key it was stored with, or {fix}"
                ) from None
        try:
            if len(value) > MAX_TOKEN_FILE:
                raise ValueError("larger than 1 MiB")
            token = Token.from_dict(json.loads(value))
            if token.provider != provider or token.account != account_id:
                raise ValueError("it is the token of another account")
        except (ValueError, RecursionError) as exc:
            why = "not JSON" if isinstance(exc, json.JSONDecodeError) else str(exc)
            if isinstance(exc, RecursionError | UnicodeDecodeError):
                why = "not a loopauth token"
            raise StoreError(f"{where} is damaged or unreadable ({why}); {fix}") from None
        return token

    # -- reading ----------------------------------------------------------------------------------

    def read(self, provider: str, account_id: str) -> Token:
        """Return one account's token (one GET)."""
        with self._talking("reading a token"):
            value = self.client.get(self.token_key(provider, account_id))
        if value is None:
            raise NoTokenError(
                f"no stored token for account {account_id!r} of {provider}; "
                f"run: loopauth login {provider} --account {account_id}"
            )
        return self._decode(provider, account_id, value)

    def accounts(self, provider: str) -> dict[str, str | None]:
        """Return the index: account id -> label (None for none)."""
        with self._talking("reading the account index"):
            index = self.client.hgetall(self.index_key(provider))
        return {_text(k): (_text(v) or None) for k, v in sorted(index.items())}

    def entries(self, provider: str) -> Iterator[Entry]:
        """Yield the indexed accounts (HSCAN), then token keys the index lacks (SCAN)."""
        index = self.index_key(provider)
        cursor = 0
        while True:
            with self._talking("listing the accounts"):
                cursor, page = self.client.hscan(index, cursor, count=BATCH)
                ids = [_text(k) for k in page]
                values = self._get_many(provider, ids)
            for account_id, value in zip(ids, values, strict=True):
                if value is not None:  # else logged out by another process meanwhile
                    yield self._entry(provider, account_id, value)
            if cursor == 0:
                break
        yield from self._unindexed(provider)

    def _unindexed(self, provider: str) -> Iterator[Entry]:
        start = self.token_key(provider, "")
        cursor = 0
        while True:
            with self._talking("looking for tokens missing from the index"):
                cursor, keys = self.client.scan(cursor, match=_glob(start) + "*", count=BATCH)
                ids = [_text(k)[len(start) :] for k in keys]
                pipe = self.client.pipeline(transaction=False)
                for account_id in ids:
                    pipe.hexists(self.index_key(provider), account_id)
                missing = [i for i, known in zip(ids, pipe.execute(), strict=True) if not known]
                values = self._get_many(provider, missing)
            for account_id, value in zip(missing, values, strict=True):
                if value is not None:
                    yield self._entry(provider, account_id, value)
            if cursor == 0:
                break

    def _get_many(self, provider: str, ids: list[str]) -> list[bytes | None]:
        if not ids:
            return []
        return list(self.client.mget([self.token_key(provider, i) for i in ids]))

    def _entry(self, provider: str, account_id: str, value: bytes) -> Entry:
        try:
            return Entry(account_id, self._decode(provider, account_id, value))
        except StoreError as exc:
            return Entry(account_id, None, str(exc))

    def providers(self) -> list[str]:
        """Return the providers with stored accounts."""
        with self._talking("listing the providers"):
            names = sorted(_text(n) for n in self.client.smembers(self.providers_key))
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.exists(self.index_key(name))
            found = pipe.execute()
        return [name for name, exists in zip(names, found, strict=True) if exists]

    def get_default(self, provider: str) -> str | None:
        """Return the default account id recorded by `loopauth switch`."""
        with self._talking("reading the default account"):
            value = self.client.get(self.default_key(provider))
        return None if value is None else _text(value)

    # -- writing ----------------------------------------------------------------------------------

    def write(self, token: Token) -> str:
        """Store a token and its index entry in one transaction (no lock: MULTI is atomic)."""
        key = self.token_key(token.provider, token.account)
        value = self._encode(token)
        with self._talking("saving the token"):
            pipe = self.client.pipeline(transaction=True)
            pipe.set(key, value)
            pipe.hset(self.index_key(token.provider), token.account, token.account_label or "")
            pipe.sadd(self.providers_key, token.provider)
            pipe.execute()
        return f"{self.describe()} (key {key})"

    def write_many(self, tokens: Iterable[Token]) -> int:
        """Store many tokens, a transaction per BATCH of them."""
        count = 0
        batch: list[Token] = []
        for token in tokens:
            if not token.provider:
                raise ValueError("a token needs its provider before it is stored")
            batch.append(token)
            if len(batch) >= BATCH:
                count += self._write_batch(batch)
                batch = []
        return count + self._write_batch(batch)

    def _write_batch(self, tokens: list[Token]) -> int:
        if not tokens:
            return 0
        values = [self._encode(t) for t in tokens]
        with self._talking("saving tokens"):
            pipe = self.client.pipeline(transaction=True)
            for token, value in zip(tokens, values, strict=True):
                pipe.set(self.token_key(token.provider, token.account), value)
                pipe.hset(self.index_key(token.provider), token.account, token.account_label or "")
            pipe.sadd(self.providers_key, *sorted({t.provider for t in tokens}))
            pipe.execute()
        return len(tokens)

    def remove(self, provider: str, account_id: str) -> bool:
        """Delete one account's token, index entry and (if it was) the default, atomically."""
        default = self.default_key(provider)

        def remove(pipe: Any) -> None:
            was_default = pipe.get(default) == account_id.encode()
            pipe.multi()
            pipe.delete(self.token_key(provider, account_id))
            pipe.hdel(self.index_key(provider), account_id)
            if was_default:
                pipe.delete(default)

        with self._talking("removing the token"):
            deleted = self.client.transaction(remove, default)
        return bool(deleted[0])

    def set_default(self, provider: str, account_id: str | None) -> None:
        """Record the default account (delete it for None)."""
        with self._talking("saving the default account"):
            if account_id is None:
                self.client.delete(self.default_key(provider))
            else:
                self.client.set(self.default_key(provider), account_id)

    def check_writable(self, provider: str) -> None:
        """Connect, log in and write a short-lived key, before a login spends its code."""
        if provider in self._checked:
            return
        with self._talking("checking that tokens can be saved"):
            self.client.set(f"{self.prefix}check:{provider}", b"", px=1000)
        self._checked.add(provider)

    # -- locking ----------------------------------------------------------------------------------

    def lock(self, provider: str, account_id: str) -> RefreshLock:
        """Return the refresh lock of one account: one object per process, re-entrant per thread."""
        name = self.lock_key(provider, account_id)
        where = self.where
        shared = (where.scheme, where.host, where.port, where.db, where.username, name)
        with _LOCKS_GUARD:
            if shared not in _LOCKS:
                _LOCKS[shared] = RefreshLock(self, name, f"{provider} account {account_id!r}")
            return _LOCKS[shared]


_LOCKS: dict[tuple[object, ...], RefreshLock] = {}
_LOCKS_GUARD = threading.Lock()


class RefreshLock:
    """An account's refresh lock: a Redis key with an expiry, held by one thread at a time.

    Re-entrant in its thread (the fast path may hold it while the full CLI refreshes), and
    kept alive by a thread of its own while held: a refresh slower than `lock_timeout` does not
    let a second one in, and a holder that dies (kill -9, power cut) lets go `lock_timeout`
    seconds later.
    """

    def __init__(self, store: RedisStore, name: str, what: str) -> None:
        self.store, self.name, self.what = store, name, what
        self._local = threading.RLock()  # other threads of this process wait here first
        self._depth = 0
        self._held: Any = None
        self._stop = threading.Event()

    def __repr__(self) -> str:
        return f"RefreshLock({self.name!r}, held={self._depth > 0})"

    def __enter__(self) -> RefreshLock:
        wait = self.store.wait_timeout
        if not self._local.acquire(timeout=wait):
            raise self._timeout(wait)
        try:
            if self._depth == 0:
                self._take(wait)
            self._depth += 1
        except BaseException:
            self._local.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._depth -= 1
            if self._depth == 0:
                self._let_go()
        finally:
            self._local.release()

    def _take(self, wait: float) -> None:
        store = self.store
        with store._talking("taking the refresh lock"):
            lock = store.client.lock(
                self.name,
                timeout=store.lock_timeout,
                sleep=LOCK_POLL,
                blocking_timeout=wait,
                thread_local=False,  # the keeper thread extends it
            )
            if not lock.acquire():
                raise self._timeout(wait)
        self._held, self._stop = lock, threading.Event()
        keeper = threading.Thread(
            target=_keep, args=(lock, self._stop, store.lock_timeout / 3), daemon=True
        )
        keeper.start()

    def _let_go(self) -> None:
        lock, self._held = self._held, None
        self._stop.set()
        try:
            lock.release()
        except Exception as exc:  # expired meanwhile, or Redis went away: it expires by itself
            log.debug("releasing the refresh lock of %s: %s", self.what, type(exc).__name__)

    def _timeout(self, wait: float) -> StoreWriteError:
        return StoreWriteError(
            f"waited {wait:g} s for the refresh lock of {self.what} in {self.store.describe()}; "
            "another loopauth is still refreshing it (the lock of one that died expires after "
            f"store_options.lock_timeout, {self.store.lock_timeout:g} s); try again"
        )


def _keep(lock: Any, stop: threading.Event, interval: float) -> None:
    """Extend a held lock until told to stop; give up once it is lost."""
    while not stop.wait(interval):
        try:
            lock.reacquire()
        except Exception as exc:
            log.debug("could not extend a refresh lock: %s", type(exc).__name__)
            return


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _glob(text: str) -> str:
    """Escape a literal for a SCAN MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _open(url: str, options: Mapping[str, Any]) -> Store:
    import importlib.util

    if importlib.util.find_spec("redis") is None:
        raise ConfigError(INSTALL)
    full = {k: s.default for k, s in SETTINGS.items() if s.default is not None}
    full.update(options)
    return RedisStore(url, full)


REDIS = StoreType(
    "redis",
    _open,
    schemes=("redis", "rediss"),
    settings=SETTINGS,
    validate=validate,
    description="a Redis server shared by several machines: redis://[:PASSWORD@]HOST:PORT/DB, "
    "rediss:// for TLS (pip install 'loopauth[redis]')",
)


@hookimpl
def register_stores(register: Callable[[StoreType], None]) -> None:
    """Register the redis store."""
    register(REDIS)
