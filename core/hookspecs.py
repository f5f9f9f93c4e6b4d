"""The hooks a loopauth plugin can implement; `@loopauth.hookimpl` marks an implementation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .command import Command
    from .emulator import EmulatorServer
    from .provider import Account, Provider, ProviderType, TokenRequest
    from .token import Token

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


@hookspec(firstresult=True)
def authorization_params(provider: Provider, params: dict[str, str]) -> dict[str, str] | None:
    """Return the authorization URL's query parameters, or None to keep the standard ones."""


@hookspec(firstresult=True)
def token_request(
    provider: Provider, request: TokenRequest, callback: Mapping[str, str]
) -> TokenRequest | None:
    """Return the code-exchange request to send, or None to keep the standard one."""


@hookspec(firstresult=True)
def refresh_request(provider: Provider, request: TokenRequest) -> TokenRequest | None:
    """Return the refresh request to send, or None to keep the standard one."""


@hookspec(firstresult=True)
def parse_token_response(
    provider: Provider, response: Mapping[str, Any], previous: Token | None
) -> Token | None:
    """Turn the token endpoint's JSON into a Token (raise ProviderError), or None for standard."""


@hookspec(firstresult=True)
def account_for(provider: Provider, token: Token, callback: Mapping[str, str]) -> Account | None:
    """Return who the new token belongs to, or None to use the standard way (id_token, userinfo)."""
