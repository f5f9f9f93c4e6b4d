"""The hooks a loopauth plugin can implement; `@loopauth.hookimpl` marks an implementation.

Every hook registers things: provider types (whose own callables carry the behaviour that
differs from the standard), emulators, commands and token stores. loopauth calls them by keyword.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .command import Command
    from .emulator import EmulatorServer
    from .provider import ProviderType
    from .stores import StoreType

hookspec = pluggy.HookspecMarker("loopauth")
hookimpl = pluggy.HookimplMarker("loopauth")


@hookspec
def register_provider_types(register: Callable[[ProviderType], None]) -> None:
    """Register provider types; each one's name is what `plugin:` selects in providers.yaml."""


@hookspec
def register_emulators(register: Callable[[str, Callable[..., EmulatorServer]], None]) -> None:
    """Register local emulators of auth servers: register(name, factory(host=, port=, **opts))."""


@hookspec
def register_commands(register: Callable[[Command], None]) -> None:
    """Add `loopauth` commands: register(Command(name, help, run, configure))."""


@hookspec
def register_stores(register: Callable[[StoreType], None]) -> None:
    """Register token stores; `store:` in providers.yaml selects one by name or URL scheme."""
