"""Signed Shop API calls: TikTok's request signature, a requests auth that keeps the token
fresh, a session for relative paths, and `loopauth shops`."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import loopauth
from loopauth.errors import NoTokenError, ProviderError
from loopauth.provider import Provider
from loopauth.token import Token
from loopauth.transport import read_json

from .auth import (
    PLUGIN,
    SHOPS_PATH,
    TOKEN_HEADER,
    check_envelope,
    envelope_code,
    envelope_error,
    hint_for,
    is_tiktok_shop,
)

if TYPE_CHECKING:
    import argparse

    import requests

    from loopauth.store import Store

    from .session import ShopSession

log = logging.getLogger("loopauth.tiktok_shop")


def sign(
    secret: str,
    path: str,
    params: Mapping[str, str],
    body: bytes | str | None = None,
    *,
    include_empty: bool = True,
) -> str:
    """Return TikTok Shop's request signature (lowercase hex HMAC-SHA256).

    Sorted query parameters except sign and access_token, as key+value with no separators and
    no URL-encoding, after the path; then the exact body bytes; all wrapped in the secret.
    Whether TikTok signs empty parameters is not documented: `include_empty` chooses.
    """
    pairs = sorted(
        (k, v)
        for k, v in params.items()
        if k not in ("sign", "access_token") and (include_empty or v != "")
    )
    base = (path + "".join(f"{k}{v}" for k, v in pairs)).encode()
    if body:
        base += body.encode() if isinstance(body, str) else body
    key = secret.encode()
    return hmac.new(key, key + base + key, hashlib.sha256).hexdigest()


# Methods that may be sent again after a server error: a POST may have been carried out.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
DEAUTHORIZED, EXPIRED, RATE_LIMITED, SERVER_ERROR = 105001, 105002, 36009002, 36009003
BAD_APP_KEY_OR_TIME = 36009004
_sleep = time.sleep  # tests shorten the waits between retries through this


class TikTokShopAuth:
    """A `requests` auth (any callable will do) signing Shop API calls with a fresh stored token.

    `requests.get(url, auth=TikTokShopAuth("tiktok-shop"))` adds app_key, timestamp, sign and
    the x-tts-access-token header. It handles TikTok's answers too: 105002 (the access token
    expired on TikTok's side) refreshes the stored token and sends the request once more; a rate
    limit (429 / 36009002), and a server error (5xx / 36009003) for idempotent methods, are
    retried with exponential backoff and full jitter, re-signed each time. An answer with a
    non-zero `code` that is left raises TikTokShopError (its JSON in `.response`), or
    NoTokenError when the seller withdrew the authorization (105001); with `raise_errors=False`
    it is returned, and `error_for(response)` tells the error. If the caller's session
    follows a redirect, the token header is taken off first: the next host gets no token.
    """

    def __init__(
        self,
        provider: str | Provider | None = None,
        *,
        account: str | None = None,
        config: str | None = None,
        store: Store | None = None,
        retries: int | None = None,
        backoff_base: float | None = None,
        backoff_cap: float = 30.0,
        max_wait: float = 60.0,
        raise_errors: bool = True,
    ) -> None:
        from loopauth.api import resolve_provider
        from loopauth.stores import open_store

        self.provider = resolve_provider(provider, config)
        if not is_tiktok_shop(self.provider):
            raise loopauth.ConfigError(
                f"{self.provider.name} uses plugin {self.provider.plugin}, not {PLUGIN}"
            )
        self.account = account
        self.store = store or open_store(self.provider)
        # Unset here: the provider's settings (api_retries, api_backoff) decide.
        self.retries = int(self.provider.get("api_retries", 4) if retries is None else retries)
        self.backoff_base = float(
            self.provider.get("api_backoff", 1.0) if backoff_base is None else backoff_base
        )
        self.backoff_cap, self.max_wait = backoff_cap, max_wait
        self.raise_errors = raise_errors

    def __repr__(self) -> str:
        return f"TikTokShopAuth(provider={self.provider.name!r}, account={self.account!r})"

    def token(self, force: bool = False) -> Token:
        """Return the stored token, refreshed (and saved) first when needed or forced."""
        from loopauth.api import ensure_fresh

        return ensure_fresh(self.provider, self.account, self.store, force=force)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.token()
        if token.dead and token.dead.startswith(f"{DEAUTHORIZED}:"):
            # Remembered: TikTok said the authorization is gone; don't ask it again.
            raise NoTokenError(
                f"{self.provider.name}: the authorization of {_who(token)} was withdrawn "
                f"({token.dead}); {_relogin(self.provider, token)}"
            )
        self._sign(request, token)
        request.register_hook("response", self._answer)  # type: ignore[no-untyped-call]
        return request

    def _sign(self, request: requests.PreparedRequest, token: Token) -> None:
        parts = urlsplit(request.url or "")
        include_empty = bool(self.provider.get("sign_empty_params", True))
        query = [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k not in ("app_key", "timestamp", "sign", "access_token")
            # A parameter left out of the signature must be left out of the request too.
            and (include_empty or v != "")
        ]
        names = [k for k, _ in query]
        repeated = sorted({k for k in names if names.count(k) > 1})
        if repeated:  # how TikTok signs repeated parameters is not documented: don't guess
            raise ProviderError(
                f"query parameter {repeated[0]!r} is repeated; TikTok Shop's signing of repeated "
                "parameters is not documented, so send one value (e.g. comma-separated)"
            )
        query += [
            ("app_key", str(self.provider.get("client_id"))),
            ("timestamp", str(int(time.time()))),  # seconds, not milliseconds
        ]
        ctype = request.headers.get("Content-Type", "")
        body = None if ctype.startswith("multipart/") else request.body
        if body is not None and not isinstance(body, bytes | str):
            raise ProviderError("TikTokShopAuth needs the request body as bytes or text to sign it")
        signature = sign(str(self.provider.client_secret), parts.path, dict(query), body)
        request.url = urlunsplit(parts._replace(query=urlencode([*query, ("sign", signature)])))
        request.headers[TOKEN_HEADER] = token.access_token
        request.headers.setdefault("Content-Type", "application/json")
        # requests' redirect hops are copies without these marks and share our response hook:
        # only an answer to a request signed here may trigger a re-signed retry.
        request._tts_signed = True  # type: ignore[attr-defined]
        request._tts_token = token  # type: ignore[attr-defined]  # whose, for error messages

    def _answer(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        """Retry what TikTok asks to be retried, then raise for an error answer (or return it)."""
        original = response.request
        if _drop_token_before_redirect(response, original):
            return response
        if not getattr(original, "_tts_signed", False):
            return response
        method = (original.method or "GET").upper()
        refreshed, retries, waited = False, 0, 0.0
        give_up: str | None = ""
        while True:
            envelope = _envelope(response)
            code = envelope_code(envelope) if envelope is not None else None
            status = response.status_code
            token: Token | None = None
            delay = 0.0
            if code == EXPIRED and not refreshed:
                refreshed, token = True, self.token(force=True)
            else:
                give_up = self._give_up(response, code, method, retries, waited)
                if give_up is not None:
                    break
                delay = self._delay(response, retries, waited)
                retries, waited = retries + 1, waited + delay
                log.debug(
                    "%s: TikTok Shop answered HTTP %s (code %s); retry %d in %.2f s",
                    self.provider.name,
                    status,
                    code,
                    retries,
                    delay,
                )
                _sleep(delay)
            retry = original.copy()
            self._sign(retry, token or self.token())  # a new timestamp and signature each time
            response.content  # noqa: B018 - read it so the connection can be reused
            response.close()
            # The adapter itself never follows redirects; a caller's session may follow this
            # answer, and it does so from a copy of the original request, not of `retry`.
            again: requests.Response = response.connection.send(retry, **kwargs)
            again.history = [*response.history, response]
            if _drop_token_before_redirect(again, original, retry):
                return again
            response = again
        response._tts_note = give_up or ""  # type: ignore[attr-defined]  # for error_for
        if self.raise_errors:
            error = self.error_for(response)
            if error is not None:
                response.close()
                raise error
        return response

    def error_for(self, response: requests.Response) -> loopauth.LoopauthError | None:
        """Return the error TikTok's answer stands for, None for a success (or a redirect).

        105001 (the authorization was withdrawn) marks the stored token dead on the way.
        """
        envelope = _envelope(response)
        code = envelope_code(envelope) if envelope is not None else None
        if code == 0 or (code is None and response.status_code < 400):
            return None
        return self._error(response, envelope, code, getattr(response, "_tts_note", ""))

    def _give_up(
        self,
        response: requests.Response,
        code: int | None,
        method: str,
        retries: int,
        waited: float,
    ) -> str | None:
        """Return why this answer is final ("" when it just is), None to retry it."""
        status = response.status_code
        limited = status == 429 or code == RATE_LIMITED
        failed = status >= 500 or code == SERVER_ERROR
        if not (limited or failed):
            return ""
        if failed and not limited and method not in IDEMPOTENT:
            return (
                f"not retried: a {method} may have been carried out before the failure, "
                "so check before sending it again"
            )
        tried = f"after {retries} retr{'y' if retries == 1 else 'ies'} over {waited:.1f} s"
        if retries >= self.retries:
            return f"gave up {tried}"
        after = _retry_after(response)
        if after is not None and after > min(self.backoff_cap, self.max_wait - waited):
            return f"TikTok Shop asked to wait {after:.0f} s (Retry-After): too long to wait"
        if waited >= self.max_wait:
            return f"gave up {tried}"
        return None

    def _delay(self, response: requests.Response, retries: int, waited: float) -> float:
        """Seconds before the next try: TikTok's Retry-After, else exponential full jitter."""
        after = _retry_after(response)
        if after is not None:
            return after
        ceiling = min(self.backoff_cap, self.backoff_base * 2**retries, self.max_wait - waited)
        # Full jitter: clients that were limited together spread out instead of coming back
        # together.
        return random.uniform(0, max(0.0, ceiling))  # noqa: S311 - not a secret

    def _error(
        self,
        response: requests.Response,
        envelope: dict[str, Any] | None,
        code: int | None,
        note: str,
    ) -> loopauth.LoopauthError:
        """The error to raise for TikTok's final answer `response`."""
        name, status = self.provider.name, response.status_code
        if envelope is None or code is None:
            body = response.content
            size = len(body)
            if envelope is not None:
                kind = "a JSON object without a numeric `code`"
            elif "html" in response.headers.get("Content-Type", "") or b"<html" in body[:2048]:
                kind = "an HTML page"
            else:
                kind = "something that is not a JSON object" if body else "an empty body"
            text = f"{name}: TikTok Shop's API answered HTTP {status} with {kind} ({size} bytes)"
            if status == 429:
                text += "; rate limited"
            return ProviderError(text + (f"; {note}" if note else ""))
        token: Token | None = getattr(response.request, "_tts_token", None)
        hint = hint_for(
            code,
            str(envelope.get("message") or ""),
            user_type=token.extra.get("user_type") if token is not None else None,
            clock_offset=_clock_offset(response) if code == BAD_APP_KEY_OR_TIME else None,
        )
        if note:
            hint = f"{hint}; {note}" if hint else note
        error = envelope_error(self.provider, envelope, code, status=status, hint=hint)
        if code == DEAUTHORIZED and token is not None:
            self._remember_deauthorized(token, error)
            gone = NoTokenError(f"{error}; {_relogin(self.provider, token)}")
            gone.__cause__ = error  # TikTok's code and answer, for Python callers
            return gone
        return error

    def _remember_deauthorized(self, token: Token, error: ProviderError) -> None:
        """Mark the stored token dead, unless a new login replaced it meanwhile."""
        from loopauth.errors import LoopauthError

        reason = f"{DEAUTHORIZED}: {error.description or 'deauthorized'}"
        reason = "".join(c if c.isascii() and c.isprintable() else "?" for c in reason)[:200]
        if any(s and s in reason for s in (token.access_token, token.refresh_token)):
            reason = f"{DEAUTHORIZED}: deauthorized"  # never keep a token TikTok echoed
        try:
            with self.store.lock(self.provider.name, token.account):
                latest = self.store.read(self.provider.name, token.account)
                if latest.access_token != token.access_token or latest.dead:
                    return
                latest = Token.from_dict(latest.to_dict())  # a store may cache what it hands out
                latest.dead = reason
                # The access token was withdrawn with the authorization: from now on `token`,
                # `exec` and get_token say to log in again instead of handing it out.
                latest.expires_at = min(latest.expires_at or time.time(), time.time())
                self.store.save(latest)
        except LoopauthError as exc:  # e.g. a read-only store: the error still says what to do
            log.debug("could not mark the token dead: %s", exc)


