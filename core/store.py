"""Where tokens live: the Store interface every store plugin implements, and the file store.

A store keeps one token per provider and account id, a small index (account id -> label) so
that a label or "the only one" is found without reading every token, a default account per
provider, and a lock per account that every process (or machine) sharing the store honours.
The file store is on the cached-token path, so this module imports nothing slow at the top.
"""

from __future__ import annotations

import json
import os

from . import paths, private
from .errors import NoTokenError, StoreError, StoreWriteError, UnsafePath, UsageError
from .token import Token

TYPE_CHECKING = False
if TYPE_CHECKING:  # kept off the cached-token path, which only reads
    from collections.abc import Callable, Iterable, Iterator
    from contextlib import AbstractContextManager
    from typing import TypeVar

    T = TypeVar("T")

MAX_TOKEN_FILE = 1 << 20
SHOWN_ACCOUNTS = 10  # an error lists this many accounts, then "and N more"


class Entry:
    """One stored account as `status` shows it: its token, or why it can't be read."""

    __slots__ = ("account_id", "problem", "token")

    def __init__(self, account_id: str, token: Token | None, problem: str | None = None) -> None:
        self.account_id, self.token, self.problem = account_id, token, problem

    def __repr__(self) -> str:
        return f"Entry({self.account_id!r}, {self.token!r}, {self.problem!r})"


