"""The `tiktok_shop` plugin: TikTok Shop authorization, token refresh and signed API calls.

TikTok Shop is OAuth2 in outline only: the authorization link carries a `service_id` (a
creator's: the app key) and no client_id or redirect_uri; the code exchange and the refresh are
GET requests with the app secret in the query string; answers come in a
`{code, message, data, request_id}` envelope with absolute expiry timestamps. `auth` holds the
provider type, `api` the signed calls, `emulator` a local TikTok Shop, `demo` what `make demo`
runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import loopauth
from loopauth.provider import ProviderType

from .api import TikTokShopAuth, get_authorized_shops, shop_session, shops_command, sign
from .auth import (
    AUTH_HOST,
    AUTHORIZE_URLS,
    HINTS,
    PLUGIN,
    RELOGIN,
    SHOPS_PATH,
    TIKTOK_SHOP,
    TOKEN_HEADER,
    USER_TYPES,
    TikTokShopError,
    app_credentials,
    check_envelope,
    hint_for,
)

if TYPE_CHECKING:
    import argparse

    from loopauth.command import Command

__all__ = [
    "AUTHORIZE_URLS",
    "AUTH_HOST",
    "HINTS",
    "PLUGIN",
    "RELOGIN",
    "SHOPS_PATH",
    "TIKTOK_SHOP",
    "TOKEN_HEADER",
    "USER_TYPES",
    "TikTokShopAuth",
    "TikTokShopError",
    "app_credentials",
    "check_envelope",
    "get_authorized_shops",
    "hint_for",
    "shop_session",
    "sign",
]


@loopauth.hookimpl
def register_provider_types(register: Callable[[ProviderType], None]) -> None:
    """Register `tiktok_shop`."""
    register(TIKTOK_SHOP)


@loopauth.hookimpl
def register_emulators(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the TikTok Shop emulator."""
    from .emulator import TikTokShopEmulator

    register(PLUGIN, TikTokShopEmulator)


@loopauth.hookimpl
def register_commands(register: Callable[[Command], None]) -> None:
    """Add `loopauth shops`."""
    from loopauth.command import Command

    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    register(
        Command(
            "shops",
            "list the shops a TikTok Shop token is authorized for (Get Authorized Shops)",
            shops_command,
            configure,
        )
    )
