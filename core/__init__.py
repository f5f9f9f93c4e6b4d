"""loopauth: OAuth2 tokens for desktop apps and scripts, via the system browser and loopback.

Names are imported on first use, so `loopauth token` stays fast.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .api import get_token, load_config, login, refresh
    from .apiclient import session
    from .device import DeviceFlow
    from .errors import (
        AccessDenied,
        ConfigError,
        FlowCancelled,
        FlowTimeout,
        LoopauthError,
        NoTokenError,
        ProviderError,
    )
    from .flow import Flow, State
    from .hookspecs import hookimpl
    from .provider import Account, Provider, ProviderType, Setting, TokenRequest
    from .store import TokenStore
    from .token import Token

__version__ = "0.1.0"

_EXPORTS = {
    "hookimpl": "hookspecs",
    "Flow": "flow",
    "DeviceFlow": "device",
    "State": "flow",
    "login": "api",
    "get_token": "api",
    "refresh": "api",
    "load_config": "api",
    "session": "apiclient",
    "Token": "token",
    "TokenStore": "store",
    "Account": "provider",
    "Provider": "provider",
    "ProviderType": "provider",
    "Setting": "provider",
    "TokenRequest": "provider",
    "LoopauthError": "errors",
    "ConfigError": "errors",
    "AccessDenied": "errors",
    "FlowTimeout": "errors",
    "FlowCancelled": "errors",
    "ProviderError": "errors",
    "NoTokenError": "errors",
}

__all__ = [
    "AccessDenied",
    "Account",
    "ConfigError",
    "DeviceFlow",
    "Flow",
    "FlowCancelled",
    "FlowTimeout",
    "LoopauthError",
    "NoTokenError",
    "Provider",
    "ProviderError",
    "ProviderType",
    "Setting",
    "State",
    "Token",
    "TokenRequest",
    "TokenStore",
    "__version__",
    "get_token",
    "hookimpl",
    "load_config",
    "login",
    "refresh",
    "session",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'loopauth' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
