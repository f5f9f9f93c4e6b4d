"""The Python API: log in, get a fresh token, refresh, each by provider name."""

from __future__ import annotations

import os

from . import paths
from .config import Config
from .config import load as _load
from .errors import NoTokenError, ProviderError
from .flow import login as _login
from .provider import Provider
from .store import Store
from .token import Token


def load_config(path: str | None = None) -> Config:
    """Load providers.yaml (from `path`, $LOOPAUTH_CONFIG, ./providers.yaml or the user dir)."""
    return _load(path)


# path -> (what the loaded config was keyed on, the config): a long-running program asking for
# a token many times a second must not re-parse providers.yaml each time.
_CONFIGS: dict[str, tuple[tuple[object, ...], Config]] = {}


def cached_config(path: str | None = None) -> Config:
    """Return providers.yaml as loaded, reloading it only when it (or what it uses) changed."""
    found = paths.find_config(path)
    if found is None:
        return _load(path)  # raises the "not found" error
    file, origin = found
    try:
        st = os.stat(file)
    except OSError:
        return _load(path)
    if origin == paths.CURRENT_FOLDER:
        # The user's approval is of these exact bytes: compare them, not times an owner can set.
        from .config import read_file

        stamp: tuple[object, ...] = (read_file(file), _trust_stamp())
    else:
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size, st.st_ctime_ns)
    cached = _CONFIGS.get(file)
    if cached is not None and cached[0][0] == stamp:
        config = cached[1]
        if all(os.environ.get(k) == v for k, v in config.env_used.items()):
            return config
    config = _load(path)
    _CONFIGS[file] = ((stamp,), config)
    return config


def _trust_stamp() -> tuple[int, int, int] | None:
    try:
        st = os.stat(os.path.join(paths.home(), "trusted.json"))
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def resolve_provider(provider: str | Provider | None, config: str | None = None) -> Provider:
    """Return `provider` itself, or that provider (default: `default:`) from providers.yaml."""
    if isinstance(provider, Provider):
        return provider
    return cached_config(config).select(provider)


def store_for(provider: Provider, store: Store | None = None) -> Store:
    """Return `store`, or the store the provider's `store:` setting names."""
    if store is not None:
        return store
    from .stores import open_store

    return open_store(provider)


def login(
    provider: str | Provider | None = None,
    *,
    account: str | None = None,
    config: str | None = None,
    timeout: float | None = None,
    open_browser: bool = True,
    store: Store | None = None,
    device: bool = False,
) -> Token:
    """Log in through the system browser (or, with `device`, RFC 8628); return the stored token.

    With `device`, the code to enter and where are printed on stderr; no browser is opened.
    """
    if device:
        from .device import device_login

        return device_login(
            resolve_provider(provider, config), account=account, timeout=timeout, store=store
        )
    return _login(
        resolve_provider(provider, config),
        account=account,
        timeout=timeout,
        open_browser=open_browser,
        store=store,
    )


def get_token(
    provider: str | Provider | None = None,
    *,
    account: str | None = None,
    config: str | None = None,
    store: Store | None = None,
) -> Token:
    """Return the stored token, refreshed first when it is expired or about to expire."""
    resolved = resolve_provider(provider, config)
    return ensure_fresh(resolved, account, store_for(resolved, store))


def refresh(
    provider: str | Provider | None = None,
    *,
    account: str | None = None,
    config: str | None = None,
    store: Store | None = None,
) -> Token:
    """Refresh the stored token now and return the new one."""
    resolved = resolve_provider(provider, config)
    return ensure_fresh(resolved, account, store_for(resolved, store), force=True)


def ensure_fresh(
    provider: Provider, account: str | None, store: Store, force: bool = False
) -> Token:
    """Refresh under the store's lock, re-reading first: another process may have done it."""
    token = store.find(provider.name, account)
    leeway = provider.refresh_leeway
    if not force and token.is_fresh(leeway):
        if not token.bound_to:
            _bind_on_first_use(provider, token, store)
        return token
    with store.lock(provider.name, token.account):
        token = store.read(provider.name, token.account)
        if not force and token.is_fresh(leeway):
            return token
        who = token.account_label or token.account
        relogin = f"run: loopauth login {provider.name} --account {token.account}"
        if token.dead:
            raise NoTokenError(
                f"the refresh token for {provider.name} ({who}) was rejected by the provider "
                f"({token.dead}); {relogin}"
            )
        if token.lasts:
            return token
        if not token.can_refresh():
            raise NoTokenError(
                f"the token for {provider.name} ({who}) has expired and there is no usable "
                f"refresh token; {relogin}"
            )
        from . import oauth

        try:
            new = oauth.refresh(provider, token)  # only to whoever issued the token
        except ProviderError as exc:
            if not exc.grant_rejected:
                raise
            # Remembered, so that nobody asks the provider again with a token it called dead.
            token = _copy(token)  # a store may hand out what it cached: never change that
            token.dead = _rejection(exc, token, provider)
            store.save(token)
            hint = getattr(exc, "hint", None)  # a plugin's word on what the code means
            raise NoTokenError(
                f"{provider.name} rejected the refresh token of {who} ({token.dead})"
                + (f"; {hint}" if hint else "")
                + f"; {relogin}"
            ) from None
        # Persist before use: a rotated refresh token is the only one that still works.
        store.save(new)
    return new


def _copy(token: Token) -> Token:
    return Token.from_dict(token.to_dict())


def _rejection(exc: ProviderError, token: Token, provider: Provider) -> str:
    """Return what to remember of a rejection: printable, short, and never a secret it echoed."""
    reason = exc.error or "invalid_grant"
    if exc.description:
        reason = f"{reason}: {exc.description}"
    reason = "".join(c if c.isascii() and c.isprintable() else "?" for c in reason)[:200]
    secrets = (token.refresh_token, token.access_token, provider.client_secret)
    if any(s and len(s) >= 8 and s in reason for s in secrets):  # shorter ones: no secrets
        reason = "".join(c for c in (exc.error or "invalid_grant") if c.isalnum() or c in "._-")
    return reason or "invalid_grant"


def _bind_on_first_use(provider: Provider, token: Token, store: Store) -> None:
    """Record who issued a token saved by an older version, from the settings alone."""
    import logging

    from . import oauth
    from .errors import LoopauthError

    try:
        with store.lock(provider.name, token.account):
            latest = _copy(store.read(provider.name, token.account))
            if not latest.bound_to:
                # No network here: endpoints only discovery knows are bound at the next refresh.
                latest.bound_to = oauth.binding(provider, network=False)
                store.save(latest)
    except LoopauthError as exc:  # e.g. a read-only store: bind on the next use
        logging.getLogger("loopauth").debug("could not bind the token yet: %s", exc)
