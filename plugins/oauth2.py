"""The generic `oauth2` plugin: any RFC 6749 / OpenID provider from providers.yaml alone."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import loopauth
from loopauth.provider import ProviderType

RESERVED_AUTH_PARAMS = ("state", "code_challenge", "code_challenge_method", "redirect_uri")
RESERVED_TOKEN_PARAMS = ("grant_type", "code", "code_verifier", "redirect_uri", "refresh_token")


def client_settings_problem(settings: Mapping[str, Any]) -> str | None:
    """Return what any provider type checks alike: auth_params / token_params entries that
    loopauth sets itself, and a client authentication that needs a missing secret."""
    for setting, reserved in (
        ("auth_params", RESERVED_AUTH_PARAMS),
        ("token_params", RESERVED_TOKEN_PARAMS),
    ):
        for key in reserved:
            if key in (settings.get(setting) or {}):
                return f"{setting}: must not set {key!r}; loopauth sets it itself"
    method = settings.get("token_endpoint_auth_method")
    if method not in (None, "none") and not settings.get("client_secret"):
        return f"client_secret: is required by token_endpoint_auth_method {method}"
    return None


def _validate(settings: Mapping[str, Any]) -> str | None:
    if not settings.get("client_id"):
        return "client_id: is required"
    if not settings.get("issuer"):
        if not settings.get("token_endpoint"):
            return "token_endpoint: is required unless `issuer` is set (for discovery)"
        if not settings.get("authorization_endpoint") and not settings.get(
            "device_authorization_endpoint"
        ):  # a device-only provider (login --device) has no browser login
            return (
                "authorization_endpoint: is required unless `issuer` is set (for discovery) "
                "or the provider is for `login --device` (device_authorization_endpoint)"
            )
    if settings.get("supports_iss") and not settings.get("issuer"):
        return "supports_iss: needs `issuer`, the value the redirect's iss is compared with"
    return client_settings_problem(settings)


OAUTH2 = ProviderType(
    name="oauth2",
    description="any standards-based OAuth2 / OpenID Connect provider",
    validate=_validate,
    # A public client (PKCE, no secret) found by discovery: add client_secret if it has one.
    init_settings=("issuer", "client_id", "scope"),
    init_help="An OAuth2 / OpenID Connect provider found by discovery from its issuer URL.\n"
    "Register a native (public) client whose redirect URI is http://127.0.0.1/callback.",
)


@loopauth.hookimpl
def register_provider_types(register: Callable[[ProviderType], None]) -> None:
    """Register the generic provider type."""
    register(OAUTH2)


@loopauth.hookimpl
def register_emulators(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the standard OAuth2 / OpenID emulator."""
    from loopauth.emulator import OAuthEmulator

    register("oauth2", OAuthEmulator)
