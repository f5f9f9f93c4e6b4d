"""The OS credential store (`store: keyring`): tokens in the system keyring via `keyring`.

Each token (access and refresh tokens, the raw response) is one keyring entry: service
`loopauth:{provider}` (the prefix is `store_options: {service: ...}`), username the account id,
the secret the token's compact JSON. A keyring cannot list its entries, so the bookkeeping the
file store keeps beside its tokens stays on disk, under `$LOOPAUTH_HOME/keyring/{provider}/`:
the index (account id -> label), the default account and the per-account lock files. None of
them holds a secret.

`keyring` is an optional dependency (`loopauth[keyring]`), imported only when a token is read
or written: this module itself is imported on every full CLI start.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from loopauth import hookimpl, paths
from loopauth.errors import LoopauthError, NoTokenError, StoreError, StoreWriteError
from loopauth.provider import Setting
from loopauth.store import MAX_TOKEN_FILE, Entry, Store, TokenStore
from loopauth.stores import StoreType
from loopauth.token import Token

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

DEFAULT_SERVICE = "loopauth"
INSTALL = "the keyring store needs: pip install 'loopauth[keyring]'"
# Windows' Credential Manager holds at most 2560 bytes per secret (CRED_MAX_CREDENTIAL_BLOB_SIZE),
# and keyring stores the text as UTF-16: 1280 characters.
WINDOWS_LIMIT = 2560
MAX_REASON = 300  # characters of a backend's own error message that are worth showing


class KeyringStore(TokenStore):
    """Tokens in the OS keyring; index, default account and locks as files, like the file store.

    Everything but the token itself is inherited from the file store, rooted at
    `$LOOPAUTH_HOME/keyring` instead of `tokens`. As the keyring cannot enumerate, a lost
    index forgets which accounts exist (their entries stay, and an account id still finds its
    token); a login indexes the account again.
    """

    kind = "keyring"

    def __init__(self, home: str | None = None, service: str = DEFAULT_SERVICE) -> None:
        self._home = home
        super().__init__(home)
        self.service = service
        self._keyring: KeyringBackend | None = None
        self._probed: set[str] = set()

    @property
    def root(self) -> str:
        """Return the folder of the index, default and lock files (follows LOOPAUTH_HOME)."""
        return os.path.join(self._home or paths.home(), "keyring")

    @root.setter
    def root(self, value: str) -> None:
        """Ignore the file store's `tokens` folder: the root is always derived from the home."""

    def __repr__(self) -> str:
        return f"KeyringStore({self.root!r}, service={self.service!r})"

    def describe(self) -> str:
        """Return "keyring (BACKEND)"; never fails (an unusable keyring is named as such)."""
        try:
            name = backend_name(self.backend())
        except StoreError:
            name = "no usable backend"
        prefix = "" if self.service == DEFAULT_SERVICE else f", service {self.service}:PROVIDER"
        return f"keyring ({name}{prefix})"

    def service_for(self, provider: str) -> str:
        """Return the keyring service a provider's tokens are stored under."""
        return f"{self.service}:{provider}"

    # -- the keyring --------------------------------------------------------------------------

    def backend(self) -> KeyringBackend:
        """Return the keyring backend, or raise StoreWriteError saying why there is none."""
        if self._keyring is not None:
            return self._keyring
        try:
            import keyring
            from keyring.backends import fail, null
        except ImportError:
            raise StoreWriteError(INSTALL) from None
        try:
            found = keyring.get_keyring()
        except Exception as exc:  # a backend's own failure, e.g. no D-Bus session bus
            wanted = os.environ.get("PYTHON_KEYRING_BACKEND", "").strip()
            if wanted and isinstance(exc, ImportError | AttributeError | ValueError):
                why = f"PYTHON_KEYRING_BACKEND={wanted} names no backend: {reason(exc)}"
                raise unusable(why) from None
            raise unusable(explain(exc), short_name(wanted) if wanted else None) from None
        if isinstance(found, fail.Keyring):
            hint = ""
            if sys.platform not in ("win32", "darwin"):
                hint = (
                    "; on Linux it needs a Secret Service (gnome-keyring, KeePassXC...) or "
                    "KWallet on the D-Bus session bus"
                )
            raise unusable(f"keyring found no backend for this system{hint}")
        if isinstance(found, null.Keyring):
            raise unusable("keyring is configured with the null backend, which stores nothing")
        self._keyring = found
        return found

    def _get(self, provider: str, account_id: str) -> str | None:
        backend = self.backend()
        try:
            return backend.get_password(self.service_for(provider), account_id)
        except UnicodeError as exc:  # the secret is not text: not one of ours
            raise self._damaged(provider, account_id, type(exc).__name__) from None
        except Exception as exc:
            raise unusable(explain(exc), backend_name(backend)) from None

    def _check_size(self, token: Token, data: str) -> int:
        """Refuse what Windows would refuse (or cut); return the size Windows would store."""
        backend = self.backend()
        size = len(data.encode("utf-16-le"))
        if is_windows(backend) and size > WINDOWS_LIMIT:
            raise self._too_large(token, backend, size)
        return size

    def _set(self, token: Token, data: str) -> None:
        size = self._check_size(token, data)
        backend = self.backend()
        try:
            backend.set_password(self.service_for(token.provider), token.account, data)
        except Exception as exc:
            why = reason(exc, data, token.access_token, token.refresh_token)
            if size > WINDOWS_LIMIT and any(
                word in why.lower() for word in ("too large", "too long", "size", "bad data")
            ):
                raise self._too_large(token, backend, size) from None
            raise unusable(explain(exc, why), backend_name(backend)) from None

    def _delete(self, provider: str, account_id: str) -> bool:
        from keyring.errors import PasswordDeleteError

        backend = self.backend()
        try:
            backend.delete_password(self.service_for(provider), account_id)
        except PasswordDeleteError:  # usually "not there"; otherwise say so
            if self._get(provider, account_id) is None:
                return False
            raise StoreWriteError(
                f"the OS keyring ({backend_name(backend)}) refused to delete the token of "
                f"account {account_id!r} of {provider}"
            ) from None
        except Exception as exc:
            raise unusable(explain(exc), backend_name(backend)) from None
        return True

    def _damaged(self, provider: str, account_id: str, why: str) -> StoreError:
        return StoreError(
            f"the keyring entry of account {account_id!r} of {provider} (service "
            f"{self.service_for(provider)!r}) is not a loopauth token ({why}); log in again to "
            f"replace it, or remove it: loopauth logout {provider} --account {account_id}"
        )

    def _too_large(self, token: Token, backend: KeyringBackend, size: int) -> StoreWriteError:
        return StoreWriteError(
            f"the token of {token.provider} ({token.account}) is too large for the OS keyring "
            f"({backend_name(backend)}): {size:,} bytes, and it holds at most {WINDOWS_LIMIT:,} "
            f"per secret; nothing was stored: use store: file for {token.provider}"
        )

    # -- the primitives -----------------------------------------------------------------------

    def read(self, provider: str, account_id: str) -> Token:
        """Return one account's token from the keyring (an entry that is gone is absent)."""
        data = self._get(provider, account_id)
        if data is None:
            raise NoTokenError(
                f"no stored token for account {account_id!r} of {provider}; "
                f"run: loopauth login {provider} --account {account_id}"
            )
        try:
            if len(data) > MAX_TOKEN_FILE:
                raise ValueError("larger than 1 MiB")
            parsed = json.loads(data)
            if not isinstance(parsed, dict) or not isinstance(parsed.get("access_token"), str):
                raise ValueError("JSON without an access_token")
            token = Token.from_dict(parsed)
        except json.JSONDecodeError:
            raise self._damaged(provider, account_id, "not JSON") from None
        except RecursionError:
            raise self._damaged(provider, account_id, "nested too deeply") from None
        except ValueError as exc:  # Token.from_dict names the key, never the value
            raise self._damaged(provider, account_id, str(exc)) from None
        if (token.provider or provider) != provider or token.account != account_id:
            raise self._damaged(provider, account_id, "it is another account's token")
        return token

    def entries(self, provider: str) -> Iterator[Entry]:
        """Yield every indexed account (sorted by id), damaged ones too; gone ones are skipped."""
        for account_id in sorted(self.accounts(provider)):
            try:
                token = self.read(provider, account_id)
            except NoTokenError:  # logged out meanwhile, or removed from the keyring by hand
                continue
            except StoreWriteError:  # no keyring at all: not one account's problem
                raise
            except StoreError as exc:
                yield Entry(account_id, None, str(exc))
                continue
            yield Entry(account_id, token)

    def entries_without_index(self, provider: str) -> Iterator[Entry]:
        """Yield nothing: the keyring cannot enumerate, so a lost index can't be rebuilt."""
        return iter(())

    def write(self, token: Token) -> str:
        """Store a token in the keyring (replacing the previous one), indexing a new account."""
        data = token_json(token)
        self._check_size(token, data)  # before the index learns of an account that won't fit
        with self.lock(token.provider, token.account):
            index = self.accounts(token.provider)
            new = token.account not in index
            if new or index[token.account] != token.account_label:
                # Index first, as the file store does: an entry without its secret reads absent.
                self._update_index(token.provider, {token.account: token.account_label})
            try:
                self._set(token, data)
            except StoreError:
                if new:  # forget the account again rather than list one that has no token
                    with contextlib.suppress(LoopauthError):
                        self._update_index(token.provider, {}, removed=token.account)
                raise
        return self.where(token)

    def where(self, token: Token) -> str:
        """Return where a token is kept, for people."""
        name = backend_name(self.backend())
        return f"the OS keyring ({name}), {self.service_for(token.provider)} {token.account}"

    def _store_one(self, token: Token) -> None:
        """Store one token of a batch in the keyring (the file store's write_many does the rest)."""
        self._set(token, token_json(token))

    def remove(self, provider: str, account_id: str) -> bool:
        """Delete one account's keyring entry, its index entry, and the default if it was."""
        with self.lock(provider, account_id):
            found = self._delete(provider, account_id)
        self._update_index(provider, {}, removed=account_id)
        if self.get_default(provider) == account_id:
            self.set_default(provider, None)
        return found

    def check_writable(self, provider: str) -> None:
        """Fail early (before a login spends its code) without a usable keyring or folder.

        One read reaches the keyring itself: a locked one asks to be unlocked now, not after
        the browser.
        """
        super().check_writable(provider)
        if provider in self._probed:
            return
        self._get(provider, ".loopauth-probe")
        self._probed.add(provider)