class Store:
    """Tokens by provider and account id; subclasses implement the storage primitives."""

    kind = "store"

    # -- primitives ---------------------------------------------------------------------------

    def read(self, provider: str, account_id: str) -> Token:
        """Return one account's token; NoTokenError when absent, StoreError when damaged."""
        raise NotImplementedError

    def write(self, token: Token) -> str:
        """Store a token (replacing the account's previous one whole) and say where."""
        raise NotImplementedError

    def remove(self, provider: str, account_id: str) -> bool:
        """Remove one account's token, damaged or not; return False when it was not there."""
        raise NotImplementedError

    def accounts(self, provider: str) -> dict[str, str | None]:
        """Return the index: every stored account id of a provider with its label."""
        raise NotImplementedError

    def entries(self, provider: str) -> Iterator[Entry]:
        """Yield every stored account, one at a time (memory stays bounded), damaged ones too."""
        raise NotImplementedError

    def providers(self) -> list[str]:
        """Return the providers that have stored accounts."""
        raise NotImplementedError

    def lock(self, provider: str, account_id: str) -> AbstractContextManager[object]:
        """Return the lock every process sharing this store takes before refreshing."""
        raise NotImplementedError

    def get_default(self, provider: str) -> str | None:
        """Return the provider's default account id (set by `loopauth switch`), if any."""
        raise NotImplementedError

    def set_default(self, provider: str, account_id: str | None) -> None:
        """Make `account_id` the provider's default account (None: no default)."""
        raise NotImplementedError

    def describe(self) -> str:
        """Return where tokens are kept, for people (never a password)."""
        return self.kind

    def check_writable(self, provider: str) -> None:
        """Fail early (before a login spends its code) when tokens can't be stored."""

    def write_many(self, tokens: Iterable[Token]) -> int:
        """Store many tokens; stores with an index override this to update it once."""
        count = 0
        for token in tokens:
            self.write(token)
            count += 1
        return count

    # -- what everything else uses ---------------------------------------------------------------

    def save(self, token: Token) -> str:
        """Store a token and return where it went."""
        if not token.provider:
            raise ValueError("a token needs its provider before it is stored")
        return self.write(token)

    def save_many(self, tokens: Iterable[Token]) -> int:
        """Store many tokens at once (an import); return how many."""
        return self.write_many(tokens)

    def delete(self, token: Token) -> bool:
        """Remove a stored token; return False when it was not there."""
        return self.remove(token.provider, token.account)

    def list(self, provider: str | None = None) -> list[Token]:
        """Return the readable stored tokens of one provider (or of all)."""
        names = [provider] if provider is not None else self.providers()
        return [e.token for name in names for e in self.entries(name) if e.token is not None]

    def find(self, provider: str, account: str | None = None) -> Token:
        """Return the token of `account` (id or label), else the default or the only one."""
        if account is not None:
            try:  # an id opens its own file; only a label needs the index
                return self.read(provider, account)
            except NoTokenError:
                hinted = self._label_hint(provider, account)
                if hinted is not None:  # a hint only: the token itself must say so
                    try:
                        token = self.read(provider, hinted)
                    except (NoTokenError, StoreError):
                        pass
                    else:
                        if (token.account_label or "").casefold() == account.casefold():
                            return token
                return self.read(provider, self._by_label(provider, account))
        account_id = self._default_or_only(provider)
        try:
            return self.read(provider, account_id)
        except NoTokenError:
            if self.get_default(provider) == account_id:
                raise NoTokenError(
                    f"the default account {account_id!r} of {provider} is no longer stored; "
                    f"run: loopauth switch {provider} ACCOUNT, or loopauth login {provider}"
                ) from None
            raise

    def resolve(self, provider: str, account: str | None) -> str:
        """Return the account id `account` names (id, label, or None: the default or only one).

        A damaged token's account still resolves, so that logout can remove it.
        """
        if account is None:
            return self._default_or_only(provider)
        try:
            self.read(provider, account)
        except NoTokenError:
            return self._by_label(provider, account)
        except StoreError:
            pass
        return account

    def _label_hint(self, provider: str, account: str) -> str | None:
        """Return the one account id a label probably names, cheaply, or None (ask the index)."""
        return None

    def _by_label(self, provider: str, account: str) -> str:
        index = self.accounts(provider)
        if account in index:  # indexed, but its file is gone: read() says so
            return account
        folded = account.casefold()
        matches = [i for i, label in index.items() if (label or "").casefold() == folded]
        if len(matches) > 1:
            raise UsageError(
                f"several accounts of {provider} are labelled {account!r}; "
                f"use the account id instead: {', '.join(sorted(matches))}"
            )
        if not matches:
            raise NoTokenError(
                f"no stored token for account {account!r} of {provider}"
                f"{self._listing(provider, index)}; run: loopauth login {provider} "
                f"--account {account}"
            )
        return matches[0]

    def _default_or_only(self, provider: str) -> str:
        default = self.get_default(provider)
        if default is not None:
            return default
        index = self.accounts(provider)
        if not index:
            raise NoTokenError(f"no stored token for {provider}; run: loopauth login {provider}")
        if len(index) > 1:
            raise UsageError(
                f"{provider} has {len(index):,} accounts{self._listing(provider, index)}; "
                f"choose one with --account, or set a default: loopauth switch {provider} ACCOUNT"
            )
        return next(iter(index))

    def switch(self, provider: str, account: str) -> str:
        """Make the account named by `account` (id or label) the default; return its id."""
        account_id = self.resolve(provider, account)
        self.read(provider, account_id)  # a damaged or vanished one can't be the default
        self.set_default(provider, account_id)
        return account_id

    @staticmethod
    def _listing(provider: str, index: dict[str, str | None]) -> str:
        shown = [
            f"{i} ({label})" if label and label != i else i
            for i, label in sorted(index.items())[:SHOWN_ACCOUNTS]
        ]
        more = len(index) - len(shown)
        tail = f" and {more:,} more (loopauth status {provider})" if more > 0 else ""
        return f" (stored: {', '.join(shown)}{tail})" if shown else " (none stored)"


# path -> (lstat signature, what was parsed from it): see TokenStore._cached.
_PARSED: dict[str, tuple[tuple[int, ...], object]] = {}
# One lock object per file and process: re-entrant, so the fast path can hold an account's lock
# while the full CLI (a new TokenStore) refreshes under it.
_LOCKS: dict[str, private.Lock] = {}
INDEX = ".index"
LABELS = ".labels"  # a folder of 256 buckets: casefolded label -> account ids
DEFAULT = ".default"


