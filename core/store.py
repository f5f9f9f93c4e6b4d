"""Token files: one per provider and account, 0600 in 0700 directories, replaced atomically."""

from __future__ import annotations

import json
import os
import re

from . import paths, private
from .errors import NoTokenError, StoreError, StoreWriteError, UsageError
from .token import Token

TYPE_CHECKING = False
if TYPE_CHECKING:  # kept off the cached-token path, which only reads
    from filelock import BaseFileLock

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _file_stem(account_id: str) -> str:
    import hashlib

    # Readable prefix for people, hash so case-insensitive file systems and odd ids stay distinct.
    slug = _UNSAFE.sub("_", account_id).strip("._")[:40] or "account"
    return f"{slug}-{hashlib.sha256(account_id.encode()).hexdigest()[:10]}"


MAX_TOKEN_FILE = 1 << 20


class TokenStore:
    """Stored tokens under `<home>/tokens/<provider>/`."""

    def __init__(self, home: str | None = None) -> None:
        self.root = os.path.join(home or paths.home(), "tokens")
        self._locks: dict[str, BaseFileLock] = {}

    def __repr__(self) -> str:
        return f"TokenStore({self.root!r})"

    def provider_dir(self, provider: str) -> str:
        """Return the directory holding a provider's tokens."""
        return os.path.join(self.root, provider)

    def path_for(self, provider: str, account_id: str) -> str:
        """Return the token file of one account."""
        return os.path.join(self.provider_dir(provider), _file_stem(account_id) + ".json")

    def read(self, path: str, *, folder_checked: bool = False) -> Token:
        """Read one token file; a damaged file is an error that names it, a planted one too."""
        try:
            if not folder_checked:
                self._check_folder(os.path.dirname(path))
            # A token planted by another user would be printed and sent as ours.
            data = private.read(path, MAX_TOKEN_FILE, "token file", folder=False)
            if len(data) > MAX_TOKEN_FILE:
                raise ValueError("larger than 1 MiB")
            return Token.from_dict(json.loads(data))
        except FileNotFoundError:
            raise
        except (OSError, ValueError, RecursionError) as exc:
            why = (
                str(exc)
                if isinstance(exc, ValueError) and not isinstance(exc, json.JSONDecodeError)
                else type(exc).__name__
            )
            raise StoreError(
                f"token file {path} is damaged or unreadable ({why}); log in again to replace it"
            ) from None

    def list(self, provider: str | None = None) -> list[Token]:
        """Return the stored tokens of one provider (or of all), skipping none silently."""
        if provider is None:
            try:
                names = sorted(os.listdir(self.root))
            except FileNotFoundError:
                return []
            return [t for name in names for t in self.list(name)]
        folder = self.provider_dir(provider)
        try:
            files = sorted(f for f in os.listdir(folder) if f.endswith(".json") and f[0] != ".")
        except (FileNotFoundError, NotADirectoryError):
            return []
        self._check_folder(folder)
        tokens = []
        for name in files:
            try:
                tokens.append(self.read(os.path.join(folder, name), folder_checked=True))
            except FileNotFoundError:  # logged out by another process meanwhile
                continue
        return tokens

    def find(self, provider: str, account: str | None = None) -> Token:
        """Return the token of `account` (id or label), or the only one stored."""
        tokens = self.list(provider)
        if account is not None:
            matches = [t for t in tokens if t.account_id == account] or [
                t for t in tokens if (t.account_label or "").casefold() == account.casefold()
            ]
            if not matches:
                raise NoTokenError(
                    f"no stored token for account {account!r} of {provider}; "
                    f"run: loopauth login {provider} --account {account}"
                )
            if len(matches) > 1:
                raise UsageError(
                    f"several accounts of {provider} are labelled {account!r}; "
                    "use the account id instead"
                )
            return matches[0]
        if not tokens:
            raise NoTokenError(f"no stored token for {provider}; run: loopauth login {provider}")
        if len(tokens) > 1:
            names = ", ".join(t.account_label or t.account for t in tokens)
            raise UsageError(
                f"{provider} has several accounts ({names}); choose one with --account"
            )
        return tokens[0]

    def lock(self, provider: str, account_id: str) -> BaseFileLock:
        """Return the cross-process lock guarding one account's token (re-entrant in-process)."""
        path = self.path_for(provider, account_id)[: -len(".json")] + ".lock"
        if path not in self._locks:
            self.check_writable(provider)
            self._locks[path] = private.lock(path, timeout=120)
        return self._locks[path]

    def save(self, token: Token) -> str:
        """Write a token atomically (temp file + os.replace) and return its path."""
        if not token.provider:
            raise ValueError("a token needs its provider before it is stored")
        path = self.path_for(token.provider, token.account)
        # Key order kept: `raw` is the provider's response as received (the seed's file shape).
        data = json.dumps(token.to_dict(), indent=2).encode()
        try:
            with self.lock(token.provider, token.account):
                self._sweep(os.path.dirname(path), os.path.basename(path))
                private.write(path, data)
        except OSError as exc:
            raise StoreWriteError(
                f"cannot save the token to {path}: {exc.strerror or exc}; "
                "the previous token file (if any) is unchanged"
            ) from None
        return path

    def check_writable(self, provider: str) -> None:
        """Fail early (before a login spends its code) when tokens can't be stored."""
        folder = self.provider_dir(provider)
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

    def delete(self, token: Token) -> bool:
        """Remove a stored token; return False when it was not there."""
        path = self.path_for(token.provider, token.account)
        with self.lock(token.provider, token.account):
            try:
                os.unlink(path)
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise StoreWriteError(f"cannot delete {path}: {exc.strerror or exc}") from None
        return True

    @staticmethod
    def _check_folder(folder: str) -> None:
        try:
            why = private.problem(folder)
        except FileNotFoundError:
            return
        if why:
            raise private.refusal(folder, why, "the token folder")

    @staticmethod
    def _sweep(folder: str, stem: str) -> None:
        # Temp files of a killed writer: safe to delete because we hold this account's lock.
        for name in os.listdir(folder):
            if name.startswith(f".{stem}.") and name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(folder, name))
                except OSError:
                    pass