def _who(token: Token) -> str:
    return token.account_label or token.account


def _relogin(provider: Provider, token: Token) -> str:
    return f"run: loopauth login {provider.name} --account {token.account}"


def _envelope(response: requests.Response) -> dict[str, Any] | None:
    """Return the answer's JSON object, from any HTTP status; None when it has none."""
    ctype = response.headers.get("Content-Type", "").lower()
    if response.status_code < 400 and "json" not in ctype:
        return None  # a download, say: its body is the caller's, unread
    try:
        data = json.loads(response.content)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _server_time(response: requests.Response, header: str) -> float | None:
    """Return an HTTP-date header as a Unix time, None when absent or malformed."""
    from email.utils import parsedate_to_datetime

    value = response.headers.get(header)
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _clock_offset(response: requests.Response) -> float | None:
    """Return how far this computer's clock is ahead of TikTok's (its `Date` header)."""
    server = _server_time(response, "Date")
    if server is None:
        return None
    # Date has whole seconds: TikTok's clock was somewhere in [server, server + 1).
    return time.time() - (server + 0.5)


def _retry_after(response: requests.Response) -> float | None:
    """Return the seconds a `Retry-After` header asks for (seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return min(float(value), 86400.0)  # a day: past any wait that is ever taken
    when = _server_time(response, "Retry-After")
    if when is None:
        return None
    # Against TikTok's own Date when it sent one: this computer's clock may be off.
    now = _server_time(response, "Date") or time.time()
    return max(0.0, when - now)


def _drop_token_before_redirect(
    response: requests.Response, *sent: requests.PreparedRequest
) -> bool:
    """Remove the token header from `sent` when `response` is a redirect; say whether it was."""
    if not response.is_redirect:
        return False
    # requests builds the next hop from a copy of these very objects, made after the hooks ran,
    # and only strips Authorization when the host changes, never x-tts-access-token.
    for request in sent:
        request.headers.pop(TOKEN_HEADER, None)
    return True


def shop_session(
    provider: str | Provider | None = None,
    *,
    account: str | None = None,
    config: str | None = None,
    store: Store | None = None,
    shop: str | None = None,
) -> ShopSession:
    """Return a requests session for the Shop API: relative paths, signed, token kept fresh.

    `shop` names one of the account's authorized shops by name (any case), id or cipher; its
    `shop_cipher` then goes with every request. It never follows a redirect.
    """
    from .session import ShopSession, choose_shop

    signer = TikTokShopAuth(provider, account=account, config=config, store=store)
    if signer.account is None:
        # Pinned: a `loopauth switch` during a long paging must not mix two accounts' pages.
        signer.account = signer.token().account
    session = ShopSession(signer)
    if shop is not None:
        try:
            session.shop = choose_shop(session, shop)
        except BaseException:
            session.close()
            raise
    return session


def get_authorized_shops(
    provider: str | Provider | None = None,
    *,
    account: str | None = None,
    config: str | None = None,
    store: Store | None = None,
) -> list[dict[str, Any]]:
    """Call Get Authorized Shops and return TikTok's list of shops."""
    with shop_session(provider, account=account, config=config, store=store) as session:
        return list_shops(session)


def list_shops(session: ShopSession) -> list[dict[str, Any]]:
    """Call Get Authorized Shops through `session` and return TikTok's list of shops."""
    from loopauth.transport import talking_to

    provider = session.provider
    with talking_to(session.url_for(SHOPS_PATH), provider.http_timeout):
        data = read_json(session.get(SHOPS_PATH, stream=True), f"{provider.name}'s Shop API")
    shops = check_envelope(provider, data).get("shops")
    if not isinstance(shops, list) or not all(isinstance(s, dict) for s in shops):
        raise ProviderError(f"{provider.name}: Get Authorized Shops returned no shop list")
    return shops


def shops_command(args: argparse.Namespace) -> int:
    """`loopauth shops`: the shops the stored token covers."""
    shops = get_authorized_shops(args.provider, account=args.account, config=args.config)
    if args.json:
        from loopauth.terminal import json_text

        print(json_text(shops, indent=2, ensure_ascii=False))
        return 0
    if not shops:
        print("no authorized shops")
    for shop in shops:
        print(
            f"{shop.get('name')}  region={shop.get('region')}  "
            f"seller_type={shop.get('seller_type')}  cipher={shop.get('cipher')}"
        )
    return 0