def token_json(token: Token) -> str:
    """Return the stored form, compact (a keyring may hold only 2560 bytes)."""
    return json.dumps(token.to_dict(), separators=(",", ":"))


def backend_name(backend: object) -> str:
    """Return a backend's short name: SecretService, macOS, WinVaultKeyring..."""
    cls = type(backend)
    return short_name(f"{cls.__module__}.{cls.__name__}")


def short_name(qualified: str) -> str:
    """Return the short name of a backend class's dotted name (as PYTHON_KEYRING_BACKEND has)."""
    module, _, name = qualified.rpartition(".")
    if name == "Keyring" and module:  # keyring.backends.SecretService.Keyring and the like
        return module.rsplit(".", 1)[-1]
    return name or qualified


def is_windows(backend: object) -> bool:
    """Return True for Windows' Credential Manager (whose secrets are small)."""
    return type(backend).__module__.endswith(".Windows")


def reason(exc: BaseException, *secrets: str | None) -> str:
    """Return a backend error for people: its type and message, short, secrets blanked."""
    text = " ".join(str(exc).split())
    for secret in secrets:
        if secret:
            text = text.replace(secret, "...")
    if len(text) > MAX_REASON:
        text = text[: MAX_REASON - 3] + "..."
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def explain(exc: BaseException, why: str | None = None) -> str:
    """Return why a backend failed; a failed connection on Linux is the D-Bus session bus."""
    why = why or reason(exc)
    if type(exc).__name__ == "KeyringLocked":  # the unlock prompt was dismissed, or absent
        return f"it is locked and was not unlocked: {why}"
    if isinstance(exc, OSError) and sys.platform not in ("win32", "darwin"):
        return f"cannot reach the D-Bus session bus ($DBUS_SESSION_BUS_ADDRESS): {why}"
    return why


