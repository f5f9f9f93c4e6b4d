"""The plugin manager: third-party plugins from the `loopauth` entry-point group, then built-ins."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .errors import ConfigError

if TYPE_CHECKING:
    from .command import Command
    from .emulator import EmulatorServer
    from .provider import ProviderType
    from .stores import StoreType

log = logging.getLogger("loopauth.plugins")

ENTRY_POINT_GROUP = "loopauth"
# Built-in plugins, registered through the same call as third-party ones.
DEFAULT_PLUGINS = (
    "loopauth.plugins.oauth2",
    "loopauth.plugins.tiktok_shop",
    "loopauth.plugins.github",
    "loopauth.plugins.google",
    "loopauth.plugins.microsoft",
    "loopauth.plugins.file_store",
    "loopauth.plugins.keyring_store",
    "loopauth.plugins.redis_store",
)


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin and where it came from."""

    name: str
    distribution: str | None
    version: str | None
    builtin: bool


pm = pluggy.PluginManager("loopauth")
pm.add_hookspecs(hookspecs)
TRACE = bool(os.environ.get("LOOPAUTH_TRACE_HOOKS"))

_loaded: list[PluginInfo] = []
_failures: dict[str, str] = {}
_done = False


def _register(plugin: object, info: PluginInfo) -> None:
    pm.register(plugin, name=info.name)
    _loaded.append(info)


def load_plugins() -> None:
    """Load every plugin once: entry points (filtered by $LOOPAUTH_LOAD_PLUGINS), then built-ins."""
    global _done
    if _done:
        return
    _done = True
    from importlib.metadata import entry_points

    wanted = os.environ.get("LOOPAUTH_LOAD_PLUGINS")
    allowed = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if allowed is not None and ep.name not in allowed:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        dist = ep.dist
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not take the others down
            _failures[ep.name] = f"{type(exc).__name__}: {exc}"
            log.warning("plugin %s failed to load: %s", ep.name, _failures[ep.name])
            continue
        _register(
            plugin,
            PluginInfo(ep.name, dist.name if dist else None, dist.version if dist else None, False),
        )
    for module in DEFAULT_PLUGINS:
        name = module.rsplit(".", 1)[-1]
        _register(importlib.import_module(module), PluginInfo(name, "loopauth", None, True))
    pm.check_pending()


def plugins() -> list[PluginInfo]:
    """Return the loaded plugins."""
    load_plugins()
    return list(_loaded)


def failures() -> dict[str, str]:
    """Return plugins that failed to load, with the reason."""
    load_plugins()
    return dict(_failures)


def _collect(hook: str, key: Callable[[Any], str], what: str) -> dict[str, Any]:
    """Call every plugin's `register_*` hook by keyword; a name registered twice names both."""
    load_plugins()
    found: dict[str, Any] = {}
    owners: dict[str, str] = {}
    impls = getattr(pm.hook, hook).get_hookimpls()
    if TRACE:  # names only, as pluggy's own tracing would: never what is registered
        log.debug("hook %s -> %s", hook, ", ".join(i.plugin_name for i in impls))
    for impl in impls:

        def register(*item: Any, _owner: str = impl.plugin_name) -> None:
            value = item[0] if len(item) == 1 else item
            name = key(value)
            if name in found:
                raise ConfigError(
                    f"plugins {owners[name]} and {_owner} both register the {what} {name!r}"
                )
            found[name], owners[name] = value, _owner

        # Per implementation, not through pm.hook, so that a clash can name both plugins.
        impl.function(**{arg: register for arg in impl.argnames})
    return found


def provider_types() -> dict[str, ProviderType]:
    """Return every registered provider type by name; a duplicate name is an error."""
    return _collect("register_provider_types", lambda t: t.name, "provider type")


def commands() -> dict[str, Command]:
    """Return the commands plugins add, by name; a duplicate name is an error."""
    return _collect("register_commands", lambda c: c.name, "command")


def emulators() -> dict[str, Callable[..., EmulatorServer]]:
    """Return every registered emulator factory by name; a duplicate name is an error."""
    pairs = _collect("register_emulators", lambda pair: pair[0], "emulator")
    return {name: factory for name, (_, factory) in pairs.items()}


def store_types() -> dict[str, StoreType]:
    """Return every registered store type by name; a duplicate name is an error."""
    return _collect("register_stores", lambda t: t.name, "store type")
