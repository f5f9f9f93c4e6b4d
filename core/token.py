"""The token model shared by every provider (kept free of heavy imports: it is on the fast path)."""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds on the cached-token path
    from typing import Any

FORMAT_VERSION = 1


class Token:
    """An access token with its refresh token, expiry, scopes, account and the raw response."""

    __slots__ = (
        "access_token",
        "account_id",
        "account_label",
        "bound_to",
        "dead",
        "expires_at",
        "extra",
        "obtained_at",
        "provider",
        "raw",
        "refresh_expires_at",
        "refresh_token",
        "scopes",
        "token_type",
    )

    def __init__(
        self,
        access_token: str,
        *,
        provider: str = "",
        token_type: str = "Bearer",
        refresh_token: str | None = None,
        expires_at: float | None = None,
        refresh_expires_at: float | None = None,
        scopes: list[str] | None = None,
        account_id: str | None = None,
        account_label: str | None = None,
        raw: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        obtained_at: float | None = None,
        bound_to: dict[str, str | None] | None = None,
        dead: str | None = None,
    ) -> None:
        self.access_token = access_token
        self.provider = provider
        self.token_type = token_type
        self.refresh_token = refresh_token
        self.expires_at = expires_at
        self.refresh_expires_at = refresh_expires_at
        self.scopes = list(scopes or [])
        self.account_id = account_id
        self.account_label = account_label
        self.raw = dict(raw or {})
        self.extra = dict(extra or {})
        self.obtained_at = time.time() if obtained_at is None else obtained_at
        # Who issued it (token and refresh endpoints, issuer, client id): refresh goes only there.
        self.bound_to = dict(bound_to or {})
        # Why the provider rejected the refresh token (invalid_grant...): only a login helps.
        self.dead = dead

    def __repr__(self) -> str:
        # Never the token values: reprs end up in logs and tracebacks.
        return (
            f"Token(provider={self.provider!r}, account_id={self.account_id!r}, "
            f"expires_at={self.expires_at!r}, scopes={self.scopes!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Token):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    @property
    def account(self) -> str:
        """Return the account id, or "default" when the provider names none."""
        return self.account_id or "default"

    def expires_in(self, now: float | None = None) -> float | None:
        """Return seconds until the access token expires, or None when unknown."""
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)

    def is_fresh(self, leeway: float = 60.0, now: float | None = None) -> bool:
        """Return True when the access token is usable for `leeway` more seconds (at most half
        its lifetime: a 3 s token is not refreshed on every call because of a 60 s leeway)."""
        left = self.expires_in(now)
        if left is None:
            return True
        lifetime = (self.expires_at or 0) - self.obtained_at
        if lifetime > 0:
            leeway = min(leeway, lifetime / 2)
        return left > leeway

    @property
    def lasts(self) -> bool:
        """Return True for a token that never expires and has no refresh token (a classic
        GitHub one): there is nothing to refresh, ever."""
        return self.expires_at is None and not self.refresh_token

    def can_refresh(self, now: float | None = None) -> bool:
        """Return True when a refresh token is stored and not known to be expired."""
        if not self.refresh_token or self.dead:
            return False
        if self.refresh_expires_at is None:
            return True
        return self.refresh_expires_at > (time.time() if now is None else now)

    def public_dict(self) -> dict[str, Any]:
        """Return the non-secret fields (for `status`)."""
        return {
            "provider": self.provider,
            "account_id": self.account_id,
            "account_label": self.account_label,
            "token_type": self.token_type,
            "expires_at": self.expires_at,
            "refresh_expires_at": self.refresh_expires_at,
            "has_refresh_token": bool(self.refresh_token),
            "refresh_rejected": self.dead,
            "scopes": self.scopes,
            "obtained_at": self.obtained_at,
        }

    def to_dict(self) -> dict[str, Any]:
        """Return the stored form."""
        data = {"version": FORMAT_VERSION, **self.public_dict()}
        del data["has_refresh_token"]
        del data["refresh_rejected"]
        if self.dead:
            data["dead"] = self.dead
        if self.bound_to:
            data["bound_to"] = self.bound_to
        data.update(
            access_token=self.access_token,
            refresh_token=self.refresh_token,
            extra=self.extra,
            raw=self.raw,
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Token:
        """Build a token from its stored form; raise ValueError when it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
            raise ValueError("not a loopauth token file")
        get = data.get  # `status` builds 10,000 of these: one lookup per key
        strings = {}
        # A hand-edited file must fail here, with its name, not deep inside a command.
        for key in (
            "provider",
            "token_type",
            "refresh_token",
            "account_id",
            "account_label",
            "dead",
        ):
            value = get(key)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{key} is not a string")
            strings[key] = value
        access = data["access_token"]
        if not is_token_text(access) or not is_token_text(strings["refresh_token"] or ""):
            raise ValueError("a token holds characters no token can have (RFC 6749 A.12)")
        times = {}
        for key in ("expires_at", "refresh_expires_at", "obtained_at"):
            value = get(key)
            if value is not None and (
                value.__class__ not in (int, float) or not -1e12 < value < 1e12
            ):  # also rejects NaN and booleans
                raise ValueError(f"{key} is not a time")
            times[key] = value
        scopes = get("scopes")
        if scopes is not None and (
            not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes)
        ):
            raise ValueError("scopes is not a list of strings")
        raw, extra = get("raw"), get("extra")
        for key, value in (("raw", raw), ("extra", extra)):
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"{key} is not an object")
        bound = get("bound_to")
        if bound is not None and (
            not isinstance(bound, dict)
            or not all(isinstance(v, str | None) for v in bound.values())
        ):
            raise ValueError("bound_to is not an object of strings")
        return cls(
            access,
            provider=strings["provider"] or "",
            token_type=strings["token_type"] or "Bearer",
            refresh_token=strings["refresh_token"],
            expires_at=times["expires_at"],
            refresh_expires_at=times["refresh_expires_at"],
            scopes=scopes,
            account_id=strings["account_id"],
            account_label=strings["account_label"],
            raw=raw,
            extra=extra,
            obtained_at=times["obtained_at"],
            bound_to=bound,
            dead=strings["dead"],
        )


def is_token_text(value: str) -> bool:
    """Return True for RFC 6749's VSCHAR strings: printable ASCII, nothing a terminal obeys."""
    return value.isascii() and value.isprintable()