def unusable(why: str, backend: str | None = None) -> StoreWriteError:
    """Return the error for a keyring that can't be used, and what to do about it."""
    which = f"{backend}: " if backend else ""
    return StoreWriteError(
        f"no usable OS keyring ({which}{why}); install or unlock one, or use store: file"
    )


def _validate(url: str, options: Mapping[str, Any]) -> str | None:
    from importlib.util import find_spec

    service = options.get("service", DEFAULT_SERVICE)
    if not isinstance(service, str) or not service.strip() or not service.isprintable():
        return "store_options.service must be a non-empty line of text"
    if find_spec("keyring") is None:
        return INSTALL
    return None


def _open(url: str, options: Mapping[str, Any]) -> Store:
    return KeyringStore(service=str(options.get("service") or DEFAULT_SERVICE))


KEYRING = StoreType(
    "keyring",
    _open,
    settings={
        "service": Setting(
            default=DEFAULT_SERVICE,
            help="keyring service prefix: tokens are stored under service PREFIX:PROVIDER",
        )
    },
    validate=_validate,
    description="the OS credential store (Secret Service, macOS Keychain, Windows Credential "
    "Manager) through `keyring`; pip install 'loopauth[keyring]'",
)


@hookimpl
def register_stores(register: Callable[[StoreType], None]) -> None:
    """Register the keyring store."""
    register(KEYRING)
