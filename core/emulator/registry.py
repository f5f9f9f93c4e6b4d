"""Who the OAuth emulator knows (clients, users, issued grants) and how clients identify."""

from __future__ import annotations

import base64
import time
import urllib.parse
from dataclasses import dataclass, field

from ..urls import is_loopback_host

__all__ = [
    "DEFAULT_USERS",
    "Code",
    "EmulatorClient",
    "EmulatorUser",
    "Grant",
    "basic_credentials",
    "default_clients",
    "redirect_uri_ok",
]


@dataclass
class EmulatorClient:
    """A registered OAuth client."""

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    redirect_uris: list[str] = field(default_factory=list)
    auth_method: str = "none"


@dataclass(frozen=True)
class EmulatorUser:
    """A user who can be picked on the consent page."""

    sub: str
    name: str
    email: str


@dataclass
class Code:
    """An authorization code: what it was issued for, and whether it was spent."""

    client_id: str
    redirect_uri: str
    code_challenge: str | None
    scope: str
    user: EmulatorUser
    nonce: str | None
    expires_at: float
    used: bool = False
    params: dict[str, str] = field(default_factory=dict)  # every authorization parameter


@dataclass
class Grant:
    """What an access or refresh token stands for."""

    client_id: str
    user: EmulatorUser
    scope: str
    expires_at: float | None
    origin: str  # the authorization code this descends from, so code reuse can revoke it

    def expired(self) -> bool:
        """Whether the grant is past its lifetime."""
        return self.expires_at is not None and time.time() >= self.expires_at


DEFAULT_USERS = (
    EmulatorUser("user-1", "Ada Lovelace", "ada@example.test"),
    EmulatorUser("user-2", "Grace Hopper", "grace@example.test"),
)
_LOOPBACK_URIS = ["http://127.0.0.1/callback", "http://localhost/callback", "http://[::1]/callback"]


def default_clients() -> dict[str, EmulatorClient]:
    """Fresh copies of the demo clients: a public one and a confidential one."""
    return {
        "loopauth-demo": EmulatorClient("loopauth-demo", None, list(_LOOPBACK_URIS), "none"),
        "demo-confidential": EmulatorClient(
            "demo-confidential", "demo-secret", list(_LOOPBACK_URIS), "client_secret_basic"
        ),
    }


def redirect_uri_ok(client: EmulatorClient, uri: str) -> bool:
    """Exact match, except that loopback redirect URIs may use any port (RFC 8252 §7.3)."""
    if uri in client.redirect_uris:
        return True
    got = urllib.parse.urlsplit(uri)
    try:
        got.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    if not is_loopback_host(got.hostname) or got.username or got.password or got.fragment:
        return False
    key = (got.scheme, got.hostname, got.path, got.query)
    regs = map(urllib.parse.urlsplit, client.redirect_uris)
    return any((r.scheme, r.hostname, r.path, r.query) == key for r in regs)


def basic_credentials(header: str) -> tuple[str, str] | None:
    """Decode an HTTP Basic Authorization header; ("", "") if it is malformed."""
    if header[:6].lower() != "basic ":
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except ValueError:  # covers binascii.Error and UnicodeDecodeError
        return "", ""
    cid, sep, secret = raw.partition(":")
    if not sep:
        return "", ""
    # RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
    return urllib.parse.unquote_plus(cid), urllib.parse.unquote_plus(secret)
