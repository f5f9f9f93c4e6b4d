"""The Python API: log in, get a fresh token, refresh, each by provider name."""

from __future__ import annotations

from .config import Config
from .config import load as _load
from .errors import NoTokenError
from .flow import login as _login
from .provider import Provider
from .store import TokenStore
from .token import Token


def load_config(path: str | None = None) -> Config:
    """Load providers.yaml (from `path`, $LOOPAUTH_CONFIG, ./providers.yaml or the user dir)."""
    return _load(path)


def resolve_provider(provider: str | Provider | None, config: str | None = None) -> Provider:
    """Return `provider` itself, or that provider (default: `default:`) from providers.yaml."""
    if isinstance(provider, Provider):
        return provider
    return _load(config).select(provider)


def login(
    provider: str | Provider | None = None,
    *,
    account: str | None = None,
    config: str | None = None,
    timeout: float | None = None,
    open_browser: bool = True,
    store: TokenStore | None = None,
) -> Token:
    """Log in through the system browser and return the stored token."""
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
    store: TokenStore | None = None,
) -> Token:
    """Return the stored token, refreshed first when it is expired or about to expire."""
    return ensure_fresh(resolve_provider(provider, config), account, store or TokenStore())


def refresh(
    provider: str | Provider | None = None,
    *,
    account: str | None = None,
    config: str | None = None,
    store: TokenStore | None = None,
) -> Token:
    """Refresh the stored token now and return the new one."""
    return ensure_fresh(
        resolve_provider(provider, config), account, store or TokenStore(), force=True
    )


def ensure_fresh(
    provider: Provider, account: str | None, store: TokenStore, force: bool = False
) -> Token:
    """Refresh under a cross-process lock, re-reading first: another process may have done it."""
    token = store.find(provider.name, account)
    leeway = provider.refresh_leeway
    if not force and token.is_fresh(leeway):
        if not token.bound_to:
            _bind_on_first_use(provider, token, store)
        return token
    with store.lock(provider.name, token.account):
        token = store.find(provider.name, token.account_id or token.account)
        if not force and token.is_fresh(leeway):
            return token
        if not token.can_refresh():
            who = f" --account {token.account_label or token.account}" if token.account_id else ""
            raise NoTokenError(
                f"the token for {provider.name} ({token.account_label or token.account}) has "
                f"expired and there is no usable refresh token; run: loopauth login "
                f"{provider.name}{who}"
            )
        from . import oauth

        new = oauth.refresh(provider, token)  # only to whoever issued the token
        # Persist before use: a rotated refresh token is the only one that still works.
        store.save(new)
    return new


def _bind_on_first_use(provider: Provider, token: Token, store: TokenStore) -> None:
    """Record who issued a token saved by an older version, from the settings alone."""
    import logging

    from . import oauth
    from .errors import LoopauthError

    try:
        with store.lock(provider.name, token.account):
            latest = store.find(provider.name, token.account_id or token.account)
            if not latest.bound_to:
                # No network here: endpoints only discovery knows are bound at the next refresh.
                latest.bound_to = oauth.binding(provider, network=False)
                store.save(latest)
    except LoopauthError as exc:  # e.g. a read-only store: bind on the next use
        logging.getLogger("loopauth").debug("could not bind the token yet: %s", exc)
