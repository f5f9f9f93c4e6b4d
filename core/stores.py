"""Store types: what `store:` in providers.yaml selects, registered by plugins like providers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .provider import Provider, Setting
from .store import Store


@dataclass(frozen=True)
class StoreType:
    """A kind of token store: `store: NAME` or `store: SCHEME://...` selects it.

    `open(url, options)` returns the store; `options` are the `store_options:` the type
    declares in `settings`, already converted. `validate(url, options)` returns a problem or None.
    """

    name: str
    open: Callable[[str, Mapping[str, Any]], Store]
    schemes: tuple[str, ...] = ()
    settings: Mapping[str, Setting] = field(default_factory=dict)
    validate: Callable[[str, Mapping[str, Any]], str | None] | None = None
    description: str = ""


def store_types() -> dict[str, StoreType]:
    """Return every registered store type by name; a duplicate name is an error."""
    from .plugin_manager import store_types as collect

    return collect()


def type_for(value: str, types: Mapping[str, StoreType]) -> StoreType | None:
    """Return the store type `store:` names: a URL by its scheme, anything else by name."""
    scheme, sep, _ = value.partition("://")
    if sep:
        return next((t for t in types.values() if scheme.lower() in t.schemes), None)
    return types.get(value)


_FILE: dict[str, Store] = {}
_OPEN: dict[tuple[str, str, tuple[tuple[str, str], ...]], Store] = {}


def open_store(provider: Provider) -> Store:
    """Return the store a provider's tokens live in (one object per setting, per process)."""
    url = str(provider.settings.get("store") or "file")
    options = dict(provider.settings.get("store_options") or {})
    key = (provider.plugin, url, tuple(sorted((k, repr(v)) for k, v in options.items())))
    if url == "file" and not options:
        from . import paths
        from .store import TokenStore

        home = paths.home()  # one store per home: LOOPAUTH_HOME may change (tests do)
        if home not in _FILE:
            _FILE[home] = TokenStore(home)
        return _FILE[home]
    if key not in _OPEN:
        stype = type_for(url, store_types())
        if stype is None:  # config checked it; a Provider built in code may not be
            raise ConfigError(f"provider {provider.name}: no store type for `store: {url}`")
        _OPEN[key] = stype.open(url, options)
    return _OPEN[key]
