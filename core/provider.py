"""What a provider is: a plugin's ProviderType (settings it accepts) and a configured Provider."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

if TYPE_CHECKING:
    from .apiclient import ApiSession
    from .store import Store
    from .token import Token

SettingKind = Literal["str", "url", "bool", "int", "float", "scope", "map", "list", "ports"]

# Signature of a custom client authentication: authlib calls it as fn(client, method, uri,
# headers, body) and it returns (uri, headers, body).
ClientAuth = Callable[[Any, str, str, dict[str, str], str], tuple[str, dict[str, str], str]]


@dataclass(frozen=True)
class Setting:
    """One key a provider accepts in providers.yaml."""

    kind: SettingKind = "str"
    default: Any = None
    help: str = ""
    secret: bool = False
    choices: tuple[str, ...] = ()
    positive: bool = False  # numbers: must be > 0, not just >= 0


# Settings every provider accepts; a plugin adds its own and may change these defaults.
BASE_SETTINGS: dict[str, Setting] = {
    "client_id": Setting(help="client identifier registered with the provider"),
    "client_secret": Setting(secret=True, help="client secret; absent for a public client"),
    "issuer": Setting("url", help="issuer URL for RFC 8414 / OpenID discovery"),
    "authorization_endpoint": Setting("url", help="authorization endpoint URL"),
    "token_endpoint": Setting("url", help="token endpoint URL"),
    "refresh_endpoint": Setting("url", help="refresh endpoint URL (default: token_endpoint)"),
    "userinfo_endpoint": Setting("url", help="userinfo endpoint, used to name the account"),
    "device_authorization_endpoint": Setting(
        "url", help="RFC 8628 device authorization endpoint, for `login --device` (or discovered)"
    ),
    "revocation_endpoint": Setting(
        "url", help="RFC 7009 revocation endpoint, used by `logout` (default: from discovery)"
    ),
    "scope": Setting("scope", default=[], help="scopes to request (string or list)"),
    "required_scopes": Setting(
        "scope",
        default=[],
        help="scopes a login must be granted; a grant without any of them is refused (exit 3)",
    ),
    "auth_params": Setting("map", default={}, help="extra authorization URL parameters"),
    "token_params": Setting(
        "map", default={}, secret=True, help="extra token request parameters (may hold secrets)"
    ),
    "token_endpoint_auth_method": Setting(
        choices=("client_secret_basic", "client_secret_post", "none"),
        help="client authentication at the token endpoint (default: basic with a secret, "
        "else none)",
    ),
    "pkce": Setting("bool", default=True, help="send a PKCE S256 challenge"),
    "redirect_uri": Setting(
        "url",
        default="http://127.0.0.1:0/callback",
        help="redirect URI registered with the provider",
    ),
    "redirect_port_range": Setting(
        "ports",
        help="ports to try in order, for a redirect_uri without a port (8400-8409, or a list)",
    ),
    "supports_iss": Setting("bool", help="require RFC 9207 iss in the redirect"),
    "denied_errors": Setting(
        "list", default=["access_denied"], help="callback errors meaning 'denied'"
    ),
    "success_html": Setting(help="HTML page shown after success ({provider}, {account})"),
    "failure_html": Setting(help="HTML page shown after failure ({provider}, {error})"),
    "timeout": Setting(
        "float", default=300.0, positive=True, help="seconds to wait for the redirect"
    ),
    "refresh_leeway": Setting("float", default=60.0, help="refresh this many seconds early"),
    "store": Setting(
        default="file",
        secret=True,  # a URL may carry a password
        help="where tokens are kept: file (default), keyring, redis://host:port/db, rediss://...",
    ),
    "store_options": Setting(
        "map", default={}, secret=True, help="the store's options (prefix, encryption_key...)"
    ),
    "http_timeout": Setting(
        "float", default=30.0, positive=True, help="seconds per request to the provider"
    ),
    "api_base_url": Setting(
        "url", help="base URL of the provider's API, for `loopauth api` and `loopauth.session`"
    ),
}


class ApiSessionFactory(Protocol):
    """A provider type's `api_session`: the session its API calls go through."""

    def __call__(
        self, provider: Provider, *, account: str | None, store: Store, shop: str | None
    ) -> ApiSession: ...