class TokenStore(Store):
    """The file store: `<home>/tokens/<provider>/<account>.json`, 0600 in 0700 folders."""

    kind = "file"

    def __init__(self, home: str | None = None) -> None:
        self.root = os.path.join(home or paths.home(), "tokens")
        self._checked: set[str] = set()

    def __repr__(self) -> str:
        return f"TokenStore({self.root!r})"

    def provider_dir(self, provider: str) -> str:
        """Return the directory holding a provider's tokens."""
        return os.path.join(self.root, provider)

    def path_for(self, provider: str, account_id: str) -> str:
        """Return the token file of one account."""
        return os.path.join(self.provider_dir(provider), file_stem(account_id) + ".json")

    # -- reading ----------------------------------------------------------------------------------

    def read(self, provider: str, account_id: str) -> Token:
        """Return one account's token, opening only its own file (not even that when unchanged)."""
        path = self.path_for(provider, account_id)
        try:
            return self._cached(path, self.read_file, "token file")
        except FileNotFoundError:
            raise NoTokenError(
                f"no stored token for account {account_id!r} of {provider}; "
                f"run: loopauth login {provider} --account {account_id}"
            ) from None

    def read_file(self, path: str) -> Token:
        """Read one token file; a damaged file is an error that names it, a planted one too."""
        try:
            self._check_folder(os.path.dirname(path))
            # A token planted by another user would be printed and sent as ours.
            data = private.read(path, MAX_TOKEN_FILE, "token file", folder=False)
            if len(data) > MAX_TOKEN_FILE:
                raise ValueError("larger than 1 MiB")
            return Token.from_dict(json.loads(data))
        except FileNotFoundError:
            raise
        except (OSError, ValueError, RecursionError) as exc:
            raise StoreError(
                f"token file {path} is damaged or unreadable ({_why(exc)}); "
                "log in again to replace it, or remove it with logout --account"
            ) from None

    def _cached(self, path: str, load: Callable[[str], T], what: str) -> T:
        """Return `load(path)`, or what it returned before when the file has not changed.

        A long-running program asks for its token many times a second; one lstat (which the
        privacy check needs anyway) replaces opening and parsing the file. Every write is a new
        file (os.replace), so a changed file has another inode, size or change time.
        """
        st = os.lstat(path)
        why = private.problem_of(st)
        if why:  # planted by someone else: refused before it is read
            raise private.refusal(path, why, what)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        hit = _PARSED.get(path)
        if hit is not None and hit[0] == key:
            return hit[1]  # type: ignore[return-value]
        value = load(path)
        if len(_PARSED) >= 256:  # a bounded cache: status over 10,000 accounts does not use it
            _PARSED.clear()
        _PARSED[path] = (key, value)
        return value

    def accounts(self, provider: str) -> dict[str, str | None]:
        """Return the index, rebuilding it from the token files when it is missing or damaged."""
        folder = self.provider_dir(provider)
        try:
            index = self._cached(os.path.join(folder, INDEX), self._read_json, "index")
        except (OSError, StoreError):
            index = None
        accounts = index.get("accounts") if index else None
        if isinstance(accounts, dict) and all(
            isinstance(k, str) and isinstance(v, str | None) for k, v in accounts.items()
        ):
            return accounts
        if not os.path.isdir(folder):
            return {}
        with self._index_lock(provider):
            return self._rebuild_index(provider)

    def entries(self, provider: str) -> Iterator[Entry]:
        """Yield every token file of a provider (sorted by file name), damaged ones included."""
        folder = self.provider_dir(provider)
        names = _token_files(folder)
        if names:
            self._check_folder(folder)
        stems: dict[str, str] | None = None
        for name in names:
            path = os.path.join(folder, name)
            try:
                token = self.read_file(path)
            except FileNotFoundError:  # logged out by another process meanwhile
                continue
            except StoreError as exc:
                if stems is None:  # only for damaged files: the index knows their account id
                    stems = {file_stem(i): i for i in self.accounts(provider)}
                stem = name[: -len(".json")]
                account_id = stems.get(stem, stem)
                yield Entry(account_id, None, str(exc))
                continue
            yield Entry(token.account, token)

    def providers(self) -> list[str]:
        """Return the providers with a tokens folder."""
        try:
            return sorted(n for n in os.listdir(self.root) if not n.startswith("."))
        except FileNotFoundError:
            return []

    def get_default(self, provider: str) -> str | None:
        """Return the default account id recorded by `loopauth switch`."""
        try:
            data = self._cached(
                os.path.join(self.provider_dir(provider), DEFAULT), self._read_json, "default"
            )
        except (OSError, StoreError):
            data = None
        value = data.get("account_id") if data else None
        return value if isinstance(value, str) else None

    # -- writing ----------------------------------------------------------------------------------

    def lock(self, provider: str, account_id: str) -> private.Lock:
        """Return the cross-process lock guarding one account's token (re-entrant in-process)."""
        path = self.path_for(provider, account_id)[: -len(".json")] + ".lock"
        if path not in _LOCKS:
            self.check_writable(provider)
            _LOCKS[path] = private.lock(path, timeout=120)
        return _LOCKS[path]

    def _index_lock(self, provider: str) -> private.Lock:
        path = os.path.join(self.provider_dir(provider), ".index.lock")
        if path not in _LOCKS:
            self.check_writable(provider)
            _LOCKS[path] = private.lock(path, timeout=120)
        return _LOCKS[path]

    def write(self, token: Token) -> str:
        """Write a token atomically (temp file + os.replace), indexing a new account first."""
        path = self.path_for(token.provider, token.account)
        # Key order kept: `raw` is the provider's response as received (the seed's file shape).
        data = json.dumps(token.to_dict(), indent=2).encode()
        try:
            with self.lock(token.provider, token.account):
                if self._needs_indexing(path, token):
                    # Index first: a crash in between leaves an entry whose file is missing,
                    # which readers skip, rather than an account nobody can find by label.
                    self._update_index(token.provider, {token.account: token.account_label})
                self._sweep(os.path.dirname(path), os.path.basename(path))
                private.write(path, data)
        except OSError as exc:
            raise _write_error(path, exc) from None
        return path

    def write_many(self, tokens: Iterable[Token]) -> int:
        """Write many tokens, then update each provider's index once (10,000 stay cheap)."""
        added: dict[str, dict[str, str | None]] = {}
        count = 0
        try:
            for token in tokens:
                if not token.provider:
                    raise ValueError("a token needs its provider before it is stored")
                if token.provider not in added:
                    self.accounts(token.provider)  # an index of what was there, before adding
                    added[token.provider] = {}
                lock_path = self.path_for(token.provider, token.account)[: -len(".json")] + ".lock"
                try:
                    with self.lock(token.provider, token.account):
                        self._store_one(token)
                finally:
                    _LOCKS.pop(lock_path, None)  # 10,000 open locks: no
                added[token.provider][token.account] = token.account_label
                count += 1
        finally:  # interrupted or failed: what was written is indexed all the same
            for provider, entries in added.items():
                if entries:
                    try:
                        private.sync(self.provider_dir(provider))  # once, not once per token
                    except OSError as exc:
                        raise _write_error(self.provider_dir(provider), exc) from None
                    self._update_index(provider, entries)
        return count

    def _store_one(self, token: Token) -> None:
        """Store one token of a batch; the caller holds its lock and indexes it afterwards."""
        path = self.path_for(token.provider, token.account)
        try:  # the folder is synced once, after the batch
            private.write(path, json.dumps(token.to_dict(), indent=2).encode(), sync_folder=False)
        except OSError as exc:
            raise _write_error(path, exc) from None

    def remove(self, provider: str, account_id: str) -> bool:
        """Delete one account's token file and its index entry (and the default, if it was)."""
        path = self.path_for(provider, account_id)
        with self.lock(provider, account_id):
            # Unindexed first: interrupted here, the file is still found by its id (and status
            # lists it), rather than an index naming a token that is gone.
            self._update_index(provider, {}, removed=account_id)
            try:
                os.unlink(path)
                found = True
            except FileNotFoundError:
                found = False
            except OSError as exc:
                raise StoreWriteError(f"cannot delete {path}: {exc.strerror or exc}") from None
        if self.get_default(provider) == account_id:
            self.set_default(provider, None)
        return found

    def set_default(self, provider: str, account_id: str | None) -> None:
        """Record the default account in `.default` (removed for None)."""
        path = os.path.join(self.provider_dir(provider), DEFAULT)
        self.check_writable(provider)
        try:
            if account_id is None:
                if os.path.lexists(path):
                    os.unlink(path)
            else:
                private.write(path, json.dumps({"account_id": account_id}).encode())
        except OSError as exc:
            raise _write_error(path, exc) from None

    def check_writable(self, provider: str) -> None:
        """Fail early (before a login spends its code) when tokens can't be stored."""
        folder = self.provider_dir(provider)
        if folder in self._checked:
            return
        try:
            private.own_dir(folder)
            # Folders an older version (or a umask of 000) left open are closed again here.
            private.secure_dir(os.path.dirname(self.root), follow=True)
            private.secure_dir(self.root)
            if not os.access(folder, os.W_OK):
                raise PermissionError(13, "permission denied")
        except OSError as exc:
            raise StoreWriteError(
                f"cannot store tokens in {folder}: {exc.strerror or exc}; check LOOPAUTH_HOME"
            ) from None
        self._checked.add(folder)

    # -- the index --------------------------------------------------------------------------------

    def _needs_indexing(self, path: str, token: Token) -> bool:
        """Return True unless the account is indexed, and stored under the same label."""
        try:
            previous = self.read_file(path)
        except (FileNotFoundError, StoreError):
            return True
        if previous.account_label != token.account_label:
            return True
        # An index that missed it (a write interrupted long ago) is repaired here.
        return token.account not in self.accounts(token.provider)

    def _update_index(
        self, provider: str, entries: dict[str, str | None], removed: str | None = None
    ) -> None:
        path = os.path.join(self.provider_dir(provider), INDEX)
        try:
            with self._index_lock(provider):
                data = self._read_json(path)
                accounts = data.get("accounts") if data else None
                if not isinstance(accounts, dict):
                    accounts = self._rebuild_index(provider)
                changed = {accounts.get(i) for i in entries} | set(entries.values())
                if removed is not None:
                    changed.add(accounts.get(removed))
                accounts.update(entries)
                if removed is not None:
                    accounts.pop(removed, None)
                # Buckets first: a crash in between leaves a hint that reading the token refutes.
                self._write_labels(provider, accounts, {_bucket(x) for x in changed if x})
                private.write(path, _index_bytes(accounts))
        except OSError as exc:
            raise _write_error(path, exc) from None

    def _rebuild_index(self, provider: str) -> dict[str, str | None]:
        """Index every readable token file (an older version kept no index); caller locks."""
        accounts: dict[str, str | None] = {}
        for entry in self.entries_without_index(provider):
            accounts[entry.account_id] = entry.token.account_label if entry.token else None
        try:
            self.check_writable(provider)
            self._write_labels(provider, accounts, None)
            private.write(os.path.join(self.provider_dir(provider), INDEX), _index_bytes(accounts))
        except (OSError, StoreError):  # a read-only store still answers, just slower
            pass
        return accounts

    def _write_labels(
        self, provider: str, accounts: dict[str, str | None], buckets: set[str] | None
    ) -> None:
        """Rewrite the label buckets (all, or those named): casefolded label -> account ids.

        A label lookup among 10,000 accounts then reads one bucket of a few dozen, not the
        whole index. Caller holds the index lock.
        """
        folder = os.path.join(self.provider_dir(provider), LABELS)
        private.own_dir(folder)
        grouped: dict[str, dict[str, list[str]]] = {}
        for account_id, label in accounts.items():
            if label:
                folded = label.casefold()
                grouped.setdefault(_bucket(folded), {}).setdefault(folded, []).append(account_id)
        names = set(grouped) if buckets is None else buckets
        if buckets is None:  # a rebuild: buckets no label hashes to any more go too
            for name in os.listdir(folder):
                if name not in names and not name.startswith("."):
                    os.unlink(os.path.join(folder, name))
        for name in names:
            data = json.dumps(grouped.get(name, {}), separators=(",", ":")).encode()
            private.write(os.path.join(folder, name), data, sync_folder=False)
        private.sync(folder)

    def _label_hint(self, provider: str, account: str) -> str | None:
        """Return the one account id the label's bucket names, or None."""
        folded = account.casefold()
        path = os.path.join(self.provider_dir(provider), LABELS, _bucket(folded))
        try:
            data = self._cached(path, self._read_json, "label index")
        except (OSError, StoreError, UnsafePath):
            return None
        ids = data.get(folded) if data else None
        if isinstance(ids, list) and len(ids) == 1 and isinstance(ids[0], str):
            return ids[0]
        return None

    def entries_without_index(self, provider: str) -> Iterator[Entry]:
        """Yield the readable token files of a provider, without consulting the index."""
        folder = self.provider_dir(provider)
        for name in _token_files(folder):
            try:
                token = self.read_file(os.path.join(folder, name))
            except (FileNotFoundError, StoreError):
                continue
            yield Entry(token.account, token)

    def _read_json(self, path: str) -> dict[str, object] | None:
        """Read one of the store's own small JSON files; None when absent or not ours."""
        try:
            self._check_folder(os.path.dirname(path))
            data = json.loads(private.read(path, 64 << 20, folder=False))
        except (OSError, ValueError, RecursionError):
            return None
        return data if isinstance(data, dict) else None

    def _check_folder(self, folder: str) -> None:
        if folder in self._checked:
            return
        try:
            why = private.problem(folder)
        except FileNotFoundError:
            return
        if why:
            raise private.refusal(folder, why, "the token folder")
        self._checked.add(folder)  # only its owner can change it, and that is us

    @staticmethod
    def _sweep(folder: str, stem: str) -> None:
        # Temp files of a killed writer: safe to delete because we hold this account's lock.
        for name in os.listdir(folder):
            if name.startswith(f".{stem}.") and name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(folder, name))
                except OSError:
                    pass


SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def file_stem(account_id: str) -> str:
    """Return an account's file name: a readable slug, and a hash that keeps odd ids apart."""
    # Each run of other characters becomes one "_"; no `re` (and no OpenSSL-backed hashlib):
    # this is on the cached-token path, where their imports cost more than the rest.
    slug: list[str] = []
    in_run = False
    for char in account_id:
        if char in SAFE:
            slug.append(char)
        elif not in_run:
            slug.append("_")
        in_run = char not in SAFE
    text = "".join(slug).strip("._")[:40] or "account"
    # The hash keeps ids distinct on case-insensitive file systems and after slugging.
    return f"{text}-{private.sha256(account_id.encode())[:10]}"


def _token_files(folder: str) -> list[str]:
    """Return the token file names in a provider's folder, sorted; none when it is missing."""
    try:
        return sorted(f for f in os.listdir(folder) if f.endswith(".json") and f[0] != ".")
    except (FileNotFoundError, NotADirectoryError):
        return []


def _bucket(label: str) -> str:
    """Return the label bucket of a label (casefolded or not: the same bucket either way)."""
    return private.sha256(label.casefold().encode("utf-8", "surrogatepass"))[:2]


def _index_bytes(accounts: dict[str, str | None]) -> bytes:
    return json.dumps({"version": 1, "accounts": accounts}, separators=(",", ":")).encode()


def _why(exc: BaseException) -> str:
    if isinstance(exc, ValueError) and not isinstance(exc, json.JSONDecodeError):
        return str(exc)
    return type(exc).__name__


def _write_error(path: str, exc: OSError) -> StoreWriteError:
    return StoreWriteError(
        f"cannot save the token to {path}: {exc.strerror or exc}; "
        "the previous token file (if any) is unchanged"
    )
