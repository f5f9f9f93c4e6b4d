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

log = logging.getLogger("loopauth.plugins")

ENTRY_POINT_GROUP = "loopauth"
# Built-in plugins, registered through the same call as third-party ones.
DEFAULT_PLUGINS = ("loopauth.plugins.oauth2", "loopauth.plugins.tiktok_shop")


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin and where it came from."""

    name: str
    distribution: str | None
    version: str | None
    builtin: bool


pm = pluggy.PluginManager("loopauth")
pm.add_hookspecs(hookspecs)
if os.environ.get("LOOPAUTH_TRACE_HOOKS"):
    # Names only: hook arguments carry codes and tokens, which must never reach a log.
    pm.add_hookcall_monitoring(
        lambda name, impls, kwargs: log.debug(
            "hook %s -> %s", name, ", ".join(i.plugin_name for i in impls)
        ),
        lambda outcome, name, impls, kwargs: None,
    )

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


def provider_types() -> dict[str, ProviderType]:
    """Return every registered provider type by name; a duplicate name is an error."""
    load_plugins()
    types: dict[str, ProviderType] = {}
    owners: dict[str, str] = {}

    for impl in pm.hook.register_provider_types.get_hookimpls():

        def register(ptype: ProviderType, _owner: str = impl.plugin_name) -> None:
            if ptype.name in types:
                raise ConfigError(
                    f"plugins {owners[ptype.name]} and {_owner} both register "
                    f"the provider type {ptype.name!r}"
                )
            types[ptype.name] = ptype
            owners[ptype.name] = _owner

        # Called per implementation (not through pm.hook) so a clash can name both plugins.
        impl.function(*[register for _ in impl.argnames])
    return types


def commands() -> dict[str, Command]:
    """Return the commands plugins add, by name."""
    load_plugins()
    found: dict[str, Command] = {}

    def register(command: Command) -> None:
        found[command.name] = command

    pm.hook.register_commands(register=register)
    return found


def emulators() -> dict[str, Callable[..., EmulatorServer]]:
    """Return every registered emulator factory by name."""
    load_plugins()
    found: dict[str, Callable[..., Any]] = {}

    def register(name: str, factory: Callable[..., EmulatorServer]) -> None:
        found[name] = factory

    pm.hook.register_emulators(register=register)
    return found