@dataclass(frozen=True)
class ProviderType:
    """A kind of provider a plugin registers; its name is what `plugin:` selects.

    Each optional callable replaces one standard step for this type's providers only (so a
    plugin never asks "is this provider mine?"); left out, the standard RFC 6749 way is used.
    """

    name: str
    description: str = ""
    settings: Mapping[str, Setting] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    # Fills defaults that depend on other settings (e.g. a region's endpoint), in place.
    derive: Callable[[dict[str, Any]], None] | None = None
    # Checks settings after defaults are applied; returns a problem ("key: message") or None.
    validate: Callable[[Mapping[str, Any]], str | None] | None = None
    # (provider, standard params) -> the authorization URL's query parameters.
    authorization_params: Callable[[Provider, dict[str, str]], dict[str, str]] | None = None
    # (provider, standard request, the redirect's parameters) -> the code exchange to send.
    token_request: Callable[[Provider, TokenRequest, Mapping[str, str]], TokenRequest] | None = None
    # (provider, standard request) -> the refresh request to send.
    refresh_request: Callable[[Provider, TokenRequest], TokenRequest] | None = None
    # (provider, JSON answer, token being refreshed or None) -> Token; raise ProviderError.
    parse_token_response: Callable[[Provider, Mapping[str, Any], Token | None], Token] | None = None
    # (provider, new token, the redirect's parameters) -> Account, or None for the standard way.
    account_for: Callable[[Provider, Token, Mapping[str, str]], Account | None] | None = None
    # The session `loopauth api` and `loopauth.session()` call the API with (standard: a Bearer
    # token); called as fn(provider, account=..., store=..., shop=...).
    api_session: ApiSessionFactory | None = None
    # (this page's query parameters, its decoded JSON) -> the next page's parameters, or None
    # on the last page (standard: the `Link: <...>; rel="next"` header).
    next_page: Callable[[Mapping[str, str], Any], dict[str, str] | None] | None = None
    # (provider) -> its discovery document without the network (shipped with the plugin), or
    # None to fetch it from `issuer` as usual (an emulator or proxy named as issuer).
    metadata: Callable[[Provider], Mapping[str, Any] | None] | None = None
    # (provider, an `iss` value, the id_token's claims, or {} for a redirect's iss) -> whether
    # this provider issued it (standard: equal to `issuer`).
    issuer_matches: Callable[[Provider, str, Mapping[str, Any]], bool] | None = None
    # (provider, a scope asked for, the new token) -> whether the token holds it (standard: the
    # scope is among the granted ones, as the token response wrote them).
    scope_granted: Callable[[Provider, str, Token], bool] | None = None
    # (provider) -> what it still lacks for some use, one line each (`loopauth providers`).
    lacks: Callable[[Provider], list[str]] | None = None
    # Shown by `logout` for a provider that cannot revoke tokens: what that means for the user.
    logout_note: str = ""
    # `loopauth init TYPE`: the settings its entry carries, in order (secrets as ${VAR}), and
    # the comment above it (where to register the app, what to register).
    init_settings: tuple[str, ...] = ("client_id", "client_secret", "scope")
    init_help: str = ""

    def all_settings(self) -> dict[str, Setting]:
        """Return every setting this type accepts, with its defaults applied."""
        merged = {**BASE_SETTINGS, **self.settings}
        for key, value in self.defaults.items():
            merged[key] = dataclasses.replace(merged[key], default=value)
        return merged


class Provider:
    """A configured provider: its name, its type and its resolved settings."""

    def __init__(self, name: str, ptype: ProviderType, settings: Mapping[str, Any]) -> None:
        self.name = name
        self.type = ptype
        self.settings = dict(settings)
        # Filled by discovery (RFC 8414 / OpenID) when `issuer` is set.
        self.metadata: dict[str, Any] = {}
        # Environment variables its secret settings came from: kept from the browser's env.
        self.secret_env: frozenset[str] = frozenset()
        # Settings left out because their ${VAR} is not set (setting -> variable): such a
        # provider is only handed to commands that never send them (status, logout).
        self.missing: dict[str, str] = {}

    @property
    def plugin(self) -> str:
        """Return the name of the provider type (the `plugin:` value)."""
        return self.type.name

    def __repr__(self) -> str:
        # Settings stay out: they hold the client secret.
        return f"Provider(name={self.name!r}, plugin={self.plugin!r})"

    def get(self, key: str, default: Any = None) -> Any:
        """Return a setting, falling back to discovered metadata, then `default`."""
        value = self.settings.get(key)
        if value is None:
            value = self.metadata.get(key)
        return default if value is None else value

    def _number(self, key: str) -> float:
        # Settings from providers.yaml already hold defaults; a Provider built in code may not.
        return float(self.get(key, self.type.all_settings()[key].default))

    @property
    def http_timeout(self) -> float:
        """Return the seconds allowed per request to the provider."""
        return self._number("http_timeout")

    @property
    def refresh_leeway(self) -> float:
        """Return how many seconds before expiry a token is refreshed."""
        return self._number("refresh_leeway")

    @property
    def timeout(self) -> float:
        """Return the seconds a login waits for the redirect."""
        return self._number("timeout")

    @property
    def client_secret(self) -> str | None:
        """Return the client secret, if any."""
        return self.settings.get("client_secret") or None

    def lacks(self) -> list[str]:
        """Return what this provider still lacks for some use (its type's `lacks`), one per line."""
        if self.type.lacks is None:
            return []
        try:
            return [str(line) for line in self.type.lacks(self)]
        except Exception:  # a plugin's bug must not break `providers`: it has nothing to say
            return []

    def authorization_carries(self, key: str) -> bool:
        """Return True when this provider's authorization URL carries parameter `key`.

        A provider type may leave standard parameters out (TikTok Shop sends neither
        `redirect_uri` nor `scope`: both are fixed on the app), and then settings that only
        change them cannot work. Asked of the type's own `authorization_params`, offline.
        """
        custom = self.type.authorization_params
        if custom is None:
            return True
        sample = {
            "response_type": "code",
            "client_id": "client",
            "redirect_uri": "http://127.0.0.1:1/callback",
            "scope": "scope",
            "state": "state",
        }
        try:
            return key in custom(self, dict(sample))
        except Exception:  # a plugin that needs more than the sample: assume it is sent
            return True

    @property
    def auth_method(self) -> str:
        """Return the client authentication method for the token endpoint."""
        configured = self.settings.get("token_endpoint_auth_method")
        if configured:
            return str(configured)
        return "client_secret_basic" if self.client_secret else "none"


@dataclass
class TokenRequest:
    """A request to the token endpoint; plugins may change any part of it."""

    url: str
    grant_type: str
    params: dict[str, str] = field(default_factory=dict, repr=False)  # holds codes and tokens
    method: str = "POST"
    auth: str | ClientAuth = "client_secret_basic"
    headers: dict[str, str] = field(default_factory=dict, repr=False)


class Account(NamedTuple):
    """Who a token belongs to: a stable id and a label for people."""

    id: str
    label: str | None = None
